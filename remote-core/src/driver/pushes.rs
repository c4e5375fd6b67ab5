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
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::shared::{lock, Shared};
use crate::proto::{encode_invalidate, ObjectId, MAX_INVALIDATE_METHODS};
use crate::rt::time::Instant;

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
    /// How late the peer's acknowledgements came, over the connection's
    /// life, in nanoseconds: each wait charges what it took beyond the
    /// prompt part of the timeout ([`Shared::prompt_ack`]; a timeout
    /// charges all the rest). From `Limits::invalidation_max_missed_acks`
    /// timeouts' worth on, it is never waited for again: a peer
    /// acknowledging each push just after the timeout, or just before it,
    /// would otherwise hold every write up by (almost) the full timeout.
    pub(super) charged: AtomicU64,
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
            charged: AtomicU64::new(0),
        }
    }

    pub(super) fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// The last token sent.
    pub(super) fn sent(&self) -> u64 {
        lock(&self.state).sent
    }

    /// Whether writes send to this connection without waiting: it has not
    /// acknowledged a push it missed the timeout for, or its late
    /// acknowledgements used up `allowance` (nanoseconds).
    pub(super) fn lagging(&self, allowance: u64) -> bool {
        self.acked() < self.lag_until.load(Ordering::Acquire)
            || self.charged.load(Ordering::Acquire) >= allowance
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

/// Lateness charged per peer address, over all of a server's connections
/// from it, in nanoseconds ([`Shared::charge_late`]): a connection starts
/// with a clean count of its own, so without this a peer that reconnected
/// before each write to a shared object (a fresh holder each time, never
/// acknowledging, or acknowledging just in time) held every write up by
/// the full `invalidation_ack_timeout` (found by red-team passes). A peer
/// address charged `invalidation_max_missed_acks` missed timeouts' worth
/// in the last [`MISSES_KEPT`] is not waited for on any of its
/// connections. At most [`MAX_PEERS`] addresses are kept (the oldest
/// charges go first). Peers of transports without an address (Unix
/// sockets, a child's stdio) are counted per connection only: they are on
/// this host.
#[derive(Default)]
pub(crate) struct PeerMisses(Mutex<HashMap<IpAddr, (u64, Instant)>>);

/// How long a peer address's charges count (after its last one).
const MISSES_KEPT: Duration = Duration::from_secs(600);
/// Peer addresses whose charges are kept.
const MAX_PEERS: usize = 4096;

impl PeerMisses {
    /// What was charged to `peer`, in nanoseconds, if its last charge was
    /// in the last [`MISSES_KEPT`].
    pub(super) fn charged(&self, peer: IpAddr) -> u64 {
        let now = Instant::now();
        lock(&self.0)
            .get(&peer)
            .filter(|(_, at)| now.saturating_duration_since(*at) < MISSES_KEPT)
            .map_or(0, |&(n, _)| n)
    }

    /// Charges `late` nanoseconds to `peer`.
    pub(super) fn record(&self, peer: IpAddr, late: u64) {
        let now = Instant::now();
        let mut map = lock(&self.0);
        if map.len() >= MAX_PEERS && !map.contains_key(&peer) {
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) < MISSES_KEPT);
            if map.len() >= MAX_PEERS {
                let oldest = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let e = map.entry(peer).or_insert((0, now));
        if now.saturating_duration_since(e.1) >= MISSES_KEPT {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(late);
        e.1 = now;
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

    /// Whether writes send to this peer without waiting: the connection is
    /// lagging (`Pushes::lagging`), or its peer address missed
    /// `invalidation_max_missed_acks` timeouts' worth of lateness over the
    /// server's connections ([`PeerMisses`]).
    pub(super) fn push_lagging(&self) -> bool {
        self.pushes.lagging(self.late_allowance())
            || self
                .peer_misses
                .as_ref()
                .is_some_and(|(misses, addr)| misses.charged(*addr) >= self.late_allowance())
    }

    /// How soon an acknowledgement is prompt, and costs the peer nothing:
    /// an eighth of `invalidation_ack_timeout` (250 ms by default), more
    /// than an honest peer's round trip takes. Writes still wait up to the
    /// whole timeout; what a wait takes beyond this is charged to the
    /// peer ([`Shared::charge_late`]).
    pub(super) fn prompt_ack(&self) -> Duration {
        self.limits.invalidation_ack_timeout / 8
    }

    /// What one missed timeout is charged, in nanoseconds: the timeout
    /// less its prompt part (at least 1).
    fn miss_cost(&self) -> u64 {
        let t = self.limits.invalidation_ack_timeout;
        let cost = t.saturating_sub(self.prompt_ack()).as_nanos();
        u64::try_from(cost).unwrap_or(u64::MAX).max(1)
    }

    /// How late the peer may acknowledge, in total over the connection's
    /// life, before writes stop waiting for it: `invalidation_max_missed_acks`
    /// missed timeouts' worth, in nanoseconds.
    fn late_allowance(&self) -> u64 {
        let max = u64::from(self.limits.invalidation_max_missed_acks);
        self.miss_cost().saturating_mul(max)
    }

    /// What is left of the allowance of the connection, and of its peer
    /// address (zero once either is used up).
    pub(super) fn late_left(&self) -> Duration {
        let mut charged = self.pushes.charged.load(Ordering::Acquire);
        if let Some((misses, addr)) = &self.peer_misses {
            charged = charged.max(misses.charged(*addr));
        }
        Duration::from_nanos(self.late_allowance().saturating_sub(charged))
    }

    /// A wait for the peer's acknowledgement ended `late` past its prompt
    /// part: charged to the connection and to its peer address
    /// ([`PeerMisses`]), so that a peer reconnecting before each write
    /// does not start with a clean count.
    pub(super) fn charge_late(&self, late: Duration) {
        let late = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        if late == 0 {
            return;
        }
        self.pushes.charged.fetch_add(late, Ordering::AcqRel);
        if let Some((misses, addr)) = &self.peer_misses {
            misses.record(*addr, late);
        }
    }

    /// A wait for the peer's acknowledgement stopped, `late` past its
    /// prompt part, without it: the connection lags until it acknowledges
    /// `token`, and the wait is charged ([`Shared::charge_late`]).
    pub(super) fn missed_ack(&self, token: u64, late: Duration) {
        self.pushes.lag_until.fetch_max(token, Ordering::AcqRel);
        self.charge_late(late);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn misses_per_address_are_bounded_and_forgotten() {
        let misses = PeerMisses::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        misses.record(a, 5);
        misses.record(a, 7);
        assert_eq!(misses.charged(a), 12);
        assert_eq!(misses.charged("10.0.0.2".parse().unwrap()), 0);
        // A flood of addresses keeps at most MAX_PEERS, the oldest going.
        tokio::time::advance(Duration::from_secs(1)).await;
        for i in 0..MAX_PEERS as u32 {
            misses.record(IpAddr::from(i.to_be_bytes()), 1);
        }
        assert_eq!(lock(&misses.0).len(), MAX_PEERS);
        assert_eq!(misses.charged(a), 0, "the oldest went");
        // Charges older than MISSES_KEPT no longer count, and start over.
        let b = IpAddr::from(7u32.to_be_bytes());
        assert_eq!(misses.charged(b), 1);
        tokio::time::advance(MISSES_KEPT).await;
        assert_eq!(misses.charged(b), 0);
        misses.record(b, 3);
        assert_eq!(misses.charged(b), 3);
    }
}
