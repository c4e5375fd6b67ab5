//! Memory budgets: bytes of queued output, buffered input and running
//! handlers' arguments, counted per connection and against a budget shared
//! by every connection of a server (a standalone connection has its own).
//!
//! The budget is enforced by backpressure, never by closing: on a
//! connection whose output is over `max_write_queue` or its fair share (see
//! [`share`](super::share)), or that holds output while the shared budget
//! is exhausted, the next call is not started (and nothing behind it is
//! read) until its writer has drained; a frame larger
//! than [`SMALL_FRAME`] waits for room in the budget before its bytes are
//! read, and so does a call whose arguments count more than that
//! (`share::heavy_call_weight`) before it starts. Only a peer that reads nothing for `write_stall_timeout` is closed
//! (by the writer).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// A frame up to this size (prefix included) is always read by a connection
/// that holds nothing else in the budget, even while the budget is
/// exhausted: small calls from well-behaved clients keep being served. At
/// most `max_connections × SMALL_FRAME` (64 MiB at the defaults) comes on
/// top of the budget this way.
pub(crate) const SMALL_FRAME: usize = 64 << 10;

/// Bytes held against a limit, with a wake-up for connections waiting for
/// room.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Readers currently waiting for room (wake-ups are sent only then).
    waiting: AtomicUsize,
    /// Tasks waiting for room in this budget itself, not only their own
    /// connection's ([`starving`](Self::starving)).
    starved: AtomicUsize,
    changed: Notify,
    /// Heavy calls waiting for room, in arrival order ([`line_up`](Self::line_up)).
    line: Mutex<Line>,
    /// What the first of them still waits for (and a little more,
    /// [`SMALL_FRAME`]), held back from everybody else (counted as used by
    /// [`exhausted`](Self::exhausted) and [`try_charge`](Self::try_charge)),
    /// so that room builds up for it: otherwise light calls, each needing
    /// little, take every byte given back before a heavy call's whole
    /// count is free at once. 0 when nobody is in line. Set under the
    /// line's lock when the first changes, and taken down without it as
    /// bytes given back go to the first ([`release`](Self::release)): so
    /// what the first has gathered is its need less this (less
    /// `SMALL_FRAME`).
    held_back: AtomicUsize,
    /// Notified when a task starts to wait for room: connections holding
    /// buffers kept for their next large frame (`kept.rs`) give them back
    /// ([`pressed`](Self::pressed)).
    pressure: Notify,
    /// Bytes of stream items held between pulls for the peers of every
    /// connection counting in this budget (`heavy_reply::hold_fn`): also
    /// counted in `used`; at most an eighth of the limit, and a quarter of
    /// that for the connections of one peer address.
    pub(crate) held: std::sync::Arc<crate::proto::CountPool>,
}

/// Heavy calls waiting for room, and what their connections hold in the
/// budget meanwhile (their frames: nothing of it is given back before the
/// first one has its room).
#[derive(Debug, Default)]
struct Line {
    next: u64,
    waiting: VecDeque<InLine>,
    /// What the calls in line hold (their `held`s).
    held: usize,
}

/// A heavy call in line.
#[derive(Debug)]
struct InLine {
    ticket: u64,
    /// Bytes it waits for.
    need: usize,
    /// Bytes its connection holds meanwhile.
    held: usize,
}

/// A heavy call's place in the line for room ([`Budget::line_up`]).
#[derive(Debug)]
pub(crate) struct Ticket(u64);

/// What the first heavy call in line gets ([`Budget::try_charge_first`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Its bytes are counted: it starts.
    Counted,
    /// Not first, or no room yet.
    Wait,
    /// It can never have room: what the calls in line hold and its own
    /// need pass the limit. It has left the line (and is refused).
    Never,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            starved: AtomicUsize::new(0),
            changed: Notify::new(),
            line: Mutex::new(Line::default()),
            held_back: AtomicUsize::new(0),
            pressure: Notify::new(),
            held: crate::proto::CountPool::with_reserve(limit / 8, limit / 32, 0),
        }
    }

    /// Resolves once a task starts to wait for room after this call
    /// (then the budget is [`short`](Self::short), or was): a connection
    /// holding a kept buffer waits on it, so that its buffer never makes
    /// another connection, or its own next frame, wait for room.
    pub(crate) fn pressed(&self) -> tokio::sync::futures::Notified<'_> {
        self.pressure.notified()
    }

    /// The budget's size in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The most that heavy calls waiting for room (what their connections
    /// hold) and the first one's need may come to: the budget less an
    /// eighth, left for the rest of the server ([`try_charge_first`](Self::try_charge_first)).
    /// A call counting more could never have room.
    pub(crate) fn most_for_the_line(&self) -> usize {
        self.limit - self.limit / 8
    }

    /// Bytes currently held.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Whether the budget is exhausted (what the first heavy call in line
    /// waits for counts as used).
    pub(crate) fn exhausted(&self) -> bool {
        self.used()
            .saturating_add(self.held_back.load(Ordering::Acquire))
            >= self.limit
    }

    /// Whether `n` bytes more would fit under the limit, beside what the
    /// first heavy call in line waits for ([`try_charge`](Self::try_charge)
    /// may count them).
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.used().saturating_add(n) <= self.room()
    }

    /// What everybody but the first heavy call in line may count up to:
    /// the limit less what that call waits for.
    fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.held_back.load(Ordering::Acquire))
    }

    /// Whether the budget is short: exhausted, a heavy call in line for
    /// room, or a task waiting for room in it ([`starving`](Self::starving)).
    /// A server then closes peers that read nothing for
    /// `pressure_stall_timeout` (`stall.rs`).
    pub(crate) fn short(&self) -> bool {
        self.starved.load(Ordering::Acquire) > 0
            || self.held_back.load(Ordering::Acquire) > 0
            || self.exhausted()
    }

    /// A mark, off at first, that a task waits for room in the budget
    /// itself: while it is on, the budget is [`short`](Self::short).
    pub(crate) fn starving(&self) -> Starving<'_> {
        Starving {
            budget: self,
            on: AtomicBool::new(false),
        }
    }

    /// Counts `n` bytes unconditionally (output of running handlers).
    pub(crate) fn charge(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    /// Counts `n` bytes if they fit under the limit, beside what the
    /// first heavy call in line waits for.
    pub(crate) fn try_charge(&self, n: usize) -> bool {
        self.fits_in(n, self.room())
    }

    /// Counts `n` bytes if `used + n` stays within `room`.
    fn fits_in(&self, n: usize, room: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u.saturating_add(n) <= room).then_some(u + n)
            })
            .is_ok()
    }

    /// Puts a heavy call waiting for `n` bytes in line, its connection
    /// holding `held` bytes of the budget meanwhile: once it is first, the
    /// `n` bytes are held back from everybody else until it gets them
    /// ([`try_charge_first`](Self::try_charge_first)) or leaves
    /// ([`leave`](Self::leave)).
    pub(crate) fn line_up(&self, n: usize, held: usize) -> Ticket {
        let mut line = lock(&self.line);
        let ticket = line.next;
        line.next += 1;
        line.waiting.push_back(InLine {
            ticket,
            need: n,
            held,
        });
        line.held += held;
        if line.waiting.len() == 1 {
            self.held_back
                .store(n.saturating_add(SMALL_FRAME), Ordering::Release);
        }
        drop(line);
        // The first one may now never have room: it looks again.
        self.wake();
        self.pressure.notify_waiters();
        Ticket(ticket)
    }

    /// Counts `n` bytes for the heavy call holding `ticket` if it is first
    /// in line and they fit under the limit; it then leaves the line, and
    /// the next one is woken to hold its bytes back. The first one gathers
    /// them: whatever is free under the limit when it looks, and every
    /// byte given back under the limit while it waits
    /// ([`release`](Self::release)), so it waits for the rest only, and
    /// the budget looks exhausted to everybody else until it has them.
    /// (Needing them free all at once, it could wait for ever: light calls
    /// of busy connections race past the check of what is held back, one
    /// per worker thread, as soon as the room given back passes it and the
    /// first one has not looked yet; a CI run saw a call wait for its 1 MiB
    /// after 2.3 MiB were given back.) What it gathered goes on to the next
    /// one if it leaves the line without starting ([`leave`](Self::leave),
    /// or `Never`). If what the calls in line hold and `n` leave less than
    /// a connection's share of the budget (an eighth) for everything else,
    /// it leaves the line, to be
    /// refused: those calls wait behind it holding their frames, and what
    /// else is held may never be given back either (each connection's
    /// small buffers), so peers that line up large frames behind a call
    /// too heavy to fit beside them would stop the line for good (found
    /// by a red-team pass).
    pub(crate) fn try_charge_first(&self, ticket: &Ticket, n: usize) -> Turn {
        let mut line = lock(&self.line);
        let held = line.held;
        let Some(first) = line.waiting.front() else {
            return Turn::Wait;
        };
        if first.ticket != ticket.0 {
            return Turn::Wait;
        }
        // The reader asks for what it lined up for every time: the frame's
        // reservation, taken off its weight, is kept meanwhile.
        debug_assert_eq!(first.need, n, "asked for what it lined up for");
        let need = first.need;
        // What is free under the limit, to it.
        let free = self.gather(self.still_needs());
        if free > 0 {
            let took = self.take_for_first(free);
            if took < free {
                // Given to it meanwhile: not needed after all.
                self.used.fetch_sub(free - took, Ordering::AcqRel);
            }
        }
        let turn = if self.still_needs() == 0 {
            Turn::Counted
        } else if held.saturating_add(need) > self.most_for_the_line() {
            Turn::Never
        } else {
            return Turn::Wait;
        };
        let got = self.next_first(&mut line);
        drop(line);
        if turn == Turn::Never {
            // To the next one in line, or back.
            self.release(got);
        }
        self.wake();
        turn
    }

    /// What the first heavy call in line still needs (0 if nobody is in
    /// line).
    fn still_needs(&self) -> usize {
        self.held_back
            .load(Ordering::Acquire)
            .saturating_sub(SMALL_FRAME)
    }

    /// Gives the first heavy call in line what it still needs of `n`
    /// bytes, counted already: how much it took.
    fn take_for_first(&self, n: usize) -> usize {
        let mut took = 0;
        let _ = self
            .held_back
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                took = h.saturating_sub(SMALL_FRAME).min(n);
                (took > 0).then_some(h - took)
            });
        took
    }

    /// Removes the first heavy call in line (under the line's lock) and
    /// holds back what the next one needs: what the removed one had
    /// gathered.
    fn next_first(&self, line: &mut Line) -> usize {
        let Some(w) = line.waiting.pop_front() else {
            return 0;
        };
        line.held -= w.held;
        let next = line
            .waiting
            .front()
            .map_or(0, |n| n.need.saturating_add(SMALL_FRAME));
        // Swapped: what was given to it up to now is its own, and what is
        // given back from now on goes to the next.
        let h = self.held_back.swap(next, Ordering::AcqRel);
        w.need - h.saturating_sub(SMALL_FRAME).min(w.need)
    }

    /// Counts as used what is free under the limit, up to `n` bytes: how
    /// much.
    fn gather(&self, n: usize) -> usize {
        let mut took = 0;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                took = self.limit.saturating_sub(u).min(n);
                (took > 0).then_some(u + took)
            });
        took
    }

    /// Heavy calls waiting in line for room now.
    pub(crate) fn in_line(&self) -> usize {
        lock(&self.line).waiting.len()
    }

    /// A heavy call leaves the line uncounted (its connection closed, or
    /// its deadline passed).
    pub(crate) fn leave(&self, ticket: Ticket) {
        let mut line = lock(&self.line);
        let got = match line.waiting.iter().position(|w| w.ticket == ticket.0) {
            // Only the first gathers.
            Some(0) => self.next_first(&mut line),
            Some(i) => {
                if let Some(w) = line.waiting.remove(i) {
                    line.held -= w.held;
                }
                0
            }
            None => 0,
        };
        drop(line);
        // What it gathered: to the next one in line, or back.
        self.release(got);
        self.wake();
    }

    /// Gives back `n` bytes and wakes the waiting readers, if any, unless
    /// the budget is still exhausted and nobody is in line: no reader
    /// waiting for budget room could go on then, and what else they wait
    /// for is their own connection's ([`OwnRoom`]). (Every write used to
    /// wake every waiting reader: a red-team pass parked a thousand
    /// readers and made each call of a bystander cost a thousand
    /// wake-ups.) While a heavy call is first in line, what it still
    /// needs of them is its own (they stay counted, for it) before
    /// anybody else may look.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let held_back = self.held_back.load(Ordering::Acquire);
        if held_back > SMALL_FRAME {
            self.release_to_first(n, held_back - SMALL_FRAME);
        } else {
            self.used.fetch_sub(n, Ordering::AcqRel);
        }
        if held_back > 0 || !self.exhausted() {
            self.wake();
        }
    }

    /// Gives back `n` bytes while the first heavy call in line still
    /// needs `needs`: of them, those that land under the limit go to it
    /// (they stay counted, for it), up to what it needs. Only those: a
    /// byte given back while the budget is over its limit was counted on
    /// top of it (a light call of a connection holding nothing, a frame
    /// set aside), and given to the first it would let that come on top
    /// again and again, each heavy call funded by it starting past the
    /// budget (a red-team pass ran 15 calls of 2.8 MiB on a 16 MiB budget
    /// with small calls coming and going, 42.8 MiB counted). Those under
    /// the limit never leave the count, and what the first still needs
    /// stays held back until they are its own, so nobody else sees them
    /// free meanwhile.
    fn release_to_first(&self, n: usize, needs: usize) {
        let mut want = 0;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                let after = u.saturating_sub(n);
                want = self.limit.saturating_sub(after).min(n).min(needs);
                Some(after + want)
            });
        if want > 0 {
            let took = self.take_for_first(want);
            if took < want {
                // The first changed meanwhile: not needed after all.
                self.used.fetch_sub(want - took, Ordering::AcqRel);
            }
        }
    }

    /// Wakes the waiting readers, if any, to re-check their condition.
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `wait_until`: a waiter that registered
        // after this load sees the bytes given back before it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    /// Waits until `ready()` holds, re-checking whenever bytes are given
    /// back in the budget and may let a waiting reader on
    /// ([`release`](Self::release)), or the waiting reader's own
    /// connection changed (`own`). Cancel-safe.
    pub(crate) async fn wait_until(&self, own: &OwnRoom, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        struct Waiting<'a>(&'a AtomicUsize, &'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.1.fetch_sub(1, Ordering::SeqCst);
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        own.waits.fetch_add(1, Ordering::SeqCst);
        let _w = Waiting(&self.waiting, &own.waits);
        loop {
            let (all, mine) = (self.changed.notified(), own.changed.notified());
            tokio::pin!(all, mine);
            all.as_mut().enable();
            mine.as_mut().enable();
            // Pairs with the fence in `OwnRoom::wake`: a change made
            // before that wake saw no waiter is seen by `ready` here.
            std::sync::atomic::fence(Ordering::SeqCst);
            if ready() {
                return;
            }
            std::future::poll_fn(|cx| {
                if all.as_mut().poll(cx).is_ready() || mine.as_mut().poll(cx).is_ready() {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
        }
    }
}

/// Wakes the tasks of one connection waiting for room
/// ([`Budget::wait_until`]) when that connection's own state changes: its
/// output written, its handlers stopped, it closed. Its reader waits on
/// one; its collections' notifications on another (`room.rs`). The
/// budget's own wake-up reaches every waiting task, so these changes,
/// which concern one connection, do not use it.
#[derive(Debug, Default)]
pub(crate) struct OwnRoom {
    changed: Notify,
    /// How many tasks wait (only then is `changed` notified, so a write
    /// costs no lock).
    waits: AtomicUsize,
}

impl OwnRoom {
    /// The connection's state changed (made before this call): its
    /// waiting tasks, if any, re-check. The fence also orders a write's
    /// change of the queue before the writer's look for held-back
    /// invalidations (`Shared::wrote`, `pushes.rs`).
    #[inline]
    pub(crate) fn wake(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.wake_fenced();
    }

    /// [`wake`](Self::wake), for a caller that made the fence since the
    /// change (`Shared::wrote` wakes two).
    #[inline]
    pub(crate) fn wake_fenced(&self) {
        if self.waits.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// A task's mark that it waits for room in the budget
/// ([`Budget::starving`]); taken off when dropped.
#[derive(Debug)]
pub(crate) struct Starving<'a> {
    budget: &'a Budget,
    on: AtomicBool,
}

impl Starving<'_> {
    /// Puts the mark on or takes it off.
    pub(crate) fn set(&self, on: bool) {
        if self.on.swap(on, Ordering::AcqRel) != on {
            if on {
                self.budget.starved.fetch_add(1, Ordering::AcqRel);
                self.budget.pressure.notify_waiters();
            } else {
                self.budget.starved.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Drop for Starving<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

fn lock(line: &Mutex<Line>) -> std::sync::MutexGuard<'_, Line> {
    line.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
