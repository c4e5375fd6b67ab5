//! Kept answers (feature `pipeline`, PROTOCOL.md §3.10): the serving side
//! of promise pipelining. A kept-answer call (kind 12) leaves an entry here
//! from its arrival until the caller's finish (kind 13); calls whose target
//! is `[call_id]` are dispatched on that entry's object, which the driver
//! supplies (it waits for the answer, then forwards to it).
//!
//! Every entry counts as a call in flight (`max_calls_in_flight`), so the
//! table is bounded by the same limit as the calls themselves.

use super::event::Event;
use super::incoming::reject;
use super::State;
use crate::proto::{CallId, CallTarget, ObjectId};

/// The object id logged for a call addressed to a promise (it has none).
pub(super) const PROMISE_OBJECT: ObjectId = ObjectId::RESERVED;

impl<O: Clone, W> State<O, W> {
    /// Whether both peers listed the `pipeline` feature (kept-answer calls
    /// and promise targets may be sent).
    pub fn pipeline_negotiated(&self) -> bool {
        self.pipeline
    }

    /// Answers kept for the peer until its finish.
    pub fn kept_answers(&self) -> usize {
        self.answers.len()
    }

    /// Sets the object that stands for kept-answer call `id`'s answer
    /// (after its `Event::Call` with `keep`, before the next frame).
    pub fn keep_answer(&mut self, id: CallId, answer: O) {
        if let Some(slot) = self.answers.get_mut(&id) {
            *slot = Some(answer);
        }
    }

    /// The object a call is addressed to, and its id for logs; or the
    /// complete `unknown_object` error frame answering call `id`.
    pub(super) fn resolve_target(
        &self,
        id: CallId,
        target: CallTarget,
    ) -> Result<(O, ObjectId), Vec<u8>> {
        let found = match target {
            CallTarget::Object(t) => self.exports.get_sent(t).cloned().map(|o| (o, t)),
            CallTarget::Promise(c) => self
                .answers
                .get(&c)
                .and_then(Option::clone)
                .map(|o| (o, PROMISE_OBJECT)),
        };
        // The message is made only for a refusal (not on the hot path).
        found.ok_or_else(|| {
            let msg = match target {
                CallTarget::Object(t) => format!("no object with id {t} on this connection"),
                CallTarget::Promise(c) => format!(
                    "no kept answer of call {c} on this connection (promise target [{c}]): \
                     it was not a kept-answer call, was refused, or was finished"
                ),
            };
            reject(id, "unknown_object", msg, &self.limits)
        })
    }

    /// The peer's finish of kept-answer call `id`: its answer is dropped
    /// (by the driver, outside locks). A finish naming no kept answer is
    /// ignored, like a cancel of a call not in flight.
    pub(super) fn finish<'a>(&mut self, id: CallId) -> Event<'a, O, W> {
        Event::Released(self.answers.remove(&id).flatten())
    }
}
