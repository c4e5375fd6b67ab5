//! The read buffer's size follows the load: a burst of small frames is read
//! in a few large `read`s, and the buffer shrinks back once reads are small.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::input::{Input, Plain, MIN_READ};
use crate::{Connection, ConnectionBuilder};

/// Counts the `read`s that returned data.
struct CountingRead<R> {
    inner: R,
    reads: Arc<AtomicUsize>,
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    let mut f = (len as u32).to_be_bytes().to_vec();
    f.extend((0..len).map(|j| (i + j) as u8));
    f
}

/// An `Input` reading what is written to the returned pipe, its reads
/// counted; a connection pair (kept alive with it) only for its budget:
/// frames are fed to the `Input` directly.
async fn counted_input() -> (
    (Connection, Connection),
    tokio::io::DuplexStream,
    Arc<AtomicUsize>,
    Input,
) {
    let (a, b) = Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new())
        .await
        .unwrap();
    let (tx, rx) = tokio::io::duplex(1 << 20);
    let reads = Arc::new(AtomicUsize::new(0));
    let r = CountingRead {
        inner: rx,
        reads: reads.clone(),
    };
    let input = Input::new(Box::new(Plain(r)), a.shared.arc().clone(), 1 << 20);
    ((a, b), tx, reads, input)
}

#[tokio::test]
async fn a_burst_of_small_frames_is_read_in_few_reads_and_the_buffer_shrinks_after() {
    let (_conns, mut tx, reads, mut input) = counted_input().await;

    // 256 frames of 100 bytes (26 KiB), all waiting before the first read.
    let burst: Vec<u8> = (0..256).flat_map(|i| frame(i, 100)).collect();
    tx.write_all(&burst).await.unwrap();
    for i in 0..256 {
        let f = input.next(false).await.unwrap().unwrap();
        assert_eq!(&f[..], &frame(i, 100)[4..], "frame {i}");
        input.frame_done();
    }
    let burst_reads = reads.load(Ordering::Relaxed);
    // Reading only up to the end of the frame in progress took 64 reads
    // here, a fixed 512-byte chunk 30.
    assert!(
        burst_reads <= 12,
        "{burst_reads} reads for a 26 KiB burst of frames"
    );
    assert!(input.chunk() > MIN_READ, "the read chunk did not grow");

    // Then one small frame at a time: the chunk shrinks back, and the
    // buffer held between frames with it.
    for i in 0..16 {
        tx.write_all(&frame(i, 10)).await.unwrap();
        let f = input.next(false).await.unwrap().unwrap();
        assert_eq!(&f[..], &frame(i, 10)[4..]);
        input.frame_done();
    }
    assert_eq!(
        input.chunk(),
        MIN_READ,
        "the read chunk did not shrink back"
    );
    assert!(
        input.buffer_capacity() <= 4 * MIN_READ,
        "an idle connection holds a read buffer of {} bytes",
        input.buffer_capacity()
    );
}

/// A stream of large frames is read into one buffer: once a frame is
/// dropped, the next is read into its memory (not a fresh allocation the
/// system allocator pages in again), and the buffer is counted in the
/// budget while kept, then given back when small frames follow.
#[tokio::test]
async fn large_frames_are_read_into_the_same_kept_buffer() {
    let (_conns, shared, mut tx, mut input, base) = large_run(0).await;
    // A few small frames between large ones keep the buffer; a long run
    // of them gives it up.
    for i in 0..64 {
        tx.write_all(&frame(i, 10)).await.unwrap();
        let f = input.next(false).await.unwrap().unwrap();
        input.frame_done();
        assert_eq!(&f[..], &frame(i, 10)[4..]);
        if i < 8 {
            assert!(
                input.kept() > 0,
                "gave the buffer up after {} small frames",
                i + 1
            );
        }
    }
    assert_eq!(input.kept(), 0, "small frames followed: the buffer stays");
    assert_eq!(shared.kept.bytes(), 0);
    assert_eq!(shared.budget.used(), base, "the kept buffer's count stayed");
    assert!(input.buffer_capacity() <= 4 * MIN_READ);
}

/// The same when each large frame is a little longer than the last (a
/// call id grows by a byte now and then): the next frame still fits in
/// the kept buffer, read from its start. It did not: each frame filled
/// the kept buffer a few bytes short and was copied whole into a new one.
#[tokio::test]
async fn slightly_longer_large_frames_are_read_into_the_same_kept_buffer() {
    large_run(3).await;
}

/// A frame may lend its memory to a large `Bytes` value decoded from it
/// (`codec/shared_bytes.rs`) only if it is over a read chunk and its
/// allocation is at most twice its length: not a frame read into the far
/// larger buffer kept for a run of large frames, nor a small one sharing
/// the read buffer with others.
#[tokio::test]
async fn only_a_frame_in_an_allocation_near_its_size_may_lend_it() {
    let (_conns, _shared, mut tx, mut input, _) = large_run(0).await;
    assert!(input.kept() > 100 << 10);
    // 40 KiB, read into the kept buffer of over 100 KiB: not lent.
    let f = frame(7, 40 << 10);
    tx.write_all(&f).await.unwrap();
    let got = input.next(false).await.unwrap().unwrap();
    assert_eq!(&got[..], &f[4..]);
    assert!(
        input.received().lends == 0,
        "a frame in a buffer over twice its size lends it"
    );
    input.frame_done();
    drop(got);
    // Small frames: never.
    for i in 0..4 {
        tx.write_all(&frame(i, 100)).await.unwrap();
        let got = input.next(false).await.unwrap().unwrap();
        assert_eq!(&got[..], &frame(i, 100)[4..]);
        assert!(
            input.received().lends == 0,
            "a small frame lends its memory"
        );
        input.frame_done();
    }
}

/// Feeds five large frames, each `step` bytes longer than the last, one
/// at a time (each dropped before the next), checking that from the
/// second on each is read into the same kept buffer, counted in the
/// budget. Returns what the test goes on with, and the budget's use
/// before the frames.
async fn large_run(
    step: usize,
) -> (
    (Connection, Connection),
    Arc<crate::driver::Shared>,
    tokio::io::DuplexStream,
    Input,
    usize,
) {
    let (a, b) = Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new())
        .await
        .unwrap();
    let shared = a.shared.arc().clone();
    let (mut tx, rx) = tokio::io::duplex(1 << 20);
    let mut input = Input::new(Box::new(Plain(rx)), shared.clone(), 1 << 20);
    const LEN: usize = 100 << 10;
    let base = shared.budget.used();
    let mut first = None;
    // Allocations of the frame's size held meanwhile, so a freed frame's
    // memory is not simply handed out again by the allocator.
    let mut hogs = Vec::new();
    for i in 0..5 {
        let f = frame(i, LEN + i * step);
        let writer = async { tx.write_all(&f).await.unwrap() };
        let (_, got) = tokio::join!(writer, input.next(false));
        let got = got.unwrap().unwrap();
        // In an allocation of about its size: it may lend it.
        assert!(
            input.received().lends > 0,
            "frame {i} may not lend its memory"
        );
        input.frame_done();
        assert_eq!(&got[..], &f[4..], "frame {i}");
        if i == 0 {
            // A single large frame keeps nothing (a connection idle after
            // it holds no large buffer): only a run of them does.
            assert_eq!(input.kept(), 0, "the first large frame's buffer was kept");
            assert_eq!(shared.budget.used(), base);
            drop(got);
            hogs.push(vec![0u8; LEN + 4]);
            continue;
        }
        let at = got.as_ptr() as usize;
        let first = *first.get_or_insert(at);
        assert_eq!(at, first, "frame {i} was read into a new buffer");
        assert!(
            input.kept() >= LEN,
            "frame {i}: the read buffer was not kept"
        );
        assert_eq!(shared.kept.bytes(), input.kept());
        assert!(
            shared.budget.used() - base >= input.kept(),
            "the kept buffer is not counted in the budget"
        );
        drop(got);
        hogs.push(vec![i as u8; LEN + 4]);
    }
    ((a, b), shared, tx, input, base)
}

/// A read is not made into the sliver of room a burst's read left past its
/// frames: that read would take only part of what waits, and another read
/// the rest.
#[tokio::test]
async fn frames_behind_a_sliver_of_room_come_in_one_read() {
    let (_conns, mut tx, reads, mut input) = counted_input().await;

    // 5 frames of 98 bytes: 490 of the first chunk's 512, 22 left.
    let first: Vec<u8> = (0..5).flat_map(|i| frame(i, 94)).collect();
    tx.write_all(&first).await.unwrap();
    for i in 0..5 {
        next_is(&mut input, i, 94).await;
    }
    assert_eq!(reads.load(Ordering::Relaxed), 1);
    assert_eq!(input.chunk(), MIN_READ);

    // Then 400 bytes: one read (reading into the 22 bytes left took two).
    let second: Vec<u8> = (5..9).flat_map(|i| frame(i, 96)).collect();
    tx.write_all(&second).await.unwrap();
    for i in 5..9 {
        next_is(&mut input, i, 96).await;
    }
    assert_eq!(
        reads.load(Ordering::Relaxed),
        2,
        "400 bytes behind a 22-byte sliver of room took more than one read"
    );
}

/// Reads the next frame, which must be `frame(i, len)`.
async fn next_is(input: &mut Input, i: usize, len: usize) {
    let f = input.next(false).await.unwrap().unwrap();
    assert_eq!(&f[..], &frame(i, len)[4..], "frame {i}");
    input.frame_done();
}
