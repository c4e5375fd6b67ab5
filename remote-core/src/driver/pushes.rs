//! One connection's pushed invalidations (PROTOCOL.md §3.9): their tokens,
//! the peer's acknowledgements, and the invalidations held back while its
//! output queue has no room.
//!
//! Pushes come from other connections' writes, so nothing holds them back
//! the way a peer's own calls are held back: queued one frame per write,
//! a holder reading a trickle while writes go on would have its queue
//! grow with every write. Instead, while the queue has no room (at
//! `max_write_queue`, past its share once half of the memory budget is
//! used, or holding anything while the budget is exhausted) the pushes
//! are *merged*: one set of method names per object id, so what is held
//! back is bounded by the ids the peer can hold (at most `max_exports` + 1:
//! ids are reused) times the methods named, however many writes there
//! are. The merged sets are counted in the budget and sent, in order, when
//! the writer next writes and finds room (it checks after each write while
//! something is held back) or the next push does: at the latest once the
//! peer has read everything queued before them.
//! A write whose push was held back waits, as for any other, for the
//! acknowledgement of the frame that carries it once sent (bounded by
//! `invalidation_ack_timeout`, and not at all for a lagging peer).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

use super::lateness::Bucket;
use super::shared::{lock, Shared};
use crate::proto::{encode_invalidate, ObjectId, MAX_INVALIDATE_METHODS};

/// What a held-back object's entry is counted at in the budget, on top of
/// its names' bytes.
const ENTRY_COST: usize = 64;
/// What each held-back name is counted at, on top of its bytes.
const NAME_COST: usize = 32;

/// Invalidations this side sent on one connection, and how far the peer
/// acknowledged them.
pub(crate) struct Pushes {
    /// The last token sent and what is held back. Frames are queued under
    /// this lock, so tokens reach the peer in order (acknowledgements are
    /// cumulative).
    state: Mutex<Sending>,
    /// Something is held back (read by the writer after each write).
    held: AtomicBool,
    /// How many times what was held back was sent, and the last token
    /// sent then: a write whose push was held back waits for the
    /// acknowledgement of the send that carried it.
    pub(super) flushed: watch::Sender<(u64, u64)>,
    /// The highest token the peer acknowledged.
    pub(super) acked: watch::Sender<u64>,
    /// A wait for this token timed out: the connection is not waited for
    /// again until it acknowledges it.
    pub(super) lag_until: AtomicU64,
    /// How late the peer may still acknowledge: the connection's bucket
    /// of lateness (`lateness.rs`), refilling with time. Without it a peer
    /// acknowledging each push just after the timeout, or just before it,
    /// would hold every write up by (almost) the full timeout.
    pub(super) late: Mutex<Bucket>,
}

#[derive(Default)]
struct Sending {
    sent: u64,
    /// Sends of what was held back so far (what is held now goes with
    /// the next one).
    flushes: u64,
    /// Held back: per object, the method names to invalidate (each once).
    held: HashMap<ObjectId, HashSet<Box<str>>>,
    /// What `held` is counted at in the budget.
    charged: usize,
}

/// What became of one push ([`Shared::push_invalidation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued; the peer acknowledges this token.
    Sent(u64),
    /// Merged into what is held back for the peer; goes with the send
    /// after this many (`Pushes::flushed`).
    HeldBack(u64),
}

impl Pushes {
    pub(crate) fn new() -> Self {
        Pushes {
            state: Mutex::new(Sending::default()),
            held: AtomicBool::new(false),
            flushed: watch::Sender::new((0, 0)),
            acked: watch::Sender::new(0),
            lag_until: AtomicU64::new(0),
            late: Mutex::default(),
        }
    }

    pub(super) fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// The last token sent.
    pub(super) fn sent(&self) -> u64 {
        lock(&self.state).sent
    }

    /// The token a wait missed the timeout for, if any: the connection is
    /// not waited for until it acknowledges it.
    pub(super) fn lag_until(&self) -> u64 {
        self.lag_until.load(Ordering::Acquire)
    }

    /// Whether something is held back (the writer's check after a write,
    /// made after a sequentially consistent fence).
    #[inline]
    pub(crate) fn holds_back(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }
}

impl Sending {
    /// Merges `methods` of `object` into what is held back; returns the
    /// bytes newly counted.
    fn hold_back(&mut self, object: ObjectId, methods: &[&str]) -> usize {
        let mut added = 0;
        let names = self.held.entry(object).or_insert_with(|| {
            added += ENTRY_COST;
            HashSet::new()
        });
        for m in methods {
            if !names.contains(*m) {
                names.insert((*m).into());
                added += NAME_COST + m.len();
            }
        }
        self.charged += added;
        added
    }
}

impl Shared {
    /// Whether a push may be queued for the peer now: its queue has room
    /// (`share::queue_has_room`), and it holds nothing while the budget is
    /// exhausted.
    pub(super) fn push_has_room(&self) -> bool {
        let queued = self.queued_output();
        super::share::queue_has_room(queued, self.limits.max_write_queue, &self.budget)
            && (queued == 0 || !self.budget.exhausted())
    }

    /// Queues `invalidate` frames for `object` (at most
    /// [`MAX_INVALIDATE_METHODS`] names each), or holds them back while
    /// the queue has no room (module doc); `None` if the connection is
    /// closed.
    pub(super) fn push_invalidation(&self, object: ObjectId, methods: &[&str]) -> Option<Pushed> {
        let mut st = lock(&self.pushes.state);
        if self.is_closed() {
            return None;
        }
        if st.held.is_empty() && self.push_has_room() {
            self.send_invalidate(&mut st, object, methods).ok()?;
            return Some(Pushed::Sent(st.sent));
        }
        let added = st.hold_back(object, methods);
        let flushes = st.flushes;
        self.budget.charge(added);
        self.pushes.held.store(true, Ordering::Relaxed);
        drop(st);
        // The writer reads the flag after a fence that follows each write
        // (`Shared::wrote`); this reads the queue after one that follows
        // the flag: either it sees the room the write made, or the writer
        // sees the flag (and sends what is held back).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.push_has_room() {
            self.send_held_back();
        }
        Some(Pushed::HeldBack(flushes))
    }

    /// A wait for the peer's acknowledgement stopped without it: the
    /// connection lags until it acknowledges `token`.
    pub(super) fn missed_ack(&self, token: u64) {
        self.pushes.lag_until.fetch_max(token, Ordering::AcqRel);
    }

    /// Sends what is held back, if the queue has room for it now.
    pub(crate) fn send_held_back(&self) {
        let mut st = lock(&self.pushes.state);
        if st.held.is_empty() || !self.push_has_room() {
            return;
        }
        let held = std::mem::take(&mut st.held);
        self.budget.release(std::mem::take(&mut st.charged));
        self.pushes.held.store(false, Ordering::Relaxed);
        for (object, names) in held {
            let names: Vec<&str> = names.iter().map(|n| &**n).collect();
            if self.send_invalidate(&mut st, object, &names).is_err() {
                // Closed: nothing more goes out (the waiting writes see
                // the close).
                break;
            }
        }
        st.flushes += 1;
        self.pushes.flushed.send_replace((st.flushes, st.sent));
    }

    /// Queues `invalidate` frames for `object` with the next tokens, at
    /// most [`MAX_INVALIDATE_METHODS`] names each (`st` locked: tokens go
    /// out in order).
    fn send_invalidate(
        &self,
        st: &mut Sending,
        object: ObjectId,
        methods: &[&str],
    ) -> Result<(), crate::Error> {
        for chunk in methods.chunks(MAX_INVALIDATE_METHODS) {
            let token = st.sent + 1;
            self.send(&encode_invalidate(token, object, chunk))?;
            st.sent = token;
        }
        Ok(())
    }

    /// The connection closed: what is held back is dropped.
    pub(super) fn drop_held_back(&self) {
        let mut st = lock(&self.pushes.state);
        st.held = HashMap::new();
        self.budget.release(std::mem::take(&mut st.charged));
        self.pushes.held.store(false, Ordering::Relaxed);
    }
}
