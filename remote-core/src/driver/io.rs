//! The writer task: drains the connection's outgoing buffer, writing every
//! frame queued since the last write in one go, when no other task writes
//! it directly (`direct.rs`); finishes what a direct write could not; and
//! closes a peer that reads nothing for `write_stall_timeout` (`stall.rs`).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;

use super::kept::{LARGE_FRAME, SHED_AFTER};
use super::shared::{lock, Shared};
use super::stall::{stall_timed, stalled, Stop};
use crate::Error;

/// The writing half of a connection's byte stream, boxed so one connection
/// type serves every transport.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A write buffer grown past this is freed after use, so idle connections
/// hold little memory.
const KEEP_CAPACITY: usize = 8 << 10;

/// Time to write the last frames (the goodbye) and shut down on close: as
/// long as the reader drains the peer's input, so a peer blocked writing
/// to us gets to read the goodbye.
const CLOSE_GRACE: Duration = super::input::DRAIN_TIME;

/// The writer task's future. However the task ends, the socket's writing
/// half is dropped with it (it lives in the shared state, which proxies
/// keep alive): some transports close only on drop (a child's stdin: its
/// `shutdown` does nothing, and the child, reading until end of input,
/// would not exit). The guard is made before the task first runs, so a
/// runtime that shuts down before then, dropping the task unpolled, drops
/// it too.
pub(crate) fn write_loop(shared: Arc<Shared>) -> impl std::future::Future<Output = ()> {
    write_until_closed(DropWriter(shared.clone()), shared)
}

async fn write_until_closed(_drop_writer: DropWriter, shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::new();
    // Whether to let other tasks queue before writing (below).
    let spread = crate::rt::is_multi_thread(&shared.runtime);
    // What to write on close before shutting down.
    let last: Vec<u8> = 'run: loop {
        // `Shared::close` also raises the flag, so one wake-up source serves.
        ready(&shared).await;
        if shared.pushes.holds_back() {
            shared.send_held_back();
        }
        // On several workers the first frame queued wakes this task on
        // another core at once, while the other senders (e.g. the callers
        // the reader has just handed their replies) are still queueing:
        // writing then sends a few frames per write (about 4.5 calls per
        // write with 64 in flight, against 64 on one thread). Letting the
        // tasks ready to run go first gathers them into one write. On one
        // thread they already run before this task does.
        if spread {
            tokio::task::yield_now().await;
        }
        // The write token (`direct.rs`): a direct writer holding it wakes
        // us when it gives it back.
        {
            let mut out = lock(&shared.out);
            if out.writing {
                out.writer_waits = true;
                continue;
            }
            // Woken for frames a direct writer has written since (with
            // the flush: it leaves `pending` otherwise), e.g. a release
            // queued just before a call: nothing to write or flush.
            if out.buf.is_empty() && !out.pending && !shared.is_closed() {
                continue;
            }
            out.writing = true;
        }
        // What a direct write left unwritten goes first: it was queued
        // before anything now in `out`.
        let mut pos = {
            let mut pen = lock(&shared.pen);
            std::mem::swap(&mut pen.buf, &mut buf);
            std::mem::take(&mut pen.pos)
        };
        if shared.is_closed() {
            let mut last = buf[pos.min(buf.len())..].to_vec();
            last.extend(take_queued(&shared));
            break 'run last;
        }
        // Write everything queued (frames are whole: senders append
        // complete frames under the lock), flush, and give the token back
        // once nothing more was queued meanwhile.
        loop {
            while pos < buf.len() {
                match write_some(&shared, &buf[pos..]).await {
                    Ok(n) => {
                        pos += n;
                        shared.wrote(n);
                    }
                    Err(Stop::Failed(e)) => {
                        shared.close(Error::ConnectionLost(format!("write failed: {e}")));
                        shared.writer_ended();
                        return;
                    }
                    Err(Stop::Closed) => {
                        // Finish the frame under way, then what was queued
                        // (e.g. a goodbye): frames stay whole.
                        let mut last = buf[pos..frame_end(&buf, pos)].to_vec();
                        last.extend(take_queued(&shared));
                        break 'run last;
                    }
                    Err(Stop::Stalled(why)) => {
                        // The rest of the frame under way, then the reason;
                        // everything else queued is dropped.
                        break 'run stalled(&shared, why, &buf[pos..frame_end(&buf, pos)], "");
                    }
                }
            }
            if !buf.is_empty() {
                finish_batch(&shared, &mut buf, &mut lock(&shared.pen).since_large);
            }
            pos = 0;
            {
                let mut out = lock(&shared.out);
                if !out.buf.is_empty() {
                    std::mem::swap(&mut out.buf, &mut buf);
                    continue;
                }
            }
            // A transport that buffers (TLS, WebSocket) took every byte:
            // its flush waits for the peer to read, under the same stall
            // timer as a write (`write_stall_timeout`), or a peer that never
            // reads would hold the connection (and its queue) for ever.
            match stall_timed(&shared, on_pen(&shared, |w, cx| w.poll_flush(cx))).await {
                Ok(()) => {}
                Err(Stop::Failed(e)) => {
                    shared.close(Error::ConnectionLost(format!("flush failed: {e}")));
                    shared.writer_ended();
                    return;
                }
                Err(Stop::Closed) => break 'run take_queued(&shared),
                Err(Stop::Stalled(why)) => {
                    break 'run stalled(&shared, why, &[], " and of what the transport buffered")
                }
            }
            let mut out = lock(&shared.out);
            if out.buf.is_empty() {
                out.writing = false;
                out.pending = false;
                out.writer_waits = false;
                break;
            }
            std::mem::swap(&mut out.buf, &mut buf);
        }
    };
    // Nothing more is counted from here on.
    drop(buf);
    shared.writer_ended();
    // Closing: write the last frames (e.g. a goodbye) within a grace period,
    // then shut down our side; the socket is dropped either way (the reader
    // drains the peer's input meanwhile, PROTOCOL.md §9). The token stays
    // taken: nothing else writes from here on.
    let _ = crate::rt::time::timeout(CLOSE_GRACE, async {
        let mut at = 0;
        while at < last.len() {
            let n = on_pen(&shared, |w, cx| w.poll_write(cx, &last[at..])).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            at += n;
        }
        shared.meter.wrote(last.len());
        on_pen(&shared, |w, cx| w.poll_shutdown(cx)).await
    })
    .await;
}

/// Replaces the socket's writing half with a sink when dropped.
struct DropWriter(Arc<Shared>);

impl Drop for DropWriter {
    fn drop(&mut self) {
        let w = std::mem::replace(&mut lock(&self.0.pen).w, Box::new(tokio::io::sink()));
        // Outside the lock: a transport's destructor may do anything.
        drop(w);
        self.0.io_tasks.one_ended();
    }
}

/// The end of a batch written (by the writer task or directly): a run of
/// large batches (a stream of large values) keeps its buffer for the next
/// one; a single one does not (`kept.rs`); a buffer grown large is freed.
pub(super) fn finish_batch(shared: &Shared, buf: &mut Vec<u8>, since_large: &mut u32) {
    let large = buf.len() >= LARGE_FRAME;
    let keep = large && *since_large < SHED_AFTER;
    *since_large = if large {
        0
    } else {
        since_large.saturating_add(1)
    };
    buf.clear();
    if buf.capacity() > KEEP_CAPACITY {
        shared.retire_output(std::mem::take(buf), keep);
    }
}

/// Polls `f` on the socket's writing half, locking the pen for each poll
/// only (the write token's holder is its only user, so it is never
/// contended, and no guard is held across an await).
fn on_pen<'a, T>(
    shared: &'a Shared,
    mut f: impl FnMut(Pin<&mut BoxWrite>, &mut Context<'_>) -> Poll<T> + 'a,
) -> impl std::future::Future<Output = T> + 'a {
    std::future::poll_fn(move |cx| f(Pin::new(&mut lock(&shared.pen).w), cx))
}

/// Takes what is queued and not yet taken by the writer.
fn take_queued(shared: &Shared) -> Vec<u8> {
    std::mem::take(&mut lock(&shared.out).buf)
}

/// The end of the frame that contains byte `pos` of `buf` (which starts
/// on a frame boundary); `pos` itself if it is a boundary.
fn frame_end(buf: &[u8], pos: usize) -> usize {
    let mut at = 0;
    while at < pos && at + 4 <= buf.len() {
        let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        at += 4 + len;
    }
    at.min(buf.len())
}

/// Writes part of `data`: at once if the socket takes it, otherwise waiting
/// until the peer reads, the connection closes, or the stall timeout.
async fn write_some(shared: &Shared, data: &[u8]) -> Result<usize, Stop> {
    match stall_timed(shared, on_pen(shared, |w, cx| w.poll_write(cx, data))).await {
        Ok(0) => Err(Stop::Failed(std::io::ErrorKind::WriteZero.into())),
        r => r,
    }
}

/// Resolves when a sender has queued frames since the last time.
fn ready(shared: &Shared) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        if shared.out_ready.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        shared.out_waker.register(cx.waker());
        // Checked again after registering: a sender may have set the flag
        // (and woken nobody) in between.
        if shared.out_ready.swap(false, Ordering::AcqRel) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}
