//! Spawned handlers: the table of those running (to cancel them, and to
//! stop them at their deadlines), and their end.
//!
//! A handler that does not finish on its first poll runs in a task. Its
//! deadline is kept here, not by a timer of its own: the reader's one
//! timer (`expiry.rs`) fires at the earliest deadline of our calls and of
//! these handlers, and [`Shared::expire_handlers`] stops each handler past
//! its deadline and answers its call with `deadline_exceeded`.

use std::sync::Arc;

use super::super::control::Control;
use super::super::pipeline::Answer;
use super::super::shared::{lock, Shared};
use crate::proto::{encode, CallId};
use crate::rt::time::Instant;
use crate::rt::AbortHandle;
use crate::RemoteError;

/// A spawned handler, by its call's sequence number in `Shared::running`.
pub(crate) struct Spawned {
    pub(crate) abort: AbortHandle,
    pub(crate) id: CallId,
    /// `None` once it passed and the handler was stopped.
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout_ms: u32,
    /// Its kept answer (a pipelined call's target), if any.
    pub(crate) keep: Option<Arc<Answer>>,
}

/// Entries the table of handlers running keeps room for once empty.
const SLACK_ENTRIES: usize = 32;

impl Shared {
    /// Records a handler just spawned (on the reader task), unless its
    /// task already stopped; asks the reader to re-arm its timer if its
    /// deadline is the earliest.
    pub(super) fn spawned(&self, seq: u64, handler: Spawned) {
        let deadline = handler.deadline;
        {
            let mut running = lock(&self.running);
            // A mark: the task already stopped.
            if running.remove(&seq).is_some() {
                return;
            }
            running.insert(seq, Some(handler));
        }
        if deadline.is_some_and(|d| self.expiry.note_handler(d)) {
            let _ = self.ctl.send(Control::Rearm);
        }
    }

    /// A spawned handler stopped (finished, or dropped unrun): called from
    /// its task, without the hop through the reader. Its task may end
    /// before the reader recorded it in `running` (on another worker): it
    /// then leaves a mark there so the reader does not record it.
    pub(super) fn spawned_stopped(&self, id: CallId, seq: u64, (weight, held): (usize, usize)) {
        {
            let mut running = lock(&self.running);
            // Not recorded yet (the reader records it right after the
            // spawn): a mark tells the reader not to. Once closed, the
            // reader's disconnect has emptied the table or will, so a mark
            // left by a handler ending after it would stay for good.
            if running.remove(&seq).is_none() && !self.is_closed() {
                running.insert(seq, None);
            } else if running.is_empty() && running.capacity() > SLACK_ENTRIES {
                // The room a burst of calls grew it to goes back once they
                // are all done (once per burst, not per call): outside the
                // memory budget, it stayed for the connection's life
                // (`tests/flood_memory.rs`).
                *running = Default::default();
            }
        }
        self.output_share.stopped(weight);
        // Wakes the readers waiting for room in the budget, and this
        // connection's for its share.
        self.budget.release(held);
        self.output_share.own.wake();
        self.handler_stopped(id, seq);
        if self.unused() {
            let _ = self.ctl.send(Control::Unused);
        }
    }

    /// Stops every spawned handler past its deadline (on the reader task,
    /// when its timer fires) and answers its call with
    /// `deadline_exceeded`; returns the earliest deadline still to come.
    pub(crate) fn expire_handlers(&self, now: Instant) -> Option<Instant> {
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        {
            let mut running = lock(&self.running);
            for (&seq, h) in running.iter_mut() {
                let Some(h) = h else { continue };
                match h.deadline {
                    Some(d) if d <= now => {
                        h.deadline = None;
                        expired.push((seq, h.id, h.timeout_ms, h.keep.take()));
                    }
                    Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
                    None => {}
                }
            }
        }
        for &(seq, id, timeout_ms, ref keep) in &expired {
            let why = format!("deadline of {timeout_ms} ms passed; the call was stopped");
            let e = RemoteError::new("deadline_exceeded", "remote_core::Error", why);
            // Answered (id free for reuse) before the peer can see it; not
            // sent if the handler or a cancel already answered the call.
            // The kept answer is set with the call's answer, under the
            // same lock: a handler already replying (it answered first)
            // sets it from its reply, so calls pipelined on it see what
            // the peer sees, never this error beside the handler's reply.
            // Uncounted from `max_calls_in_flight` now, as a handler's own
            // reply is (`CallCx::answer`): the peer may send its next call
            // once it sees this, before the aborted task is dropped (a
            // client at a limit of 1 was refused 2-7% of such calls:
            // red-team pass 50).
            let uncount = !self.blocking.any_running();
            let answered = {
                let mut core = self.core();
                let answered = core.replied(id, seq, uncount);
                if let (true, Some(answer)) = (answered, keep) {
                    answer.fail(&e);
                }
                answered
            };
            if answered {
                self.send_error_reply(&encode::error(id, &e, &self.limits), "deadline_exceeded");
            }
        }
        // Stopped once their answers are set (a task dropped first would
        // set its kept answer to a vaguer `cancelled`). Its task drops the
        // handler when next run (never inside `abort`, so not under this
        // lock); one that has ended meanwhile is no longer here.
        if !expired.is_empty() {
            let running = lock(&self.running);
            for (seq, ..) in &expired {
                if let Some(Some(h)) = running.get(seq) {
                    h.abort.abort();
                }
            }
        }
        next
    }
}
