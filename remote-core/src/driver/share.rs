//! Fair shares of the memory budget: when a connection may start its
//! peer's next call.
//!
//! Two things bound what one connection holds (PROTOCOL.md §9):
//!
//! - its queued output may grow up to `max_write_queue` only while less
//!   than half of the shared budget is used; past that, to its *share*,
//!   `max(memory_budget / 8, 64 KiB)`, so a connection (or a few) that
//!   stops reading leaves at least half of the budget to everybody else;
//! - the replies its running handlers may still queue are estimated (the
//!   recent reply size) and counted against the share too: a call is not
//!   started while `queued + running handlers × estimate` reaches the
//!   share, so pipelined calls to a slow handler cannot queue replies
//!   without bound. One handler may always run.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::budget::{Budget, SMALL_FRAME};

/// The smallest reply estimate: calls with tiny replies run concurrently up
/// to `share / MIN_ESTIMATE` at once (128 at the default budget).
const MIN_ESTIMATE: usize = 4 << 10;

/// One connection's running handlers and reply estimate.
#[derive(Debug)]
pub(crate) struct OutputShare {
    /// Spawned handlers not yet stopped.
    handlers: AtomicUsize,
    /// Estimated reply size: the largest recent reply, decaying by a quarter
    /// per smaller reply. Starts at a small frame (64 KiB): at the default
    /// budget, `max_calls_in_flight` handlers may run before the first
    /// reply tells us more, so calls that wait on each other (or on calls
    /// back to the peer) are not held back by a guess.
    estimate: AtomicUsize,
}

impl OutputShare {
    pub(crate) fn new() -> Self {
        OutputShare {
            handlers: AtomicUsize::new(0),
            estimate: AtomicUsize::new(SMALL_FRAME),
        }
    }

    /// A handler was spawned (it runs on after the call frame is handled).
    pub(crate) fn started(&self) {
        self.handlers.fetch_add(1, Ordering::AcqRel);
    }

    /// A spawned handler stopped; wakes readers waiting for room.
    pub(crate) fn stopped(&self, budget: &Budget) {
        let _ = self
            .handlers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        budget.wake();
    }

    /// A reply of `len` bytes was queued.
    pub(crate) fn replied(&self, len: usize) {
        let _ = self
            .estimate
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| {
                Some(len.max(e - e / 4).max(MIN_ESTIMATE))
            });
    }

    /// Whether the peer's next call may start, with `queued` bytes queued
    /// for the peer.
    pub(crate) fn may_start(&self, queued: usize, max_write_queue: usize, budget: &Budget) -> bool {
        if queued >= max_write_queue {
            return false;
        }
        let handlers = self.handlers.load(Ordering::Acquire);
        if queued == 0 && handlers == 0 {
            return true;
        }
        let share = share(budget);
        if queued >= share && budget.used() >= budget.limit() / 2 {
            return false;
        }
        let pending = handlers.saturating_mul(self.estimate.load(Ordering::Acquire));
        if handlers > 0 && queued.saturating_add(pending) >= share {
            return false;
        }
        queued == 0 || !budget.exhausted()
    }
}

/// One connection's share of the budget: an eighth, at least a small frame.
pub(crate) fn share(budget: &Budget) -> usize {
    (budget.limit() / 8).max(SMALL_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_held_to_the_share_once_half_the_budget_is_used() {
        let b = Budget::new(8 << 20); // share 1 MiB
        let s = OutputShare::new();
        // Budget mostly free: a busy connection may queue past its share.
        assert!(s.may_start(3 << 20, 16 << 20, &b));
        b.charge(4 << 20);
        assert!(!s.may_start(3 << 20, 16 << 20, &b));
        assert!(s.may_start(100, 16 << 20, &b));
        // max_write_queue holds whatever the budget.
        b.release(4 << 20);
        assert!(!s.may_start(16 << 20, 16 << 20, &b));
    }

    #[test]
    fn running_handlers_count_their_estimated_replies() {
        let b = Budget::new(8 << 20); // share 1 MiB, estimate 64 KiB
        let s = OutputShare::new();
        for _ in 0..16 {
            assert!(s.may_start(0, 16 << 20, &b));
            s.started();
        }
        assert!(
            !s.may_start(0, 16 << 20, &b),
            "16 × 64 KiB reaches the share"
        );
        // Small replies lower the estimate, so more handlers may run.
        for _ in 0..40 {
            s.replied(100);
        }
        assert!(s.may_start(0, 16 << 20, &b));
        s.replied(1 << 20);
        assert!(!s.may_start(0, 16 << 20, &b), "16 × 1 MiB");
        for _ in 0..15 {
            s.stopped(&b);
        }
        assert!(!s.may_start(0, 16 << 20, &b), "1 × 1 MiB reaches the share");
        s.stopped(&b);
        assert!(s.may_start(0, 16 << 20, &b), "none running");
    }
}
