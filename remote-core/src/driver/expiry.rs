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

/// `at` when no call waits.
const NEVER: u64 = u64::MAX;

/// When the reader's deadline timer fires, as nanoseconds since the
/// connection's epoch. Written only under the connection's core lock (with
/// the call table it describes), read by the reader task to arm its timer.
pub(crate) struct Expiry {
    epoch: Instant,
    at: AtomicU64,
    /// The same for spawned handlers' deadlines; written only by the
    /// reader task (which spawns them and sweeps).
    handlers: AtomicU64,
}

impl Expiry {
    pub(crate) fn new() -> Self {
        Expiry {
            epoch: Instant::now(),
            at: AtomicU64::new(NEVER),
            handlers: AtomicU64::new(NEVER),
        }
    }

    fn ticks(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).map_or(NEVER - 1, |t| t.min(NEVER - 1))
    }

    /// A call with `deadline` was registered (the caller holds the core
    /// lock): `true` if it is earlier than the timer, which must then be
    /// re-armed ([`Control::Rearm`]).
    pub(crate) fn note(&self, deadline: Instant) -> bool {
        let t = self.ticks(deadline);
        if t < self.at.load(Ordering::Acquire) {
            self.at.store(t, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// A spawned handler with `deadline` was recorded (on the reader
    /// task): `true` if the timer must be re-armed for it.
    pub(crate) fn note_handler(&self, deadline: Instant) -> bool {
        let t = self.ticks(deadline);
        if t < self.handlers.load(Ordering::Acquire) {
            self.handlers.store(t, Ordering::Release);
            t < self.at.load(Ordering::Acquire)
        } else {
            false
        }
    }

    /// Sets the timer to `next` (the caller holds the core lock).
    fn set(&self, next: Option<Instant>) {
        let t = next.map_or(NEVER, |d| self.ticks(d));
        self.at.store(t, Ordering::Release);
    }

    /// When the timer should fire, if any call waits or handler runs.
    pub(crate) fn armed(&self) -> Option<Instant> {
        let at = self.at.load(Ordering::Acquire);
        match at.min(self.handlers.load(Ordering::Acquire)) {
            NEVER => None,
            t => self.epoch.checked_add(Duration::from_nanos(t)),
        }
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
        shared.expiry.set(next);
        expired
    };
    for (id, waiter) in expired {
        let _ = shared.send(&encode::cancel(id));
        // The caller reports its own budget (`RawCall`).
        let _ = waiter.send(shared, Err(Error::DeadlineExceeded(Duration::ZERO)));
    }
    let next = shared.expire_handlers(now);
    let t = next.map_or(NEVER, |d| shared.expiry.ticks(d));
    shared.expiry.handlers.store(t, Ordering::Release);
}

/// Asks the reader to re-arm its deadline timer.
pub(super) fn rearm(shared: &Shared) {
    let _ = shared.ctl.send(Control::Rearm);
}
