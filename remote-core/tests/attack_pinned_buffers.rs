//! Small frames must not pin large read buffers.
//!
//! The reader splits each frame off its read buffer (`Input::next`,
//! `BytesMut::split_to`), so a frame shares the buffer's allocation. In a
//! run of large frames the buffer is kept (`Input::keep`) and reused, and
//! the small frames read next land in the same (1 MiB) allocation. A
//! pipelined call whose kept call has not answered yet holds its arguments
//! while it waits (`driver/pipeline.rs`, `Answer::call`): it used to hold
//! them as a view of the frame, so each such call pinned a whole large
//! allocation, while the budget counted one kept buffer and the share only
//! the small frame's length (100 such calls held 99 MiB against a 64 MiB
//! budget; found by a red-team pass). A waiting call now holds a copy of
//! its own bytes.
//!
//! The raw peer: one kept-answer call that never answers, then pairs of
//! (a 1 MiB call refused at once, a tiny call addressed to the promise).
//! The server's live heap is measured with a counting allocator.
//! One test per binary: the allocator counts the whole process.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use remote_core::proto::{encode, encode_pipelined_call_head, CallId, CallTarget, ObjectId};
use remote_core::{remote, Error, Limits, Remote, Server};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Lab {
    /// Never returns (any slow method will do).
    async fn hang(&self) -> Result<Remote<dyn Lab>, Error>;
    async fn n(&self) -> Result<u64, Error>;
}

struct Impl;

#[remote]
impl Lab for Impl {
    async fn hang(&self) -> Result<Remote<dyn Lab>, Error> {
        std::future::pending().await
    }
    async fn n(&self) -> Result<u64, Error> {
        Ok(1)
    }
}

fn call(keep: bool, id: u32, target: CallTarget, method: &str, args: &[u8]) -> Vec<u8> {
    let mut f = encode::begin(64 + args.len());
    encode_pipelined_call_head(&mut f, keep, CallId(id), target, method, 600_000);
    f.extend_from_slice(args);
    encode::finish(&mut f);
    f
}

/// A call of an unknown method with `len` bytes of arguments: refused at
/// once (its frame is dropped).
fn large(id: u32, len: usize) -> Vec<u8> {
    let mut args = vec![0x91, 0xc6];
    args.extend_from_slice(&(len as u32).to_be_bytes());
    args.resize(args.len() + len, 7);
    call(false, id, CallTarget::Object(ObjectId(0)), "nope", &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_on_a_promise_do_not_pin_large_read_buffers() {
    const PAIRS: u32 = 100;
    let server = Server::builder()
        .limits(Limits::default())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Lab>));
    let mut s = raw::connect(&server).await;
    s.write_all(&raw::hello(vec!["pipeline"])).await.unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
    // One small reply first: the connection's reply estimate drops from
    // max_frame_len to its 4 KiB floor, so the share admits every waiting
    // call up to max_calls_in_flight (PROTOCOL.md §9, "Fair shares").
    s.write_all(&call(
        false,
        0,
        CallTarget::Object(ObjectId(0)),
        "n",
        &[0x90],
    ))
    .await
    .unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::RETURN);
    let big = (1usize << 20) - 128;
    let frames: Vec<Vec<u8>> = (0..PAIRS)
        .flat_map(|i| {
            [
                large(1000 + i, big),
                call(
                    false,
                    2000 + i,
                    CallTarget::Promise(CallId(1)),
                    "n",
                    &[0x90],
                ),
            ]
        })
        .collect();
    let baseline = counting::live();
    s.write_all(&call(
        true,
        1,
        CallTarget::Object(ObjectId(0)),
        "hang",
        &[0x90],
    ))
    .await
    .unwrap();
    let (mut r, mut w) = s.into_split();
    // Read (and count) the refusals of the large calls as they come.
    let reader = tokio::spawn(async move {
        let mut errors = 0;
        while errors < PAIRS {
            let f = raw::frame(&mut r).await.expect("closed");
            if raw::kind(&f) == raw::ERROR {
                errors += 1;
            }
        }
        r
    });
    let writer = tokio::spawn(async move {
        for f in &frames {
            w.write_all(f).await.unwrap();
        }
        (w, frames)
    });
    let mut r = raw::bounded(reader).await.unwrap();
    let (mut w, frames) = raw::bounded(writer).await.unwrap();
    // Every large call was refused, and its frame dropped. One more plain
    // call, answered after every frame before it was handled: then the 100
    // tiny pipelined calls all wait. Measure what the server holds now.
    w.write_all(&call(
        false,
        3000,
        CallTarget::Object(ObjectId(0)),
        "n",
        &[0x90],
    ))
    .await
    .unwrap();
    assert_eq!(
        raw::kind(&raw::next_of_kind(&mut r, raw::RETURN).await),
        raw::RETURN
    );
    let held = counting::live() - baseline;
    assert!(
        held < 16 << 20,
        "{PAIRS} tiny waiting calls hold {} MiB",
        held >> 20
    );
    drop(frames);
}
