//! Call deadlines, kept by the connection: one timer in the reader task,
//! armed at the earliest deadline it knows of, instead of a timer entry per
//! call. When it fires, every call of ours past its deadline is failed with
//! [`Error::DeadlineExceeded`] and cancelled at the peer, every spawned
//! handler past its call's deadline is stopped and its call answered with
//! `deadline_exceeded` (`conn/running.rs`), and the timer is re-armed at
//! the earliest deadline still waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::rt::time::Instant;

use super::control::Control;
use super::shared::Shared;
use crate::proto::encode;
use crate::Error;

/// An armed time that is never: no deadline waits.
const NEVER: u64 = u64::MAX;

/// When the reader's deadline timer fires, as nanoseconds since `epoch`
/// (`NEVER`: no deadline waits). The calls' deadline is written only under
/// the connection's core lock (with the call table it describes), so
/// registering a call costs a load and a compare, and no lock or
/// read-modify-write of its own; the reader task reads it to arm its
/// timer.
pub(crate) struct Expiry {
    epoch: Instant,
    /// Of our calls waiting for replies.
    calls: AtomicU64,
    /// Of spawned handlers; written only by the reader task (which spawns
    /// them and sweeps).
    handlers: AtomicU64,
}

impl Expiry {
    pub(crate) fn new() -> Self {
        Expiry {
            epoch: Instant::now(),
            calls: AtomicU64::new(NEVER),
            handlers: AtomicU64::new(NEVER),
        }
    }

    /// `at` in nanoseconds since the epoch (an earlier time counts as the
    /// epoch, a time 584 years on as one nanosecond short of never).
    fn ticks(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(d).unwrap_or(NEVER).min(NEVER - 1)
    }

    fn ticks_of(&self, at: Option<Instant>) -> u64 {
        at.map_or(NEVER, |at| self.ticks(at))
    }

    fn instant(&self, ticks: u64) -> Option<Instant> {
        (ticks != NEVER).then(|| super::deadline::after(self.epoch, Duration::from_nanos(ticks)))
    }

    /// A call with `deadline` was registered (the caller holds the core
    /// lock): `true` if it is earlier than the timer, which must then be
    /// re-armed ([`Control::Rearm`]).
    pub(crate) fn note(&self, deadline: Instant) -> bool {
        let t = self.ticks(deadline);
        // No other writer while the core lock is held: a load and a store.
        let rearm = t < self.calls.load(Ordering::Acquire);
        if rearm {
            self.calls.store(t, Ordering::Release);
        }
        rearm
    }

    /// A spawned handler with `deadline` was recorded (on the reader
    /// task): `true` if the timer must be re-armed for it.
    pub(crate) fn note_handler(&self, deadline: Instant) -> bool {
        let t = self.ticks(deadline);
        if t < self.handlers.load(Ordering::Acquire) {
            self.handlers.store(t, Ordering::Release);
            t < self.calls.load(Ordering::Acquire)
        } else {
            false
        }
    }

    /// When the timer should fire, if any call waits or handler runs.
    pub(crate) fn armed(&self) -> Option<Instant> {
        let calls = self.calls.load(Ordering::Acquire);
        self.instant(calls.min(self.handlers.load(Ordering::Acquire)))
    }
}

/// The deadline timer fired: fails the calls past their deadline (each
/// gets its cancel frame sent, as a dropped call does), stops the spawned
/// handlers past theirs, and sets the timer to the earliest deadline still
/// waiting.
pub(super) fn sweep(shared: &Shared) {
    let now = Instant::now();
    let expired = {
        let mut core = shared.core();
        let expired = core.expire_calls(|w| w.deadline <= now);
        let next = core.waiters().map(|w| w.deadline).min();
        let next = shared.expiry.ticks_of(next);
        shared.expiry.calls.store(next, Ordering::Release);
        expired
    };
    for (id, waiter) in expired {
        let _ = shared.send(&encode::cancel(id));
        // The caller reports its own budget (`outgoing::Waiting`, or a promise).
        let _ = waiter.send(shared, Err(Error::DeadlineExceeded(Duration::ZERO)));
    }
    let next = shared.expiry.ticks_of(shared.expire_handlers(now));
    shared.expiry.handlers.store(next, Ordering::Release);
}

/// Asks the reader to re-arm its deadline timer.
pub(super) fn rearm(shared: &Shared) {
    let _ = shared.ctl.send(Control::Rearm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_armed_at_the_earliest_deadline_exactly() {
        let e = Expiry::new();
        assert_eq!(e.armed(), None, "nothing waits");
        let now = Instant::now();
        let at = |ms| super::super::deadline::after(now, Duration::from_millis(ms));
        assert!(e.note(at(10_000)), "the first call arms the timer");
        assert_eq!(e.armed(), Some(at(10_000)));
        assert!(!e.note(at(20_000)), "a later deadline does not re-arm");
        assert!(e.note(at(5_000)), "an earlier one does");
        assert_eq!(e.armed(), Some(at(5_000)));
        // Handlers: earlier than every call re-arms; otherwise only noted.
        assert!(e.note_handler(at(1_000)));
        assert_eq!(e.armed(), Some(at(1_000)));
        assert!(!e.note_handler(at(2_000)));
        let e = Expiry::new();
        assert!(e.note(at(5_000)));
        assert!(!e.note_handler(at(7_000)), "later than the armed call");
        assert_eq!(e.armed(), Some(at(5_000)));
    }

    #[test]
    fn deadlines_before_the_start_or_far_away_still_arm_the_timer() {
        let before = Instant::now();
        let e = Expiry::new();
        // Before the connection started: armed at its start, already due.
        assert!(e.note(before));
        assert!(e.armed().is_some_and(|t| t <= Instant::now()));
        // As far as the clock goes: armed, not "never".
        let e = Expiry::new();
        let far = super::super::deadline::after(Instant::now(), Duration::MAX);
        assert!(e.note(far));
        let armed = e.armed().expect("armed");
        assert!(armed > Instant::now() + Duration::from_secs(86_400 * 365));
    }
}
