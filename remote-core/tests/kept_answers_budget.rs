//! What a server holds for kept answers (PROTOCOL.md §3.10) counts in its
//! memory budget until the peer's finish or the connection's close. A
//! peer may leave `max_calls_in_flight` answers unfinished on each
//! connection, each failed one holding a copy of its error (cut to about
//! 3 KiB), and kept answers do not end at the idle timeout while the peer
//! makes a call per idle period: a red-team pass held 5–17.6 MB with 64
//! connections, 0 of it counted (`ServerHandle::buffered_bytes`), about
//! 280 MB at `max_connections`.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use raw::{bounded, eventually, frame, kind, raw_with, CALL, ERROR, HELLO, RETURN};
use remote_core::proto::{
    encode, encode_finish, encode_pipelined_call_head, CallId, CallTarget, ObjectId,
    FEATURE_PIPELINE,
};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[remote]
pub trait Num {
    async fn num(&self, n: u32) -> Result<u32, Error>;
    /// Calls the caller's listener back, passing its error on (the usual
    /// shape of a method that notifies a listener the caller passes), then
    /// hands out an object.
    async fn relay(&self, cb: Remote<dyn Cb>) -> Result<Remote<dyn Num>, Error>;
}

#[remote]
pub trait Cb {
    async fn ping(&self) -> Result<(), Error>;
}

struct Impl;

#[remote]
impl Num for Impl {
    async fn num(&self, n: u32) -> Result<u32, Error> {
        Ok(n)
    }
    async fn relay(&self, cb: Remote<dyn Cb>) -> Result<Remote<dyn Num>, Error> {
        cb.ping().await?;
        Ok(Remote::new(Arc::new(Impl) as Arc<dyn Num>))
    }
}

/// How the kept-answer calls end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ends {
    /// `num("xx..")`: `bad_arguments` at once, no handler runs.
    BadArguments,
    /// `relay`, its callback failing with texts longer than a kept answer
    /// keeps of each, passed on by the handler.
    CallbackError,
    /// `relay`, its callback answering: the answer is an object.
    Object,
}

/// Connections, and kept answers each leaves (`max_calls_in_flight`).
const CONNS: usize = 8;
const KEPT: u32 = 128;
const ANSWERS: usize = CONNS * KEPT as usize;

/// Kept-answer call `id`, ending as `ends` says.
fn kept_call(id: u32, ends: Ends) -> Vec<u8> {
    let mut b = encode::begin(4096);
    let method = if ends == Ends::BadArguments {
        "num"
    } else {
        "relay"
    };
    let target = CallTarget::Object(ObjectId(0));
    encode_pipelined_call_head(&mut b, true, CallId(id), target, method, 600_000);
    if ends == Ends::BadArguments {
        b.extend_from_slice(&[0x91, 0xda, 0x08, 0x00]);
        b.extend(std::iter::repeat_n(b'x', 2048));
    } else {
        // Our object 1, the callback.
        b.extend_from_slice(&[0x91, 0xd6, 0x01, 0, 0, 0, 1]);
    }
    encode::finish(&mut b);
    b
}

/// The reply to the server's callback `id`: `nil`, or an error whose
/// texts are longer than what a kept answer keeps of each.
fn callback_reply(id: u64, ends: Ends) -> Vec<u8> {
    let mut p = vec![0x93, if ends == Ends::Object { 2 } else { 3 }, 0xce];
    p.extend_from_slice(&(id as u32).to_be_bytes());
    if ends == Ends::Object {
        p.push(0xc0);
    } else {
        let text = |b: &mut Vec<u8>, n: usize, c: u8| {
            b.push(0xda);
            b.extend_from_slice(&(n as u16).to_be_bytes());
            b.extend(std::iter::repeat_n(c, n));
        };
        p.push(0x96);
        text(&mut p, 64, b'k');
        text(&mut p, 2000, b't');
        text(&mut p, 2000, b'm');
        p.push(0x94);
        for _ in 0..4 {
            text(&mut p, 400, b'c');
        }
        p.extend_from_slice(&[0xc0, 0xc0]);
    }
    let mut f = (p.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&p);
    f
}

async fn server() -> ServerHandle {
    Server::builder()
        .limits(Limits {
            // One test address stands for many peers.
            max_connections_per_peer: 1024,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Num>))
}

/// `CONNS` open connections (their hellos read).
async fn open(server: &ServerHandle) -> Vec<TcpStream> {
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let mut s = raw_with(server, vec![FEATURE_PIPELINE]).await;
        assert_eq!(kind(&frame(&mut s).await.unwrap()), HELLO);
        conns.push(s);
    }
    conns
}

/// Each connection makes kept-answer calls `ids` ending as `ends`, one
/// after another (so its output queue never holds more than one reply,
/// and keeps its size), and reads their replies: their answers are set
/// then (before the replies were queued), and left unfinished.
async fn keep_answers(conns: &mut [TcpStream], ends: Ends, ids: std::ops::Range<u32>) {
    for s in conns {
        for id in ids.clone() {
            s.write_all(&kept_call(id, ends)).await.unwrap();
            loop {
                let f = frame(s).await.expect("the connection stays open");
                match kind(&f) {
                    ERROR => {
                        assert_ne!(ends, Ends::Object, "{:?}", raw::error_of(&f));
                        break;
                    }
                    RETURN => {
                        assert_eq!(ends, Ends::Object);
                        break;
                    }
                    CALL => s
                        .write_all(&callback_reply(raw::id_of(&f), ends))
                        .await
                        .unwrap(),
                    _ => {} // releases of our callback
                }
            }
        }
    }
}

/// Each connection finishes kept-answer calls `ids`, then makes a plain
/// call and reads its reply: the server read its finishes before it, and
/// dropped their answers then (nothing else holds them: their calls
/// ended).
async fn finish(conns: &mut [TcpStream], ids: std::ops::Range<u32>) {
    for s in conns {
        let mut all: Vec<u8> = ids
            .clone()
            .flat_map(|id| encode_finish(CallId(id)))
            .collect();
        all.extend_from_slice(&raw::call(KEPT, 0, "num", 60_000, &[0x91, 0x07]));
        s.write_all(&all).await.unwrap();
        let reply = raw::next_of_kind(s, RETURN).await;
        assert_eq!(raw::id_of(&reply), u64::from(KEPT));
    }
}

/// What a connection's output may count besides (its queue's capacity,
/// and the writer's buffer while it writes), so what may be left counted
/// once its kept answers are gone and before it closes.
const OUTPUT: usize = 16 << 10;

/// Leaves `ANSWERS` kept answers ending as `ends`, then finishes them
/// (or closes their connections if `close`): what the budget counted for
/// each, and what each finish gave back and freed of the heap (`None` if
/// closed: a close frees more than the answers). Once the connections
/// are closed, nothing is counted: each answer was given back exactly
/// once (twice, and the count would wrap below zero).
async fn held_per_answer(
    server: &ServerHandle,
    ends: Ends,
    close: bool,
) -> (usize, Option<(usize, isize)>) {
    assert_eq!(server.buffered_bytes(), 0);
    let mut conns = open(server).await;
    let base = server.buffered_bytes();
    keep_answers(&mut conns, ends, 0..KEPT).await;
    // The answers are counted already (when kept and when set, before
    // each reply was queued).
    let (counted, heap) = (server.buffered_bytes(), counting::live());
    let per_answer = counted.saturating_sub(base) / ANSWERS;
    let mut freed = None;
    if !close {
        finish(&mut conns, 0..KEPT).await;
        let after = server.buffered_bytes();
        assert!(
            after <= base + CONNS * OUTPUT,
            "{ends:?}: {after} counted after the answers were finished, {base} before they were kept",
        );
        // What the finishes gave back, against what they freed.
        let given_back = counted.saturating_sub(after) / ANSWERS;
        freed = Some((given_back, (heap - counting::live()) / ANSWERS as isize));
    }
    conns.clear();
    assert!(eventually(|| server.connections() == 0).await);
    let back = eventually(|| server.buffered_bytes() == 0).await;
    assert!(
        back,
        "{ends:?}: {} counted once closed",
        server.buffered_bytes()
    );
    (per_answer, freed)
}

/// Each kept answer counts about what it holds (its error's copy and
/// about 200 bytes for the answer itself) until the peer's finish, and
/// exactly that is given back then.
#[test]
fn kept_answers_count_in_the_budget_until_finished() {
    counting::measured(bounded(async {
        let server = server().await;
        for ends in [Ends::BadArguments, Ends::CallbackError, Ends::Object] {
            let (counted, finished) = held_per_answer(&server, ends, false).await;
            let (given_back, heap) = finished.unwrap();
            eprintln!(
                "{ends:?}: per kept answer, {counted} B counted; its finish gave back \
                 {given_back} B and freed {heap} B of heap"
            );
            // The answer itself (and its table entry), and the error's
            // copy: the callback's texts cut to 1 KiB and 256 B.
            let least = if ends == Ends::CallbackError {
                2000
            } else {
                200
            };
            assert!(counted >= least, "{ends:?}: {counted} B counted per answer");
            // What a finish frees was counted, but for a little (what the
            // allocator was asked for besides, say).
            assert!(
                heap <= given_back as isize + 64,
                "{ends:?}: {heap} B freed per answer, {given_back} B given back"
            );
        }
        server.shutdown(Duration::from_secs(5)).await;
    }));
}

/// Answers never finished are given back with their connection.
#[test]
fn kept_answers_count_until_their_connection_closes() {
    counting::measured(bounded(async {
        let server = server().await;
        for ends in [Ends::CallbackError, Ends::Object] {
            let (counted, _) = held_per_answer(&server, ends, true).await;
            assert!(counted >= 200, "{ends:?}: {counted} B counted per answer");
        }
        server.shutdown(Duration::from_secs(5)).await;
    }));
}
