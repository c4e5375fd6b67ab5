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

use std::sync::atomic::{AtomicUsize, Ordering};

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
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    /// The budget's size in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently held.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Whether the budget is exhausted.
    pub(crate) fn exhausted(&self) -> bool {
        self.used() >= self.limit
    }

    /// Counts `n` bytes unconditionally (output of running handlers).
    pub(crate) fn charge(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    /// Counts `n` bytes if they fit under the limit.
    pub(crate) fn try_charge(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u.saturating_add(n) <= self.limit).then_some(u + n)
            })
            .is_ok()
    }

    /// Gives back `n` bytes and wakes the waiting readers, if any.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.wake();
    }

    /// Wakes the waiting readers, if any, to re-check their condition.
    pub(crate) fn wake(&self) {
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.changed.notify_waiters();
        }
    }

    /// Waits until `ready()` holds, re-checking whenever bytes are given
    /// back anywhere in the budget. Cancel-safe.
    pub(crate) async fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _w = Waiting(&self.waiting);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready() {
                return;
            }
            notified.await;
        }
    }
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

    #[tokio::test]
    async fn a_waiter_wakes_when_bytes_are_given_back() {
        let b = std::sync::Arc::new(Budget::new(10));
        b.charge(10);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.wait_until(|| !b2.exhausted()).await });
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
}
