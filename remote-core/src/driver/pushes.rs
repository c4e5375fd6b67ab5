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
    /// Waits that timed out on this connection. From
    /// `Limits::invalidation_max_missed_acks` of them on, it is never
    /// waited for again (a peer acknowledging each push just after the
    /// timeout would otherwise hold every write up by the full timeout).
    pub(super) missed: AtomicU64,
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
            missed: AtomicU64::new(0),
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
    /// acknowledged a push it missed the timeout for, or it missed
    /// `max_missed` of them already.
    pub(super) fn lagging(&self, max_missed: u32) -> bool {
        self.acked() < self.lag_until.load(Ordering::Acquire)
            || self.missed.load(Ordering::Acquire) >= u64::from(max_missed)
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

/// Missed acknowledgements per peer address, over all of a server's
/// connections from it: a connection starts with a clean count of its own,
/// so without this a peer that reconnected before each write to a shared
/// object (a fresh holder each time, never acknowledging) held every write
/// up by the full `invalidation_ack_timeout` (found by a red-team pass).
/// A peer address with `invalidation_max_missed_acks` misses in the last
/// [`MISSES_KEPT`] is not waited for on any of its connections. At most
/// [`MAX_PEERS`] addresses are kept (the oldest misses go first). Peers of
/// transports without an address (Unix sockets, a child's stdio) are
/// counted per connection only: they are on this host.
#[derive(Default)]
pub(crate) struct PeerMisses(Mutex<HashMap<IpAddr, (u32, Instant)>>);

/// How long a peer address's misses count.
const MISSES_KEPT: Duration = Duration::from_secs(600);
/// Peer addresses whose misses are kept.
const MAX_PEERS: usize = 4096;

impl PeerMisses {
    /// The misses counted for `peer` in the last [`MISSES_KEPT`].
    pub(super) fn count(&self, peer: IpAddr) -> u32 {
        let now = Instant::now();
        lock(&self.0)
            .get(&peer)
            .filter(|(_, at)| now.saturating_duration_since(*at) < MISSES_KEPT)
            .map_or(0, |&(n, _)| n)
    }

    /// Counts a miss for `peer`.
    pub(super) fn record(&self, peer: IpAddr) {
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
        e.0 = e.0.saturating_add(1);
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
    /// `invalidation_max_missed_acks` acknowledgements over the server's
    /// connections ([`PeerMisses`]).
    pub(super) fn push_lagging(&self) -> bool {
        let max = self.limits.invalidation_max_missed_acks;
        self.pushes.lagging(max)
            || self
                .peer_misses
                .as_ref()
                .is_some_and(|(misses, addr)| misses.count(*addr) >= max)
    }

    /// A wait for the peer's acknowledgement timed out: counted for the
    /// connection and its peer address.
    pub(super) fn missed_ack(&self, token: u64) {
        self.pushes.lag_until.fetch_max(token, Ordering::AcqRel);
        self.pushes.missed.fetch_add(1, Ordering::AcqRel);
        if let Some((misses, addr)) = &self.peer_misses {
            misses.record(*addr);
        }
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
        misses.record(a);
        misses.record(a);
        assert_eq!(misses.count(a), 2);
        assert_eq!(misses.count("10.0.0.2".parse().unwrap()), 0);
        // A flood of addresses keeps at most MAX_PEERS, the oldest going.
        tokio::time::advance(Duration::from_secs(1)).await;
        for i in 0..MAX_PEERS as u32 {
            misses.record(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(lock(&misses.0).len(), MAX_PEERS);
        assert_eq!(misses.count(a), 0, "the oldest went");
        // Misses older than MISSES_KEPT no longer count, and start over.
        let b = IpAddr::from(7u32.to_be_bytes());
        assert_eq!(misses.count(b), 1);
        tokio::time::advance(MISSES_KEPT).await;
        assert_eq!(misses.count(b), 0);
        misses.record(b);
        assert_eq!(misses.count(b), 1);
    }
}
