//! Kept answers (feature `pipeline`, PROTOCOL.md §3.10): the serving side
//! of promise pipelining. A kept-answer call (kind 12) leaves an entry here
//! from its arrival until the caller's finish (kind 13); calls whose target
//! is `[call_id]` are dispatched on that entry's object, which the driver
//! supplies (it waits for the answer, then forwards to it).
//!
//! Every entry counts as a call in flight (`max_calls_in_flight`), so the
//! table is bounded by the same limit as the calls themselves. Entries
//! live as long as the peer likes, so what they hold is bounded
//! server-wide too: an answer is kept *in full* (a failed call's error
//! copied, about 2.5 KB at most) while the server's pool of kept answers
//! has room (`max_kept_answers`, `max_kept_answers_per_peer`, each
//! connection keeping its first 4 in full whatever the others hold:
//! `count_pool.rs`), and *slim* past it (the error's kind only, about
//! 100 bytes with its table entry). Never refused for it: refused, four
//! addresses that kept answers idle made 12 of an honest client's 16
//! pipelined calls fail (a red-team pass); and counted in the memory
//! budget instead, 48 idle connections of them filled it and locked
//! honest heavy calls out (another).

use std::ops::Deref;

use super::event::Event;
use super::incoming::reject;
use super::State;
use crate::proto::count_pool::{CountPool, PoolShare};
use crate::proto::{CallId, CallTarget, ObjectId};

/// One kept answer: the object standing for it (`None` until the driver
/// sets it), whether it is kept in full (counted in the pool), and its
/// call's sequence number, with whether that call counts as running.
#[derive(Debug)]
pub(super) struct Slot<O> {
    answer: Option<O>,
    full: bool,
    seq: u64,
    running: bool,
}

/// The kept answers of one connection, those kept in full counted in its
/// pool from [`KeptAnswers::admit`] until removed, drained or dropped.
/// Read through `Deref`; changed only here, so the count cannot drift.
#[derive(Debug)]
pub(super) struct KeptAnswers<O> {
    map: crate::proto::PeerIdMap<CallId, Slot<O>>,
    pool: PoolShare,
    /// Entries kept in full (counted in `pool`).
    full: usize,
    /// Entries whose own call counts as running (`State::admit`): such a
    /// call counts in `max_calls_in_flight` once, not as a call and an
    /// answer ([`settled`](Self::settled)).
    running: usize,
}

impl<O> KeptAnswers<O> {
    /// None kept, counted in no pool but this connection's own limits.
    pub(super) fn new() -> Self {
        KeptAnswers {
            map: Default::default(),
            pool: CountPool::unbounded().share(None),
            full: 0,
            running: 0,
        }
    }

    /// Counts them in `pool` from now on (set before any is kept).
    pub(super) fn set_pool(&mut self, pool: PoolShare) {
        debug_assert!(self.map.is_empty());
        self.pool = pool;
    }

    /// Keeps an answer for call `id` (sequence number `seq`), unset: in
    /// full if the pool has room, slim otherwise.
    pub(super) fn admit(&mut self, id: CallId, seq: u64) {
        let full = self.pool.take(self.full).is_ok();
        self.full += usize::from(full);
        let slot = Slot {
            answer: None,
            full,
            seq,
            running: false,
        };
        self.map.insert(id, slot);
    }

    /// Call `id` (`seq`) counts as running from now on: if it is the call
    /// of the answer kept under `id`, that answer does not count besides.
    pub(super) fn started(&mut self, id: CallId, seq: u64) {
        if let Some(slot) = self.map.get_mut(&id).filter(|s| s.seq == seq && !s.running) {
            slot.running = true;
            self.running += 1;
        }
    }

    /// Call `id` (`seq`) no longer counts as running (answered): its
    /// answer, if kept, counts from now on.
    pub(super) fn stopped(&mut self, id: CallId, seq: u64) {
        if let Some(slot) = self.map.get_mut(&id).filter(|s| s.seq == seq && s.running) {
            slot.running = false;
            self.running -= 1;
        }
    }

    /// The answers that count in `max_calls_in_flight` besides the calls
    /// running: those whose call is not running (a kept-answer call was
    /// counted twice while it ran, and an honest client pipelining 80
    /// calls was refused 16 at a limit of 128: red-team pass 46).
    pub(super) fn settled(&self) -> usize {
        self.map.len() - self.running
    }

    /// Whether call `id`'s answer is kept in full.
    pub(super) fn in_full(&self, id: CallId) -> bool {
        self.map.get(&id).is_some_and(|s| s.full)
    }

    /// The object standing for call `id`'s answer, once set.
    pub(super) fn answer(&self, id: CallId) -> Option<&O> {
        self.map.get(&id)?.answer.as_ref()
    }

    /// Sets the object standing for call `id`'s answer.
    pub(super) fn set(&mut self, id: CallId, answer: O) {
        if let Some(slot) = self.map.get_mut(&id) {
            slot.answer = Some(answer);
        }
    }

    /// Drops call `id`'s answer: its object, if it was kept.
    pub(super) fn remove(&mut self, id: CallId) -> Option<O> {
        let removed = self.map.remove(&id)?;
        if removed.running {
            self.running -= 1;
        }
        if removed.full {
            self.full -= 1;
            self.pool.give(1);
        }
        removed.answer
    }

    /// Drops every answer: their objects.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = O> + '_ {
        self.pool.give(std::mem::take(&mut self.full));
        self.running = 0;
        self.map.drain().filter_map(|(_, s)| s.answer)
    }
}

impl<O> Deref for KeptAnswers<O> {
    type Target = crate::proto::PeerIdMap<CallId, Slot<O>>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<O> Drop for KeptAnswers<O> {
    fn drop(&mut self) {
        self.pool.give(self.full);
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

    /// Whether kept-answer call `id`'s answer is kept in full (its error
    /// copied, if it fails) or slim (its error's kind only): the server's
    /// pool of kept answers was full when it came.
    pub fn answer_kept_in_full(&self, id: CallId) -> bool {
        self.answers.in_full(id)
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
            CallTarget::Promise(c) => self.answers.answer(c).cloned().map(|o| (o, PROMISE_OBJECT)),
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
        Event::Released(self.answers.remove(id))
    }
}
