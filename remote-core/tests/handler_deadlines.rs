//! Deadlines of spawned handlers, kept by the reader task's one timer
//! (`conn/running.rs`): a deadline passing while the handler's reply is
//! being encoded leaves its kept answer agreeing with the reply the peer
//! gets, and a peer that keeps the reader busy with a flood of frames does
//! not keep a handler running past its deadline.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use raw::{bounded, frame, kind, next_error, raw_with, ERROR, RETURN};
use remote_core::proto::{
    encode, encode_pipelined_call_head, CallId, CallTarget, ObjectId, FEATURE_PIPELINE,
};
use remote_core::{remote, ConnectionBuilder, Error, Remote, Server, Wire};
use tokio::io::AsyncWriteExt;

/// A value whose encoding takes [`SLOW`] (a large or costly value).
#[derive(Debug)]
pub struct Slow;

const SLOW: Duration = Duration::from_millis(1500);

impl serde::Serialize for Slow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        std::thread::sleep(SLOW);
        s.serialize_u8(1)
    }
}

impl<'de> serde::Deserialize<'de> for Slow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| Slow)
    }
}

impl Wire for Slow {}

#[remote]
pub trait Clock {
    /// Nothing.
    async fn nop(&self) -> Result<(), Error>;
    /// A [`Slow`] value, after one yield (so the handler is spawned).
    async fn slow(&self) -> Result<Slow, Error>;
    /// Never returns.
    async fn hang(&self) -> Result<(), Error>;
}

struct Impl;

#[remote]
impl Clock for Impl {
    async fn nop(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn slow(&self) -> Result<Slow, Error> {
        tokio::task::yield_now().await;
        Ok(Slow)
    }
    async fn hang(&self) -> Result<(), Error> {
        std::future::pending().await
    }
}

fn root() -> Remote<dyn Clock> {
    Remote::new(Arc::new(Impl) as Arc<dyn Clock>)
}

/// A call frame of kind 1 (or 12 if `keep`) to `target`, no arguments.
fn call(keep: bool, id: u32, target: CallTarget, method: &str, ms: u32) -> Vec<u8> {
    let mut b = encode::begin(32);
    encode_pipelined_call_head(&mut b, keep, CallId(id), target, method, ms);
    b.push(0x90);
    encode::finish(&mut b);
    b
}

/// The kind of error of a reply frame, `None` for a return.
fn outcome(f: &[u8]) -> (u64, Option<String>) {
    match kind(f) {
        RETURN => (u64::from(f[2]), None),
        ERROR => {
            let (id, k, _) = raw::error_of(f).unwrap();
            (id, Some(k))
        }
        other => panic!("a reply expected, got kind {other}"),
    }
}

/// A kept-answer call whose handler starts replying before its deadline
/// and is still encoding the value when the deadline passes (on another
/// worker, where the reader's timer fires): the peer gets that reply, so
/// a call pipelined on its answer must see the same outcome (the value is
/// not an object: `not_a_capability`), not `deadline_exceeded` while the
/// kept call itself returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_agrees_with_the_reply_when_the_deadline_passes_while_encoding() {
    let server = Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| root());
    let mut s = raw_with(&server, vec![FEATURE_PIPELINE]).await;
    assert_eq!(kind(&frame(&mut s).await.unwrap()), raw::HELLO);
    let mut out = call(true, 1, CallTarget::Object(ObjectId(0)), "slow", 200);
    out.extend(call(
        false,
        2,
        CallTarget::Promise(CallId(1)),
        "nop",
        600_000,
    ));
    s.write_all(&out).await.unwrap();
    let mut got = [None, None];
    for _ in 0..2 {
        let f = bounded(frame(&mut s)).await.expect("a reply");
        let (id, o) = outcome(&f);
        got[(id - 1) as usize] = Some(o);
    }
    let [Some(kept), Some(pipelined)] = got else {
        unreachable!()
    };
    match kept {
        // The kept call returned its (non-object) value.
        None => assert_eq!(pipelined.as_deref(), Some("not_a_capability")),
        // It failed: the pipelined call fails with its error.
        Some(k) => assert_eq!(pipelined, Some(k)),
    }
}

/// A peer that keeps its frames coming faster than the reader handles
/// them (cancels of unknown calls: no output, nothing refused) still has
/// its handler stopped at the deadline and the call answered with
/// `deadline_exceeded`, while the flood goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_frames_does_not_hold_a_handler_past_its_deadline() {
    let (ours, theirs) = tokio::io::duplex(16 << 20);
    let (sr, sw) = tokio::io::split(theirs);
    let served = tokio::spawn(async move {
        ConnectionBuilder::new()
            .serve(root())
            .over(sr, sw, "flooder")
            .await
    });
    let (mut r, mut w) = tokio::io::split(ours);
    w.write_all(&raw::hello(vec![])).await.unwrap();
    assert_eq!(kind(&frame(&mut r).await.unwrap()), raw::HELLO);
    let _conn = bounded(served).await.unwrap().unwrap();
    w.write_all(&raw::call(1, 0, "hang", 200, &[0x90]))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = stop.clone();
    let flood = tokio::spawn(async move {
        let one = encode::cancel(CallId(999));
        let chunk: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * (1 << 16))
            .collect();
        let mut sent = 0usize;
        while !flooding.load(SeqCst) {
            w.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        sent
    });
    let (id, k, msg) = bounded(next_error(&mut r)).await;
    let still_flooding = !flood.is_finished();
    stop.store(true, SeqCst);
    assert_eq!((id, k.as_str()), (1, "deadline_exceeded"), "{msg}");
    assert!(still_flooding);
    // The reader goes on reading: the flooder's last write completes.
    let sent = bounded(flood).await.unwrap();
    assert!(sent > 0);
}
