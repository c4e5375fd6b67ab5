//! The write token: who writes the connection's queued frames to the
//! socket, so that a frame need not wait for the writer task's turn.
//!
//! Frames are queued whole, in order, in [`Out::buf`]. Whoever holds the
//! token ([`Out::writing`], taken and given back under the `out` lock)
//! takes the whole queue and writes it through the [`Pen`] (the socket's
//! writing half and the batch buffer, locked only by the token holder, so
//! never contended). Three kinds of holder:
//!
//! - the writer task (`io.rs`), woken as before when frames are queued and
//!   nobody else will write them; it alone waits on a blocked socket (and
//!   so owns `write_stall_timeout`) and runs the close sequence;
//! - the reader task, at the end of a batch of frames (before it waits for
//!   more input): the replies of handlers that finished inline leave in one
//!   write per read batch, without a hop to the writer task (frames queued
//!   meanwhile wait for it: [`Shared::defer_writes`]);
//! - a caller whose call is the only one in flight on the connection
//!   ([`Shared::send_vec_as`] with `direct`), so a lone call leaves
//!   without a hop, while calls made under load queue up and leave in the
//!   writer task's batches (as does a pipelined call, which the calls on
//!   its promise follow at once).
//!
//! A direct write never waits: it writes what the socket takes at once and
//! flushes; anything not written, or a flush that did not complete, stays
//! in the pen ([`Out::pending`]) and the writer task is woken to finish it
//! (with its stall timer), before anything queued later. A holder gives
//! the token back only with the queue empty or the writer task woken, so
//! frames never overtake each other and none is left unwritten.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use super::guarded_write::GuardedWrite;
use super::io::{finish_batch, BoxWrite};
use super::shared::{lock, Shared};

/// Frames waiting to be written, and the write token.
#[derive(Default)]
pub(crate) struct Out {
    /// Complete frames waiting, in the order they were queued.
    pub(crate) buf: Vec<u8>,
    /// The write token: someone is writing (only they use the [`Pen`]).
    pub(crate) writing: bool,
    /// A direct write left bytes unwritten or unflushed in the pen: only
    /// the writer task (already woken) takes the token next.
    pub(crate) pending: bool,
    /// The writer task found the token taken: its holder wakes it when it
    /// gives the token back.
    pub(crate) writer_waits: bool,
    /// A goodbye is queued: nothing more is ([`Shared::send_goodbye`]).
    pub(crate) sealed: bool,
}

/// What only the holder of the write token uses.
pub(crate) struct Pen {
    /// The socket's writing half.
    pub(crate) w: BoxWrite,
    /// The batch a direct write took from the queue; when the write was
    /// cut short, what is left of it starts at `pos`.
    pub(crate) buf: Vec<u8>,
    pub(crate) pos: usize,
    /// Batches written since the last large one (`kept.rs`).
    pub(crate) since_large: u32,
}

impl Pen {
    /// A pen writing to `w`; a panic in `w` becomes an error
    /// ([`GuardedWrite`]).
    pub(crate) fn new(w: BoxWrite) -> Self {
        Pen {
            w: Box::new(GuardedWrite::new(w)),
            buf: Vec::new(),
            pos: 0,
            since_large: u32::MAX,
        }
    }
}

impl Out {
    /// Whether a direct writer may take the token now.
    fn free(&self) -> bool {
        !self.writing && !self.pending && !self.buf.is_empty()
    }
}

impl Shared {
    /// The reader task is handling a peer's frame: what is queued until it
    /// next waits for input, it writes itself then
    /// ([`reader_waits`](Self::reader_waits)), so senders do not wake the
    /// writer task meanwhile.
    pub(crate) fn defer_writes(&self) {
        self.deferred.store(true, Ordering::Relaxed);
    }

    /// The reader task is about to wait (for input or for room): writes
    /// what was queued while it handled frames, if nobody else is writing.
    pub(crate) fn reader_waits(&self) {
        // A batch that handed several callers their replies: they are about
        // to call again, and their calls should leave in one write (the
        // writer task's), not the first alone (`Handle::prepare_to`'s
        // `lone`). A heuristic only: either way every frame is written.
        // Loaded and cleared, not swapped: see `Waiter::send`.
        let replies = self.batch_replies.load(Ordering::Relaxed);
        if replies != 0 {
            self.batch_replies.store(0, Ordering::Relaxed);
        }
        self.burst.store(replies >= 2, Ordering::Relaxed);
        if !self.deferred.load(Ordering::SeqCst) {
            return;
        }
        let mut out = lock(&self.out);
        // Cleared under the lock: a sender that still saw it set queued
        // before this check, so its frame is written here (or by the token
        // holder, which checks the queue before giving the token back).
        self.deferred.store(false, Ordering::Relaxed);
        if !out.free() || self.is_closed() || self.writer_gone.load(Ordering::Acquire) {
            return;
        }
        out.writing = true;
        self.write_taken(out);
    }

    /// Called under the `out` lock by a sender that has just queued: takes
    /// the token for a direct write if `direct` and nobody is writing
    /// (`true`: the caller then calls [`write_taken`](Self::write_taken)),
    /// otherwise wakes the writer task if nobody else will write the queue.
    pub(super) fn after_queue(&self, out: &mut Out, was_empty: bool, direct: bool) -> Woken {
        if direct && out.free() {
            if self.deferred.load(Ordering::SeqCst) {
                // The reader is handling frames: it writes this one with
                // what they queue, when it next waits.
                return Woken::Nothing;
            }
            if self.ctl.pending() {
                // The reader is about to run (e.g. to queue a release): it
                // writes this frame with what it queues, in one write.
                self.deferred.store(true, Ordering::SeqCst);
                return Woken::ToReader;
            }
            out.writing = true;
            return Woken::Take;
        }
        // Someone else will write it: the token holder (it checks the queue
        // before giving the token back), the writer task for a pending
        // remainder (woken then), the reader at its next wait, or the
        // writer task woken by the first frame queued.
        if was_empty && !out.writing && !out.pending && !self.deferred.load(Ordering::Relaxed) {
            Woken::Wake
        } else {
            Woken::Nothing
        }
    }

    /// Writes the whole queue with the token held (`out.writing` set by
    /// the caller, `out` locked), without waiting: what the socket does not
    /// take at once is left to the writer task.
    pub(super) fn write_taken(&self, mut out: std::sync::MutexGuard<'_, Out>) {
        let mut guard = lock(&self.pen);
        let pen = &mut *guard;
        debug_assert!(pen.buf.is_empty());
        std::mem::swap(&mut out.buf, &mut pen.buf);
        drop(out);
        let done = self.write_pen(pen);
        if done {
            finish_batch(self, &mut pen.buf, &mut pen.since_large);
            pen.pos = 0;
        }
        drop(guard);
        let mut out = lock(&self.out);
        out.writing = false;
        out.pending = !done;
        let wake = !done || out.writer_waits || !out.buf.is_empty();
        out.writer_waits = false;
        drop(out);
        if wake {
            self.wake_writer();
        }
    }

    /// Writes `pen.buf` from `pen.pos` and flushes, as far as the socket
    /// goes without waiting. `true` when all was written and flushed;
    /// otherwise `pen.pos` is where the writer task goes on (an error is
    /// left for it to meet too, and report).
    fn write_pen(&self, pen: &mut Pen) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut w = Pin::new(&mut pen.w);
        while pen.pos < pen.buf.len() {
            match w.as_mut().poll_write(&mut cx, &pen.buf[pen.pos..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    pen.pos += n;
                    self.wrote(n);
                }
                _ => return false,
            }
        }
        // TLS and WebSocket transports buffer: what they hold goes now.
        matches!(w.poll_flush(&mut cx), Poll::Ready(Ok(())))
    }

    /// A frame was left to the reader ([`Woken::ToReader`]) because a
    /// control message was queued. If the reader has taken every message
    /// since, it may have passed its write point before the frame was
    /// deferred to it: written from here then. (The flag and the queue's
    /// are read and written sequentially consistently: either the reader
    /// sees the deferral after taking its last message, or this sees the
    /// queue empty.)
    pub(super) fn handed_to_reader(&self) {
        if !self.ctl.pending() {
            self.reader_waits();
        }
    }

    /// Wakes the writer task.
    pub(crate) fn wake_writer(&self) {
        self.out_ready.store(true, Ordering::Release);
        self.out_waker.wake();
    }
}

/// What a sender does after queueing a frame.
pub(super) enum Woken {
    /// Nothing: someone else writes the queue.
    Nothing,
    /// Wake the writer task.
    Wake,
    /// Write the queue directly (the token is taken).
    Take,
    /// Left to the reader, which has a control message to take: checked
    /// again once the `out` lock is released ([`Shared::handed_to_reader`]).
    ToReader,
}
