//! A hostile peer against the reader's read buffer (`driver/input.rs`): a
//! large frame is read into room for exactly its announced length, never
//! into a buffer grown past it. A peer that sends a large frame but its
//! last few bytes, and those a moment later, must not make the reader
//! "make room for a chunk" on the nearly complete frame: growing a buffer
//! that holds most of a large frame doubles its allocation (and copies the
//! frame), memory the budget counts for nothing (or, once the buffer is
//! kept for the next large frame, twice).
//!
//! Its own test binary: a counting global allocator measures what the
//! process allocates while the frame is read.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/pipe.rs"]
mod pipe;

use std::time::Duration;

use pipe::{frame, head, raw_peer};
use remote_core::{remote, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

/// Bytes allocated in the whole process so far (a realloc's growth counts).
fn allocated() -> usize {
    counting::GLOBAL.stats().bytes_allocated
}

#[remote]
trait Quiet {
    async fn ping(&self) -> Result<(), Error>;
}

struct Q;

#[remote]
impl Quiet for Q {
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// A call to an unknown method of the root (object 0) whose one argument
/// is `n` bytes: refused without its arguments being decoded, so the read
/// buffer is the only allocation of its size.
fn big_call(n: usize) -> Vec<u8> {
    let mut args = Vec::with_capacity(n + 6);
    args.push(0x91); // array of 1
    args.push(0xc6); // bin 32
    args.extend_from_slice(&(n as u32).to_be_bytes());
    args.resize(n + 6, 0xab);
    let mut f = remote_core::proto::encode::begin(64 + args.len());
    remote_core::proto::encode::call_head(
        &mut f,
        remote_core::proto::CallId(1),
        remote_core::proto::ObjectId(0),
        "no_such_method",
        60_000,
    );
    f.extend_from_slice(&args);
    remote_core::proto::encode::finish(&mut f);
    f
}

/// Waits (at most 60 s) until the connection has read `n` bytes in all.
async fn read_in_all(conn: &remote_core::Connection, n: u64) {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while conn.stats().bytes_in < n {
        assert!(
            tokio::time::Instant::now() < end,
            "the reader did not take {n} bytes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn a_large_frame_whose_last_bytes_come_late_is_read_without_growing_the_buffer() {
    let _serial = counting::serial();
    counting::runtime().block_on(large_frame_with_a_late_tail());
}

async fn large_frame_with_a_late_tail() {
    const ARG: usize = 4 << 20;
    let limits = Limits {
        max_frame_len: 8 << 20,
        ..Limits::default()
    };
    let root: Remote<dyn Quiet> = Remote::new(std::sync::Arc::new(Q));
    let (conn, mut pr, mut pw) = raw_peer(root, limits, vec![]).await;
    assert_eq!(head(&frame(&mut pr).await.unwrap()).0, 0, "hello");

    let call = big_call(ARG);
    let total = call.len();
    let start = conn.stats().bytes_in;
    let before = allocated();

    // All but the last 100 bytes: most of it, then 4 KiB in one write (so
    // the reader's last read of it is a large one), each taken by the
    // reader before the next is sent.
    let (most, rest) = call.split_at(total - 100);
    let (bulk, tail) = most.split_at(most.len() - 4096);
    pw.write_all(bulk).await.unwrap();
    read_in_all(&conn, start + bulk.len() as u64).await;
    pw.write_all(tail).await.unwrap();
    read_in_all(&conn, start + most.len() as u64).await;
    // Then the last 100.
    pw.write_all(rest).await.unwrap();

    // The call is refused: the whole frame was read.
    let reply = loop {
        let f = frame(&mut pr).await.expect("the connection stays open");
        if head(&f) == (3, Some(1)) {
            break f;
        }
    };
    assert!(!reply.is_empty());
    // The frame's room (its length), and little else: no second
    // allocation (or growth) of the frame's size.
    let allocated = allocated() - before;
    assert!(
        allocated < total + total / 2,
        "reading a {total}-byte frame allocated {allocated} bytes"
    );
    assert!(!conn.is_closed());
}

/// A call, then the first bytes of the next frame, and nothing more: the
/// call's reply (queued by the reader, which writes what it queued before
/// it reads on into a frame in progress, and when it would wait) still
/// goes out, while the reader waits for the rest of the frame.
#[test]
fn a_reply_goes_out_while_the_peer_holds_back_the_rest_of_a_frame() {
    let _serial = counting::serial();
    counting::runtime().block_on(reply_while_a_frame_is_held_back());
}

async fn reply_while_a_frame_is_held_back() {
    let root: Remote<dyn Quiet> = Remote::new(std::sync::Arc::new(Q));
    let (conn, mut pr, mut pw) = raw_peer(root, Limits::default(), vec![]).await;
    assert_eq!(head(&frame(&mut pr).await.unwrap()).0, 0, "hello");
    let mut bytes = call(7, "ping");
    // A 2 KiB frame's length and its first 10 bytes.
    bytes.extend_from_slice(&2048u32.to_be_bytes());
    bytes.extend_from_slice(&[0x96; 10]);
    pw.write_all(&bytes).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let f = frame(&mut pr).await.expect("the connection stays open");
            if head(&f).1 == Some(7) {
                break f;
            }
        }
    })
    .await
    .expect("the reply waited for the rest of the next frame");
    assert_eq!(head(&reply).0, 2, "a return");
    assert!(!conn.is_closed());
}

/// A call frame: `method` of the root (object 0), no arguments.
fn call(id: u32, method: &str) -> Vec<u8> {
    let mut f = remote_core::proto::encode::begin(32);
    remote_core::proto::encode::call_head(
        &mut f,
        remote_core::proto::CallId(id),
        remote_core::proto::ObjectId(0),
        method,
        60_000,
    );
    f.push(0x90);
    remote_core::proto::encode::finish(&mut f);
    f
}
