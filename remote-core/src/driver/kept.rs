//! Large buffers kept for the next large frame instead of freed.
//!
//! A stream of large values (a 1 MiB `Bytes` echo) would otherwise allocate
//! a fresh frame-sized buffer for every encode and every read, which the
//! system allocator hands back to the kernel and pages in again (zeroed)
//! the next time: that, not copying, made a 1 MiB echo take several times
//! a raw socket echo's time. The writer keeps the last large batch buffer
//! it wrote as the connection's *spare*, which the next encode on the
//! connection takes; the reader keeps its large read buffer (`Input::keep`).
//! Only a run of large frames keeps anything ([`SHED_AFTER`]).
//!
//! Every kept byte stays counted in the memory budget, a buffer is kept only
//! while the budget is less than half used and nobody waits for room in it,
//! at most one spare per connection, and the reader's idle check gives both
//! back (`Input::shed_if_idle`, [`Kept::shed`]). So that kept buffers never
//! make another connection, or their own connection's next frame, wait for
//! room, the reader of a connection holding one also watches the budget
//! ([`Budget::pressed`]) and gives them back as soon as a task waits for
//! room (`reader.rs`): a red-team pass found a connection's spare (its last
//! 900 KiB reply) holding the room that its next 900 KiB WebSocket call
//! waited for, until the call's deadline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::budget::Budget;
use super::shared::lock;

/// A buffer at least this large is worth keeping (and a frame this large is
/// moved to the writer, not copied: `Shared::send_vec_as`).
pub(crate) const LARGE_FRAME: usize = 64 << 10;

/// A buffer is kept only for a run of large frames: a large frame within
/// this many frames (or write batches) of the previous large one. A single
/// large frame on an otherwise quiet connection keeps nothing, and a kept
/// buffer is given up after this many small ones in a row.
pub(crate) const SHED_AFTER: u32 = 64;

/// Whether the budget can count `more` bytes of kept buffers: it is less
/// than half used with them, and nobody waits for room in it.
pub(crate) fn may_keep(budget: &Budget, more: usize) -> bool {
    budget.used() + more <= budget.limit() / 2 && !budget.short()
}

/// The spare and whether the writer has ended (then nothing is kept: the
/// budget, shared with other connections, must get every byte back).
#[derive(Debug, Default)]
struct Slot {
    buf: Vec<u8>,
    closed: bool,
}

/// A connection's kept buffers: the spare output buffer, and the count of
/// every kept byte (the reader's too) for tests and accounting.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// The spare output buffer (capacity 0 when none).
    spare: Mutex<Slot>,
    /// Whether `spare` holds a buffer: the hot path checks this, not the lock.
    has_spare: AtomicBool,
    /// Bytes of kept buffers counted in the budget (spare and read buffer).
    bytes: AtomicUsize,
}

impl Kept {
    /// Bytes of kept buffers counted in the budget.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Whether a spare output buffer is kept.
    #[inline]
    pub(crate) fn has_spare(&self) -> bool {
        self.has_spare.load(Ordering::Acquire)
    }

    /// `n` more (or fewer) bytes kept by the reader, already charged (or
    /// released) by it.
    pub(crate) fn reader_kept(&self, n: isize) {
        if n >= 0 {
            self.bytes.fetch_add(n as usize, Ordering::AcqRel);
        } else {
            self.bytes.fetch_sub(n.unsigned_abs(), Ordering::AcqRel);
        }
    }

    /// Offers the writer's emptied batch buffer (its capacity counted as
    /// output): kept as the spare, the count moving from output to kept,
    /// if it is large, no spare is kept and the budget has room. Returns it
    /// otherwise (the writer frees it).
    pub(crate) fn offer(&self, budget: &Budget, buf: Vec<u8>) -> Option<Vec<u8>> {
        let cap = buf.capacity();
        if cap < LARGE_FRAME || self.has_spare.load(Ordering::Acquire) || !may_keep(budget, 0) {
            return Some(buf);
        }
        let mut spare = lock(&self.spare);
        if spare.closed || spare.buf.capacity() > 0 {
            return Some(buf);
        }
        debug_assert!(buf.is_empty());
        spare.buf = buf;
        self.bytes.fetch_add(cap, Ordering::AcqRel);
        self.has_spare.store(true, Ordering::Release);
        None
    }

    /// Puts the spare in `buf` (the thread's scratch buffer, which is then
    /// freed: only a stream of large frames keeps a spare) for an encode if
    /// there is one, returning whether it did.
    #[inline]
    pub(crate) fn swap_in(&self, budget: &Budget, buf: &mut Vec<u8>) -> bool {
        if !self.has_spare.load(Ordering::Relaxed) {
            return false;
        }
        self.swap_in_slow(budget, buf)
    }

    #[cold]
    fn swap_in_slow(&self, budget: &Budget, buf: &mut Vec<u8>) -> bool {
        match self.take(budget) {
            Some(spare) => {
                *buf = spare;
                true
            }
            None => false,
        }
    }

    /// Takes the spare: its count leaves the budget (an encode buffer is
    /// not counted until it is queued).
    fn take(&self, budget: &Budget) -> Option<Vec<u8>> {
        let buf = {
            let mut spare = lock(&self.spare);
            self.has_spare.store(false, Ordering::Release);
            std::mem::take(&mut spare.buf)
        };
        if buf.capacity() == 0 {
            return None;
        }
        self.bytes.fetch_sub(buf.capacity(), Ordering::AcqRel);
        budget.release(buf.capacity());
        Some(buf)
    }

    /// Gives back a buffer [`take`](Self::take)n for an encode. The frame
    /// encoded in it was either moved to the writer (then `buf` is the
    /// small buffer swapped for it, dropped here) or copied (then `buf` is
    /// the spare, kept again if the budget has room). Returns whether it
    /// was kept (the reader is then told: `Control::Kept`).
    pub(crate) fn give_back(&self, budget: &Budget, mut buf: Vec<u8>) -> bool {
        let cap = buf.capacity();
        if cap < LARGE_FRAME || !may_keep(budget, cap) || !budget.try_charge(cap) {
            return false;
        }
        buf.clear();
        let mut spare = lock(&self.spare);
        if spare.closed || spare.buf.capacity() > 0 {
            drop(spare);
            budget.release(cap);
            return false;
        }
        spare.buf = buf;
        self.bytes.fetch_add(cap, Ordering::AcqRel);
        self.has_spare.store(true, Ordering::Release);
        true
    }

    /// The writer has ended: frees the spare and keeps nothing from now on.
    pub(crate) fn close(&self, budget: &Budget) {
        lock(&self.spare).closed = true;
        self.shed(budget);
    }

    /// Frees the spare (idle connection).
    pub(crate) fn shed(&self, budget: &Budget) {
        if let Some(buf) = self.take(budget) {
            drop(buf);
        }
    }
}
