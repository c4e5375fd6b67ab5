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
            changed: Notify::new(),
            line: Mutex::new(Line::default()),
            held_back: AtomicUsize::new(0),
        }
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

    /// Counts `n` bytes unconditionally (output of running handlers).
    pub(crate) fn charge(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    /// Counts `n` bytes if they fit under the limit, beside what the
    /// first heavy call in line waits for.
    pub(crate) fn try_charge(&self, n: usize) -> bool {
        let room = self
            .limit
            .saturating_sub(self.held_back.load(Ordering::Acquire));
        self.fits_in(n, room)
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
    /// after 2.3 MiB were given back.) What it gathered
    /// goes on to the next one if it leaves the line without starting
    /// ([`leave`](Self::leave), or `Never`). If what the calls in
    /// line hold and `n` leave less than a connection's share of the
    /// budget (an eighth) for everything else, it leaves the line, to be
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
        if self.waiting.load(Ordering::Acquire) > 0 {
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
        struct Waiting<'a>(&'a AtomicUsize, &'a AtomicBool);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.1.store(false, Ordering::SeqCst);
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        own.waits.store(true, Ordering::SeqCst);
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

/// Wakes one connection's reader waiting for room
/// ([`Budget::wait_until`]) when that connection's own state changes: its
/// output written, its handlers stopped. The budget's own wake-up reaches
/// every waiting reader, so these changes, which concern one, do not use
/// it.
#[derive(Debug, Default)]
pub(crate) struct OwnRoom {
    changed: Notify,
    /// Whether the reader waits (only then is `changed` notified, so a
    /// write costs no lock).
    waits: AtomicBool,
}

impl OwnRoom {
    /// The connection's state changed (made before this call): its
    /// waiting reader, if any, re-checks. The fence also orders a write's
    /// change of the queue before the writer's look for held-back
    /// invalidations (`Shared::wrote`, `pushes.rs`).
    #[inline]
    pub(crate) fn wake(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waits.load(Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
    }
}

fn lock(line: &Mutex<Line>) -> std::sync::MutexGuard<'_, Line> {
    line.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_charge_refuses_what_does_not_fit_and_release_gives_back() {
        let b = Budget::new(100);
        assert!(b.try_charge(60));
        assert!(!b.try_charge(41));
        assert!(b.try_charge(40));
        assert!(b.exhausted());
        b.release(50);
        assert_eq!(b.used(), 50);
        assert!(!b.exhausted());
        b.charge(80); // running handlers' output is never refused
        assert_eq!(b.used(), 130);
    }

    #[test]
    fn the_first_heavy_call_in_line_has_its_room_held_back() {
        let limit = 1 << 20;
        let b = Budget::new(limit);
        b.charge(limit - (100 << 10)); // 100 KiB free
        let first = b.line_up(200 << 10, 0);
        let second = b.line_up(10 << 10, 0);
        assert_eq!(b.in_line(), 2);
        // The first one's 200 KiB (and a light call's most) count as used
        // for everybody else: light calls stop, small charges wait.
        assert!(b.exhausted());
        assert!(!b.try_charge(1));
        assert_eq!(
            b.try_charge_first(&second, 10 << 10),
            Turn::Wait,
            "not first"
        );
        assert_eq!(
            b.try_charge_first(&first, 200 << 10),
            Turn::Wait,
            "no room yet"
        );
        assert_eq!(b.used(), limit, "the 100 KiB free gathered for it");
        b.release(150 << 10);
        assert_eq!(b.used(), limit - (50 << 10), "100 KiB of them its own");
        assert!(b.exhausted(), "50 KiB free, 64 KiB held back");
        assert_eq!(b.try_charge_first(&first, 200 << 10), Turn::Counted);
        assert_eq!(b.used(), limit - (50 << 10));
        // The second is first now: 10 KiB + 64 KiB held back.
        assert!(b.exhausted());
        b.release(100 << 10);
        assert!(!b.exhausted());
        assert!(b.try_charge(10 << 10), "room for both");
        assert_eq!(b.try_charge_first(&second, 10 << 10), Turn::Counted);
        assert_eq!(b.in_line(), 0);
        assert!(b.try_charge(50 << 10), "nothing held back");
    }

    #[test]
    fn what_is_given_back_under_the_limit_goes_to_the_first_in_line() {
        // Light calls of busy connections raced past the check of what is
        // held back, and a call needing its room free all at once waited
        // for ever (a CI run). Now the room given back under the limit is
        // the first one's, whether it looks or not, and the budget looks
        // exhausted to everybody else until it has all it needs.
        let limit = 1 << 20;
        let light = 58 << 10;
        let b = Budget::new(limit);
        b.charge(limit + (100 << 10)); // 100 KiB on top
        let first = b.line_up(200 << 10, 0);
        for i in 1..=7 {
            b.release(light);
            let given = (i * light).saturating_sub(100 << 10).min(200 << 10);
            assert_eq!(b.still_needs(), (200 << 10) - given, "release {i}");
            if given < 200 << 10 {
                assert!(b.exhausted(), "release {i}: nobody else may start");
                assert!(!b.try_charge(1));
            }
        }
        assert_eq!(b.try_charge_first(&first, 200 << 10), Turn::Counted);
        // Its 200 KiB counted, the rest given back.
        assert_eq!(b.used(), limit + (100 << 10) - 7 * light + (200 << 10));
        assert_eq!(b.in_line(), 0);
    }

    #[test]
    fn what_comes_on_top_of_the_budget_and_goes_is_not_the_first_ones() {
        // Connections holding nothing may count a light call on top of a
        // full budget. Given to the first in line as they go, those bytes
        // came on top again and again, and each heavy call they funded
        // started past the budget (a red-team pass: 42.8 MiB counted on a
        // 16 MiB budget).
        let limit = 16 << 20;
        let b = Budget::new(limit);
        b.charge(limit);
        let first = b.line_up(3 << 20, 0);
        for _ in 0..1_000 {
            for _ in 0..10 {
                b.charge(60 << 10);
            }
            assert!(b.used() <= limit + (600 << 10));
            for _ in 0..10 {
                b.release(60 << 10);
            }
            assert_eq!(b.try_charge_first(&first, 3 << 20), Turn::Wait);
        }
        assert_eq!(b.used(), limit);
        assert_eq!(b.still_needs(), 3 << 20, "nothing of it was its own");
        // Room given back under the limit is.
        b.release(3 << 20);
        assert_eq!(b.try_charge_first(&first, 3 << 20), Turn::Counted);
        assert_eq!(b.used(), limit);
    }

    #[test]
    fn what_a_call_gathered_goes_to_the_next_when_it_leaves_the_line() {
        let limit = 1 << 20;
        let b = Budget::new(limit);
        b.charge(limit - (50 << 10));
        let first = b.line_up(200 << 10, 0);
        let second = b.line_up(100 << 10, 0);
        assert_eq!(b.try_charge_first(&first, 200 << 10), Turn::Wait);
        assert_eq!(b.used(), limit, "the 50 KiB free gathered");
        b.leave(first);
        assert_eq!(b.used(), limit, "the second's now");
        b.release(50 << 10);
        assert_eq!(b.try_charge_first(&second, 100 << 10), Turn::Counted);
        assert_eq!(b.used(), limit);
        // Refused, it gives them on as well, and back once nobody is in
        // line.
        b.release(limit);
        b.charge(limit - (50 << 10));
        let third = b.line_up(100 << 10, 0);
        let fourth = b.line_up(100 << 10, limit);
        assert_eq!(b.try_charge_first(&third, 100 << 10), Turn::Never);
        assert_eq!(b.used(), limit, "the fourth's");
        b.leave(fourth);
        assert_eq!(b.used(), limit - (50 << 10));
        assert_eq!(b.in_line(), 0);
    }

    #[test]
    fn a_call_needing_nothing_more_leaves_the_line_when_it_asks() {
        let b = Budget::new(1 << 20);
        b.charge(1 << 20);
        let t = b.line_up(0, 100);
        assert_eq!(b.try_charge_first(&t, 0), Turn::Counted);
        assert_eq!(b.in_line(), 0);
        b.release(1 << 20);
        assert!(b.try_charge(1 << 20), "nothing held back");
    }

    #[test]
    fn what_the_line_gathers_is_given_back_exactly_once_under_races() {
        // Threads charging and giving back while others line up, gather
        // (given back bytes taken without the line's lock), start, are
        // refused or leave: at the end nothing is counted or held back.
        use std::sync::Arc;
        let b = Arc::new(Budget::new(1 << 20));
        let mut threads = Vec::new();
        for seed in 1..=3u64 {
            let b = b.clone();
            threads.push(std::thread::spawn(move || {
                let mut x = seed;
                for _ in 0..20_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let n = ((x >> 33) as usize) % (96 << 10);
                    if x & 1 == 0 {
                        b.charge(n);
                    } else if !b.try_charge(n) {
                        continue;
                    }
                    b.release(n);
                }
            }));
        }
        for seed in 7..=8u64 {
            let b = b.clone();
            threads.push(std::thread::spawn(move || {
                let mut x = seed;
                for _ in 0..2_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let need = ((x >> 33) as usize) % (512 << 10);
                    let t = b.line_up(need, ((x >> 20) as usize) % (300 << 10));
                    let mut counted = false;
                    for _ in 0..((x >> 40) % 4) {
                        match b.try_charge_first(&t, need) {
                            Turn::Counted => {
                                counted = true;
                                break;
                            }
                            Turn::Never => break,
                            Turn::Wait => {}
                        }
                    }
                    if counted {
                        b.release(need);
                    } else {
                        b.leave(t);
                    }
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.in_line(), 0);
        assert_eq!(b.held_back.load(Ordering::Acquire), 0);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_heavy_call_leaving_the_line_gives_its_turn_to_the_next() {
        let b = Budget::new(1 << 20);
        b.charge(1 << 20);
        let first = b.line_up(512 << 10, 0);
        let second = b.line_up(256 << 10, 0);
        let third = b.line_up(128 << 10, 0);
        b.leave(second);
        b.leave(first);
        assert_eq!(b.in_line(), 1);
        b.release(1 << 20);
        assert!(
            !b.try_charge((1 << 20) - (128 << 10)),
            "third's room held back"
        );
        assert_eq!(b.try_charge_first(&third, 128 << 10), Turn::Counted);
        assert!(b.try_charge((1 << 20) - (128 << 10)));
    }

    #[test]
    fn a_first_call_that_what_the_line_holds_leaves_no_room_for_is_refused() {
        // Peers line up frames of 300 KiB each behind a call waiting for
        // 500 KiB of a 1 MiB budget: nothing they hold is given back
        // before it starts, and they leave less than an eighth of the
        // budget for everything else.
        let b = Budget::new(1 << 20);
        b.charge(3 * (300 << 10) + (10 << 10));
        let first = b.line_up(500 << 10, 10 << 10);
        let second = b.line_up(500 << 10, 300 << 10);
        assert_eq!(
            b.try_charge_first(&first, 500 << 10),
            Turn::Wait,
            "810 KiB of 896"
        );
        let third = b.line_up(500 << 10, 300 << 10);
        let fourth = b.line_up(500 << 10, 300 << 10);
        assert_eq!(b.try_charge_first(&first, 500 << 10), Turn::Never);
        assert_eq!(b.in_line(), 3);
        // The next one holds 900 KiB of the line's: never either.
        assert_eq!(b.try_charge_first(&second, 500 << 10), Turn::Never);
        b.leave(fourth);
        b.release(600 << 10); // two connections closed
        assert_eq!(b.try_charge_first(&third, 500 << 10), Turn::Counted);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_bytes_are_given_back() {
        let b = std::sync::Arc::new(Budget::new(10));
        b.charge(10);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let own = OwnRoom::default();
            b2.wait_until(&own, || !b2.exhausted()).await
        });
        while b.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        b.release(5);
        tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(b.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn only_releases_that_may_let_a_reader_on_and_its_own_changes_wake_it() {
        use std::sync::Arc;
        let b = Arc::new(Budget::new(100));
        assert!(b.try_charge(100));
        let own = Arc::new(OwnRoom::default());
        let checks = Arc::new(AtomicUsize::new(0));
        let (b2, own2, checks2) = (b.clone(), own.clone(), checks.clone());
        let waiter = tokio::spawn(async move {
            b2.wait_until(&own2, || {
                checks2.fetch_add(1, Ordering::SeqCst);
                !b2.exhausted()
            })
            .await
        });
        let settle = || async {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        };
        settle().await;
        let waiting = checks.load(Ordering::SeqCst);
        assert_eq!(waiting, 2, "checked before and after it registered");
        // Another connection's write: bytes given back, still exhausted.
        b.charge(10);
        b.release(10);
        settle().await;
        assert_eq!(checks.load(Ordering::SeqCst), waiting, "woken for nothing");
        // Its own connection changed: it checks again.
        own.wake();
        settle().await;
        assert_eq!(checks.load(Ordering::SeqCst), waiting + 1);
        // Room: it goes on.
        b.release(50);
        waiter.await.unwrap();
        assert_eq!(checks.load(Ordering::SeqCst), waiting + 2);
    }
}
