//! Kept answers (feature `pipeline`, PROTOCOL.md §3.10): the serving side
//! of promise pipelining. A kept-answer call (kind 12) leaves an entry here
//! from its arrival until the caller's finish (kind 13); calls whose target
//! is `[call_id]` are dispatched on that entry's object, which the driver
//! supplies (it waits for the answer, then forwards to it).
//!
//! Every entry counts as a call in flight (`max_calls_in_flight`), so the
//! table is bounded by the same limit as the calls themselves, and in its
//! server's pool of kept answers (`max_kept_answers`,
//! `max_kept_answers_per_peer`, `count_pool.rs`): entries live as long as
//! the peer likes, so they are bounded server-wide by their count, not
//! by the memory budget that paces reading (a red-team pass kept 6,144
//! failed answers counted in it and locked honest heavy calls out).

use std::ops::Deref;

use super::event::Event;
use super::incoming::reject;
use super::State;
use crate::proto::count_pool::{CountPool, PoolShare};
use crate::proto::tables::TableError;
use crate::proto::{CallId, CallTarget, ObjectId};

/// The kept answers of one connection, each counted in its pool from
/// [`KeptAnswers::admit`] until removed, drained or dropped. Read
/// through `Deref`; changed only here, so the count cannot drift.
#[derive(Debug)]
pub(super) struct KeptAnswers<O> {
    map: crate::proto::PeerIdMap<CallId, Option<O>>,
    pool: PoolShare,
}

impl<O> KeptAnswers<O> {
    /// None kept, counted in no pool but this connection's own limits.
    pub(super) fn new() -> Self {
        KeptAnswers {
            map: Default::default(),
            pool: CountPool::unbounded().share(None),
        }
    }

    /// Counts them in `pool` from now on (set before any is kept).
    pub(super) fn set_pool(&mut self, pool: PoolShare) {
        debug_assert!(self.map.is_empty());
        self.pool = pool;
    }

    /// Keeps an answer for call `id`, unset, if the pool has room.
    pub(super) fn admit(&mut self, id: CallId) -> Result<(), TableError> {
        self.pool.take(self.map.len())?;
        self.map.insert(id, None);
        Ok(())
    }

    /// Sets the object standing for call `id`'s answer.
    pub(super) fn set(&mut self, id: CallId, answer: O) {
        if let Some(slot) = self.map.get_mut(&id) {
            *slot = Some(answer);
        }
    }

    /// Drops call `id`'s answer: its object, if it was kept.
    pub(super) fn remove(&mut self, id: CallId) -> Option<O> {
        let removed = self.map.remove(&id)?;
        self.pool.give(1);
        removed
    }

    /// Drops every answer: their objects.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = O> + '_ {
        self.pool.give(self.map.len());
        self.map.drain().filter_map(|(_, o)| o)
    }
}

impl<O> Deref for KeptAnswers<O> {
    type Target = crate::proto::PeerIdMap<CallId, Option<O>>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<O> Drop for KeptAnswers<O> {
    fn drop(&mut self) {
        self.pool.give(self.map.len());
    }
}

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
        self.answers.set(id, answer);
    }

    /// Counts this connection's kept answers in `pool` (its share of a
    /// server's pool); set before anything is kept.
    pub fn set_kept_pool(&mut self, pool: PoolShare) {
        self.answers.set_pool(pool);
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

    /// The refusal of kept-answer call `id`, its pool full (`e`): its
    /// answer is not kept, so calls on it are refused as unknown.
    #[cold]
    pub(super) fn kept_refused<'a>(&self, id: CallId, e: TableError) -> Event<'a, O, W> {
        let (limit, max, whose) = match e {
            TableError::PeerFull(max) => (
                "max_kept_answers_per_peer",
                max,
                "the connections from this peer's address",
            ),
            _ => (
                "max_kept_answers",
                self.limits.max_kept_answers,
                "all connections of this server",
            ),
        };
        let msg = format!(
            "limit exceeded: {limit} = {max} answers already kept on {whose} \
             (kept-answer call {id} refused)"
        );
        Event::Reject {
            frame: reject(id, "limit_exceeded", msg, &self.limits),
            kind: "limit_exceeded",
            limit: Some(limit),
        }
    }

    /// The peer's finish of kept-answer call `id`: its answer is dropped
    /// (by the driver, outside locks). A finish naming no kept answer is
    /// ignored, like a cancel of a call not in flight.
    pub(super) fn finish<'a>(&mut self, id: CallId) -> Event<'a, O, W> {
        Event::Released(self.answers.remove(id))
    }
}
