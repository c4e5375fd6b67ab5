//! A kept answer (PROTOCOL.md §3.10) whose call failed holds a bounded
//! copy of the call's error, not the whole of it: a peer whose callback
//! failed with a large `data`, which the handler passed on with `?` (the
//! ordinary way), made each of its kept answers hold a copy of that data
//! until its finish, counted nowhere: 4 connections held 420 MiB (found
//! by a red-team pass). Calls on the answer fail with what it holds.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use raw::{bounded, error_of, frame, kind, raw_with, HELLO};
use remote_core::proto::FEATURE_PIPELINE;
use remote_core::proto::{encode, encode_pipelined_call_head, CallId, CallTarget, ObjectId};
use remote_core::{remote, Error, Remote, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[remote]
pub trait Cb {
    async fn ask(&self) -> Result<(), Error>;
}

#[remote]
pub trait Relay {
    /// Asks the caller's callback (passing its error on), then hands out
    /// an object.
    async fn relay(&self, cb: Remote<dyn Cb>) -> Result<Remote<dyn Relay>, Error>;
}

struct Obj;

#[remote]
impl Relay for Obj {
    async fn relay(&self, cb: Remote<dyn Cb>) -> Result<Remote<dyn Relay>, Error> {
        cb.ask().await?;
        Ok(Remote::new(Arc::new(Obj) as Arc<dyn Relay>))
    }
}

const CALL: u64 = 1;
const RETURN: u64 = 2;
const ERROR: u64 = 3;

/// An `application` error reply to the server's call `id`, with `data`
/// bytes of data.
fn error_reply(id: u64, data: usize) -> Vec<u8> {
    let mut b = encode::begin(data + 64);
    b.extend_from_slice(&[0x93, 0x03, 0xce]);
    b.extend_from_slice(&(id as u32).to_be_bytes());
    b.push(0x96);
    for s in [&b"application"[..], b"Cb", b"no"] {
        b.push(0xa0 | s.len() as u8);
        b.extend_from_slice(s);
    }
    b.extend_from_slice(&[0x90, 0xc0, 0xc6]);
    b.extend_from_slice(&(data as u32).to_be_bytes());
    b.resize(b.len() + data, 0x55);
    encode::finish(&mut b);
    b
}

/// A kind-12 call of `relay` on `target`, passing our object 1.
fn kept_relay(id: u32, target: CallTarget) -> Vec<u8> {
    let mut b = encode::begin(48);
    encode_pipelined_call_head(&mut b, true, CallId(id), target, "relay", 60_000);
    b.extend_from_slice(&[0x91, 0xd6, 0x01, 0, 0, 0, 1]);
    encode::finish(&mut b);
    b
}

/// The next reply (return or error) the server sends, answering its calls
/// to our callback with an error of `data` bytes of data meanwhile.
async fn next_reply(s: &mut TcpStream, data: usize) -> Vec<u8> {
    loop {
        let f = frame(s).await.expect("connection closed");
        match kind(&f) {
            CALL => s
                .write_all(&error_reply(raw::id_of(&f), data))
                .await
                .unwrap(),
            RETURN | ERROR => return f,
            _ => {} // releases of our object
        }
    }
}

/// Makes kept call 1 fail with its callback's error of `data` bytes of
/// data, then `n` kept calls on its answer (each keeping an answer of its
/// own, failed the same way): the replies to those. The connection stays
/// open, nothing finished.
async fn calls_on_a_failed_answer(
    server: &remote_core::ServerHandle,
    data: usize,
    n: u32,
) -> (TcpStream, Vec<Vec<u8>>) {
    let mut s = raw_with(server, vec![FEATURE_PIPELINE]).await;
    assert_eq!(kind(&frame(&mut s).await.unwrap()), HELLO);
    s.write_all(&kept_relay(1, CallTarget::Object(ObjectId(0))))
        .await
        .unwrap();
    let first = next_reply(&mut s, data).await;
    let (id, error_kind, _) = error_of(&first).expect("call 1 fails");
    assert_eq!((id, error_kind.as_str()), (1, "application"));
    // Its own reply carries the whole error.
    assert!(first.len() > data, "{} bytes", first.len());
    let mut replies = Vec::new();
    for id in 2..2 + n {
        s.write_all(&kept_relay(id, CallTarget::Promise(CallId(1))))
            .await
            .unwrap();
        replies.push(next_reply(&mut s, data).await);
    }
    (s, replies)
}

#[test]
fn a_kept_answer_holds_a_bounded_copy_of_its_calls_error() {
    counting::measured(bounded(async {
        let server = Server::builder()
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(|_| Remote::new(Arc::new(Obj) as Arc<dyn Relay>));
        let baseline = counting::live();
        // 16 answers kept of a call whose error has 512 KiB of data: they
        // held 8.5 MiB.
        let (conn, replies) = calls_on_a_failed_answer(&server, 512 << 10, 16).await;
        let held = counting::live() - baseline;
        assert!(held < 2 << 20, "{held} bytes held");
        for reply in replies {
            // Each fails as call 1 did, its text as it was.
            let (_, error_kind, message) = error_of(&reply).expect("an error");
            assert_eq!(
                (error_kind.as_str(), message.as_str()),
                ("application", "no")
            );
            assert!(reply.len() < 1024, "a reply of {} bytes", reply.len());
        }
        // The answers are the connection's: gone with it.
        drop(conn);
        assert!(raw::eventually(|| server.connections() == 0).await);
        server.shutdown(std::time::Duration::from_secs(5)).await;
    }));
}
