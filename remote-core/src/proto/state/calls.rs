//! Call bookkeeping: our outgoing calls waiting for replies (and the ids
//! of cancelled ones kept reserved), and the incoming calls counted as
//! running until their handlers stop.

use super::{Phase, State};
use crate::proto::{CallId, PeerIdMap};

/// Incoming calls the table keeps room for once empty.
const SLACK_CALLS: usize = 32;

impl<O: Clone, W> State<O, W> {
    /// Incoming calls whose handlers have not stopped yet (those whose
    /// reply is out included).
    pub fn calls_in_flight(&self) -> usize {
        self.running + self.replied.len()
    }

    /// Whether nothing lets the peer reach this side, nor this side the
    /// peer: no root served, none of our objects held by the peer, no
    /// call running either way.
    pub fn unreachable(&self) -> bool {
        self.exports.root().is_none()
            && self.exports.is_empty()
            && self.running == 0
            && self.replied.is_empty()
            && self.answers.is_empty()
            && self.outgoing.is_empty()
    }

    /// Our calls waiting for replies (cancelled ones included: their ids
    /// stay reserved until the reply arrives).
    pub fn calls_waiting(&self) -> usize {
        self.outgoing.len() + self.cancelled.len()
    }

    /// Our calls whose callers still wait for their replies: not the
    /// cancelled ones, whose ids stay reserved for a reply that may never
    /// come (a peer that never answers one must not look busy for ever).
    pub fn calls_awaited(&self) -> usize {
        self.outgoing.len()
    }

    /// Registers an outgoing call, returning its id.
    pub fn start_call(&mut self, waiter: W) -> Result<CallId, crate::Error> {
        if self.phase == Phase::Closed {
            return Err(crate::Error::ConnectionLost("connection is closed".into()));
        }
        if self.calls_waiting() >= self.limits.max_outgoing_calls {
            return Err(crate::Error::limit(
                "max_outgoing_calls",
                self.limits.max_outgoing_calls as u64,
                "too many calls waiting for replies on this connection",
            ));
        }
        loop {
            let id = CallId(self.next_call);
            self.next_call = self.next_call.wrapping_add(1);
            if self.cancelled.contains_key(&id) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = self.outgoing.entry(id) {
                slot.insert(waiter);
                return Ok(id);
            }
        }
    }

    /// Sets the next call id to try (tests of id reuse).
    #[cfg(test)]
    pub(crate) fn set_next_call_id(&mut self, id: u32) {
        self.next_call = id;
    }

    /// Forgets an outgoing call's waiter (cancelled or timed out). `sent`
    /// says whether its call frame went out: if so, the id stays reserved
    /// until the peer's one reply to it arrives (PROTOCOL.md §3.6), and
    /// that reply is dropped. Returns `true` if the call was still waiting
    /// and was sent, so a cancel frame should be sent.
    pub fn cancel_call(&mut self, id: CallId, sent: bool) -> bool {
        if self.outgoing.remove(&id).is_none() {
            return false;
        }
        if sent && self.phase != Phase::Closed {
            self.cancelled.insert(id, ());
        }
        sent
    }

    /// The waiters of our calls still waiting for replies.
    pub fn waiters(&self) -> impl Iterator<Item = &W> {
        self.outgoing.values()
    }

    /// Forgets the waiting calls whose waiter `expired` picks, as
    /// [`cancel_call`](Self::cancel_call) does for a sent call (their ids
    /// stay reserved until the peer's reply), and returns them so the
    /// driver can fail them and send their cancel frames.
    pub fn expire_calls(&mut self, mut expired: impl FnMut(&W) -> bool) -> Vec<(CallId, W)> {
        let ids: Vec<CallId> = self
            .outgoing
            .iter()
            .filter(|(_, w)| expired(w))
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(w) = self.outgoing.remove(&id) {
                if self.phase != Phase::Closed {
                    self.cancelled.insert(id, ());
                }
                out.push((id, w));
            }
        }
        out
    }

    /// The reply to incoming call `id` (running as `seq`) is about to be
    /// sent: from now on the peer may reuse the id. Returns `false` if the
    /// call was cancelled (already answered with `cancelled`) or answered:
    /// the reply must then not be sent.
    pub fn answered(&mut self, id: CallId, seq: u64) -> bool {
        // Not generic: compiled once here, not in every crate whose
        // generated code replies to a call.
        fn forget(incoming: &mut PeerIdMap<CallId, u64>, id: CallId, seq: u64) -> bool {
            if incoming.get(&id) == Some(&seq) {
                incoming.remove(&id);
                if incoming.is_empty() && incoming.capacity() > SLACK_CALLS {
                    // The room a burst of calls grew it to goes back once
                    // they are all answered (once per burst, not per
                    // call): outside the memory budget, it stayed for the
                    // connection's life (`tests/flood_memory.rs`).
                    *incoming = PeerIdMap::default();
                }
                true
            } else {
                false
            }
        }
        let forgot = forget(&mut self.incoming, id, seq);
        if forgot && !self.answers.is_empty() {
            self.answers.stopped(id, seq);
        }
        forgot
    }

    /// Counts call `id` (sequence number `seq`, from its `Call` event of
    /// [`handle_frame_unadmitted`](Self::handle_frame_unadmitted)) as
    /// running until [`call_done`](Self::call_done).
    pub fn admit(&mut self, id: CallId, seq: u64) {
        self.incoming.insert(id, seq);
        self.running += 1;
        if !self.answers.is_empty() {
            self.answers.started(id, seq);
        }
    }

    /// Counts a call whose reply is already queued as running until
    /// [`call_done`](Self::call_done), its id left free (the peer may reuse
    /// it once it sees the reply, PROTOCOL.md §8): the driver's inline
    /// handler that answered while a blocking closure it started runs on.
    pub fn admit_answered(&mut self) {
        self.running += 1;
    }

    /// [`answered`](Self::answered), for the handler's own reply: with
    /// `uncount` (no blocking closure of the connection runs, which could
    /// be the handler's and go on past the reply), the call also stops
    /// counting against `max_calls_in_flight` now, not when its handler
    /// stops. The peer may send its next call as soon as it sees the
    /// reply: a client that never had more calls outstanding than the
    /// limit was refused `limit_exceeded` when that call came before the
    /// handler's task had ended (red-team pass 24: 103 of 2,000 calls made
    /// one after another at a limit of 1). Until it stops, the handler
    /// still counts against twice the limit (`incoming.rs`).
    pub fn replied(&mut self, id: CallId, seq: u64, uncount: bool) -> bool {
        if !self.answered(id, seq) {
            return false;
        }
        if uncount && self.running > 0 {
            self.running -= 1;
            self.replied.push(seq);
        }
        true
    }

    /// Handlers past their own reply and the calls counted as running
    /// together ([`replied`](Self::replied)).
    pub(super) fn handlers_held(&self) -> usize {
        self.running + self.replied.len()
    }

    /// An incoming call's handler has stopped (finished or aborted).
    pub fn call_done(&mut self, id: CallId, seq: u64) {
        let _ = self.answered(id, seq);
        // Usually the last one in: handlers stop in the order they reply.
        match self.replied.iter().rposition(|&s| s == seq) {
            Some(i) => {
                self.replied.swap_remove(i);
                if self.replied.is_empty() && self.replied.capacity() > SLACK_CALLS {
                    self.replied = Vec::new();
                }
            }
            None => self.running = self.running.saturating_sub(1),
        }
    }
}
