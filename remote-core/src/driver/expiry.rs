//! Call deadlines, kept by the connection: one timer in the reader task,
//! armed at the earliest deadline it knows of, instead of a timer entry per
//! call. When it fires, every call of ours past its deadline is failed with
//! [`Error::DeadlineExceeded`] and cancelled at the peer, every spawned
//! handler past its call's deadline is stopped and its call answered with
//! `deadline_exceeded` (`conn/running.rs`), and the timer is re-armed at
//! the earliest deadline still waiting.

use std::sync::Mutex;
use std::time::Duration;

use crate::rt::time::Instant;

use super::control::Control;
use super::shared::{lock, Shared};
use crate::proto::encode;
use crate::Error;

/// When the reader's deadline timer fires. The calls' deadline is written
/// only under the connection's core lock (with the call table it
/// describes), so registering a call costs one compare of `Instant`s; the
/// reader task reads it to arm its timer.
pub(crate) struct Expiry {
    armed: Mutex<Armed>,
}

/// The earliest deadlines the timer is armed for; `None`: never.
#[derive(Default)]
struct Armed {
    /// Of our calls waiting for replies.
    calls: Option<Instant>,
    /// Of spawned handlers; written only by the reader task (which spawns
    /// them and sweeps).
    handlers: Option<Instant>,
}

/// Whether `deadline` is earlier than `armed` (`None`: never).
fn earlier(deadline: Instant, armed: Option<Instant>) -> bool {
    armed.is_none_or(|at| deadline < at)
}

impl Expiry {
    pub(crate) fn new() -> Self {
        Expiry {
            armed: Mutex::new(Armed::default()),
        }
    }

    /// A call with `deadline` was registered (the caller holds the core
    /// lock): `true` if it is earlier than the timer, which must then be
    /// re-armed ([`Control::Rearm`]).
    pub(crate) fn note(&self, deadline: Instant) -> bool {
        let mut armed = lock(&self.armed);
        let rearm = earlier(deadline, armed.calls);
        if rearm {
            armed.calls = Some(deadline);
        }
        rearm
    }

    /// A spawned handler with `deadline` was recorded (on the reader
    /// task): `true` if the timer must be re-armed for it.
    pub(crate) fn note_handler(&self, deadline: Instant) -> bool {
        let mut armed = lock(&self.armed);
        if earlier(deadline, armed.handlers) {
            armed.handlers = Some(deadline);
            earlier(deadline, armed.calls)
        } else {
            false
        }
    }

    /// When the timer should fire, if any call waits or handler runs.
    pub(crate) fn armed(&self) -> Option<Instant> {
        let armed = lock(&self.armed);
        match (armed.calls, armed.handlers) {
            (Some(c), Some(h)) => Some(c.min(h)),
            (c, h) => c.or(h),
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
        lock(&shared.expiry.armed).calls = next;
        expired
    };
    for (id, waiter) in expired {
        let _ = shared.send(&encode::cancel(id));
        // The caller reports its own budget (`outgoing::Waiting`, or a promise).
        let _ = waiter.send(shared, Err(Error::DeadlineExceeded(Duration::ZERO)));
    }
    let next = shared.expire_handlers(now);
    lock(&shared.expiry.armed).handlers = next;
}

/// Asks the reader to re-arm its deadline timer.
pub(super) fn rearm(shared: &Shared) {
    let _ = shared.ctl.send(Control::Rearm);
}
