//! How late a holder of a shared object may acknowledge pushed
//! invalidations (PROTOCOL.md §3.9) before writes stop waiting for it: an
//! allowance per connection and per peer address that refills with time.
//!
//! An acknowledgement within an eighth of `invalidation_ack_timeout`
//! ([`Shared::prompt_ack`], 250 ms by default) is prompt and costs
//! nothing. What a wait takes beyond that is *lateness*, paid from two
//! token buckets: the connection's, and its peer address's (a server's
//! TCP, TLS and WebSocket connections; a Unix socket's or a child's
//! stdio peer is on this host, and has the connection's only). Each holds
//! up to `invalidation_max_missed_acks` missed timeouts' worth (the
//! timeout less its prompt part each: 5.25 s at the defaults) and refills
//! at an eighth of wall time ([`REFILL_DIV`]: 125 ms a second, so it is
//! full again 42 s after it was emptied).
//!
//! - A wait that goes late *reserves* its lateness a slice at a time
//!   (1/[`SLICES`] of the rest of the timeout, rounded up: a 64th of
//!   the timeout, 31.25 ms at the defaults; up to the rest of the timeout
//!   in all), each when it reached the end of the one before, or what is
//!   left in the bucket if less; a reservation that comes up short is its
//!   last (it waits to the end of what it got, and stops), so a late
//!   phase reserves at most 56 times, and arms as many timers (one every
//!   31.25 ms; 7 when a slice was the prompt part, 250 ms).
//!   What it did not use is given back when it ends (or is dropped). So
//!   waits under way at once (concurrent writes) cannot together use more
//!   than the bucket holds: summed over every write, one holder adds at
//!   most a full bucket plus an eighth of the time elapsed beyond a prompt
//!   acknowledgement each (red-team review rv57: charged only at their
//!   end, 20 concurrent writes each waited 1.99 s for a just-in-time
//!   holder). And overlapping waits hold a slice each, not the whole
//!   rest of the timeout each (review of a5f3e43: three reservations of
//!   1.75 s held the bucket of a holder acknowledging in 300 ms while
//!   using 150 ms of it, and the next writes did not wait for it;
//!   `tests/invalidate_overlapping_writes.rs`), and a slice is small:
//!   each holds at most 31.25 ms more than it used, and 168 can hold one
//!   at once (review of 0bf23a4, `tests/invalidate_bursts.rs`: with slices
//!   of 250 ms, 21 could, so of 30 writes at once to a holder
//!   acknowledging in 300 ms the last 9 went unacknowledged, and waits
//!   advancing together each held up to 250 ms more than they used, so of
//!   13 at once to one acknowledging in 600 ms, 4.55 s of lateness in
//!   all, only 8 were acknowledged). In e3a18df any
//!   reservation that got something let a wait go on: one past its end
//!   got what refilled since the last (an eighth of a few microseconds),
//!   and looped, millions of times, until the call's deadline (64
//!   concurrent chat posts, `examples/tests/chat_pages.rs`).
//! - A peer address's bucket is charged once per write: the holders of
//!   one write behind one address (a NAT, a proxy, an app server's pool)
//!   share one reservation, grown as far as the latest of them needs, and
//!   pay the largest lateness among them, not its sum (review rv57: 20
//!   honest holders acknowledging in 300 ms used it up in 6 writes, and
//!   were never waited for again).
//! - A wait that may yet want more than is left *drains* the bucket (with
//!   less than the rest of its timeout left when it reserves): writes do
//!   not wait for the connection (for any connection of the address) until
//!   it refilled one missed timeout's worth (14 s at the defaults), then
//!   wait again. What other waits under way hold (used or not) counts as
//!   left, not as used: their reservations never drain it. A wait that
//!   finds the bucket short only because of them stops at what it got, its
//!   holder lagging until it acknowledges that push, as after a missed
//!   timeout: so a burst finds it short if its waits' lateness, each
//!   rounded up to a slice, adds up to more than is left (and at most
//!   168 of them are late at once). It does not wait for them to give
//!   back: waits advancing together get their acknowledgements together,
//!   after the short one has stopped. Nothing is lagging for good: an
//!   honest holder is waited for on every write while its lateness
//!   averages under an eighth of wall time, and is lagging for a while
//!   after a burst beyond it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::shared::{lock, Shared};
use crate::rt::time::Instant;

/// A bucket refills at `1 / REFILL_DIV` of wall time.
pub(super) const REFILL_DIV: u32 = 8;
/// Peer addresses whose buckets are kept (those not full).
const MAX_PEERS: usize = 4096;
/// A late phase reserves its lateness in at most this many slices of the
/// late part of the timeout (a 64th of the timeout each, 31.25 ms at the
/// defaults), so it holds at most one small slice more than it used
/// (module doc: the review of 0bf23a4).
pub(super) const SLICES: u64 = 56;

/// The slice a late phase of `rest` nanoseconds reserves at a time: so
/// it reaches `rest` in at most [`SLICES`] reservations.
fn slice_of(rest: u64) -> u64 {
    rest.div_ceil(SLICES).max(1)
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The size of the buckets, from the connection's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Allowance {
    /// What a full bucket holds, in nanoseconds (0: writes never wait).
    cap: u64,
    /// What a drained bucket must hold again before writes wait again:
    /// one missed timeout's worth (at most `cap`).
    resume: u64,
}

impl Allowance {
    /// From `limits`: `invalidation_max_missed_acks` missed timeouts'
    /// worth (the timeout less its prompt eighth each), one of them to
    /// resume.
    pub(super) fn of(limits: &crate::Limits) -> Self {
        let t = limits.invalidation_ack_timeout;
        let miss = nanos(t.saturating_sub(t / 8)).max(1);
        let cap = miss.saturating_mul(u64::from(limits.invalidation_max_missed_acks));
        Allowance {
            cap,
            resume: miss.min(cap),
        }
    }
}

/// One token bucket of lateness, kept as what was used of it (0: full).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Bucket {
    /// Nanoseconds used (reserved and not given back), as of `at`.
    used: u64,
    /// Of `used`, what waits under way hold (reserved, used or not, and
    /// not settled yet): what may yet come back.
    held: u64,
    at: Option<Instant>,
    /// A wait wanted more than was left: lagging until `resume` is back.
    drained: bool,
}

impl Bucket {
    /// Brings the bucket to `now`: an eighth of the time since refilled.
    fn refill(&mut self, a: Allowance, now: Instant) {
        match self.at {
            Some(at) if at >= now => {}
            Some(at) => {
                let back = nanos(now - at) / u64::from(REFILL_DIV);
                self.used = self.used.saturating_sub(back);
                self.at = Some(now);
            }
            None => self.at = Some(now),
        }
        self.used = self.used.min(a.cap);
        if self.drained && a.cap - self.used >= a.resume {
            self.drained = false;
        }
    }

    /// Whether writes send without waiting for the holder.
    fn lagging(&mut self, a: Allowance, now: Instant) -> bool {
        self.refill(a, now);
        a.cap == 0 || self.drained
    }

    /// Reserves up to `want` nanoseconds for a wait that holds `mine`
    /// already and may yet need `need` more (`want` or more: the rest of
    /// its timeout); what it got. Drains the bucket if what is left is
    /// less than `need` with what other waits under way hold counted as
    /// left: lateness used, not reservations outstanding (a few waits for
    /// a holder only slightly late hold a slice each and use a sliver of
    /// it: a review of a5f3e43).
    fn reserve(&mut self, a: Allowance, now: Instant, want: u64, need: u64, mine: u64) -> u64 {
        self.refill(a, now);
        let left = a.cap - self.used;
        let got = want.min(left);
        let others = self.held.saturating_sub(mine);
        if left.saturating_add(others) < need {
            self.drained = true;
        }
        self.used += got;
        self.held = self.held.saturating_add(got);
        got
    }

    /// Settles a wait's reservations (`reserved` in all): gives back the
    /// `unused` part of them.
    fn settle(&mut self, a: Allowance, now: Instant, reserved: u64, unused: u64) {
        self.refill(a, now);
        self.held = self.held.saturating_sub(reserved);
        self.used = self.used.saturating_sub(unused);
        self.refill(a, now);
    }

    /// Charges `late` nanoseconds outright: the time writers waited for a
    /// lagging reader of a shared collection (`reader_lateness.rs`).
    /// What is left after, or `None` once drained (a charge that finds it
    /// drained, or empties it, drains it).
    pub(super) fn charge(&mut self, a: Allowance, now: Instant, late: u64) -> Option<u64> {
        if self.lagging(a, now) {
            return None;
        }
        let got = self.reserve(a, now, late, late, 0);
        self.settle(a, now, got, 0);
        let left = a.cap - self.used.min(a.cap);
        if self.drained || left == 0 {
            self.drained = true;
            return None;
        }
        Some(left)
    }

    /// Full, not drained, and nothing held: the same as no bucket at all.
    fn is_full(&self) -> bool {
        self.used == 0 && self.held == 0 && !self.drained
    }
}

/// A server's buckets per peer address, over all of its connections from
/// it (module doc): a connection starts with a full bucket of its own, so
/// without these a peer that reconnected before each write (a fresh
/// holder each time, never acknowledging, or acknowledging just in time)
/// held every write up by the full `invalidation_ack_timeout` (red-team
/// passes). Only buckets not full are kept, at most [`MAX_PEERS`] (when
/// more are needed, the one with the least used goes).
#[derive(Default)]
pub(crate) struct PeerMisses(Mutex<HashMap<IpAddr, Bucket>>);

impl PeerMisses {
    fn lagging(&self, peer: IpAddr, a: Allowance, now: Instant) -> bool {
        let mut map = lock(&self.0);
        match map.get_mut(&peer) {
            Some(b) => b.lagging(a, now),
            None => a.cap == 0,
        }
    }

    fn reserve(
        &self,
        peer: IpAddr,
        a: Allowance,
        now: Instant,
        want: u64,
        need: u64,
        mine: u64,
    ) -> u64 {
        let mut map = lock(&self.0);
        if map.len() >= MAX_PEERS && !map.contains_key(&peer) {
            map.retain(|_, b| {
                b.refill(a, now);
                !b.is_full()
            });
            if map.len() >= MAX_PEERS {
                let least = map.iter().min_by_key(|(_, b)| b.used).map(|(k, _)| *k);
                if let Some(k) = least {
                    map.remove(&k);
                }
            }
        }
        map.entry(peer)
            .or_default()
            .reserve(a, now, want, need, mine)
    }

    fn settle(&self, peer: IpAddr, a: Allowance, now: Instant, reserved: u64, unused: u64) {
        let mut map = lock(&self.0);
        if let Some(b) = map.get_mut(&peer) {
            b.settle(a, now, reserved, unused);
            if b.is_full() {
                map.remove(&peer);
            }
        }
    }
}

impl PeerMisses {
    /// [`Bucket::charge`], to `peer`'s bucket.
    pub(super) fn charge(
        &self,
        peer: IpAddr,
        a: Allowance,
        now: Instant,
        late: u64,
    ) -> Option<u64> {
        if self.lagging(peer, a, now) {
            return None;
        }
        // Through `reserve`: it keeps at most MAX_PEERS buckets.
        self.reserve(peer, a, now, 0, 0, 0);
        let mut map = lock(&self.0);
        let b = map.entry(peer).or_default();
        let left = b.charge(a, now, late);
        if b.is_full() {
            map.remove(&peer);
        }
        left
    }
}

/// One write's waits for the holders behind one peer address (of one
/// server): they share one reservation from the address's bucket, grown
/// a slice at a time as far as the latest of them needs, and it is
/// charged the largest lateness among them (the rest is given back when
/// the write's waits are over, or dropped).
pub(super) struct AddrWait {
    misses: Arc<PeerMisses>,
    addr: IpAddr,
    allowance: Allowance,
    /// What was reserved in all (once one went late), and the most one
    /// used.
    st: Mutex<(Option<u64>, u64)>,
}

impl AddrWait {
    /// For `shared`'s peer address, if it has one.
    pub(super) fn of(shared: &Shared) -> Option<Self> {
        let (misses, addr) = shared.peer_misses.as_ref()?;
        Some(AddrWait {
            misses: misses.clone(),
            addr: *addr,
            allowance: shared.allowance(),
            st: Mutex::new((None, 0)),
        })
    }

    /// Which server's buckets, and which address, `shared` is charged to.
    pub(super) fn key_of(shared: &Shared) -> Option<(usize, IpAddr)> {
        let (misses, addr) = shared.peer_misses.as_ref()?;
        Some((Arc::as_ptr(misses) as usize, *addr))
    }

    /// Grows the write's reservation to `to` nanoseconds (of `rest`, the
    /// late part of the timeout), as far as the address's bucket allows;
    /// what it holds now.
    fn extend(&self, to: u64, rest: u64) -> u64 {
        let mut st = lock(&self.st);
        let had = st.0.unwrap_or(0);
        if st.0.is_some() && had >= to {
            return had;
        }
        let (want, need) = (to - had.min(to), rest - had.min(rest));
        let now = Instant::now();
        let got = self
            .misses
            .reserve(self.addr, self.allowance, now, want, need, had);
        *st.0.insert(had + got)
    }

    fn used(&self, late: u64) {
        let mut st = lock(&self.st);
        st.1 = st.1.max(late);
    }
}

impl Drop for AddrWait {
    fn drop(&mut self) {
        let (reserved, used) = *lock(&self.st);
        if let Some(r) = reserved {
            let unused = r - used.min(r);
            self.misses
                .settle(self.addr, self.allowance, Instant::now(), r, unused);
        }
    }
}

/// The late phase of one wait: what it reserved so far, a slice at a
/// time ([`LateWait::extend`]), given back (what it did not use) when it
/// is dropped.
pub(super) struct LateWait<'a> {
    shared: &'a Shared,
    addr: Option<&'a AddrWait>,
    from: Instant,
    /// Reserved from the connection's bucket, in all.
    conn: u64,
    /// How long the late phase may last, so far.
    pub(super) limit: Duration,
    /// A reservation came up short: the limit grows no more.
    last: bool,
}

impl LateWait<'_> {
    /// The late phase reached its limit without the acknowledgement:
    /// reserves the next slice (1/[`SLICES`] of the late part of the
    /// timeout, rounded up: a 64th of the timeout, 31.25 ms at the
    /// defaults; or what is left of the timeout if less) from the
    /// connection's bucket and the address's. Whether the limit grew:
    /// `false` once the timeout is reached, or once a reservation came up
    /// short (it still grew by what that one got, if anything). So a late
    /// phase reserves at most [`SLICES`] times (56; each arms one timer),
    /// never again and again what refilled since its last reservation
    /// (module doc: e3a18df).
    pub(super) fn extend(&mut self) -> bool {
        let rest = self.shared.late_part();
        let have = nanos(self.limit);
        if self.last || have >= rest {
            return false;
        }
        let to = have.saturating_add(slice_of(rest)).min(rest);
        if self.conn < to {
            let a = self.shared.allowance();
            let (want, need) = (to - self.conn, rest - self.conn.min(rest));
            let mut bucket = lock(&self.shared.pushes.late);
            self.conn += bucket.reserve(a, Instant::now(), want, need, self.conn);
        }
        let mut got = self.conn.min(to);
        if let Some(addr) = self.addr {
            if got > have {
                got = got.min(addr.extend(got, rest));
            }
        }
        if got < to {
            self.last = true;
        }
        if got <= have {
            return false;
        }
        self.limit = Duration::from_nanos(got);
        true
    }
}

impl Drop for LateWait<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let used = nanos(now.saturating_duration_since(self.from).min(self.limit));
        let a = self.shared.allowance();
        let unused = self.conn - used.min(self.conn);
        lock(&self.shared.pushes.late).settle(a, now, self.conn, unused);
        if let Some(addr) = self.addr {
            addr.used(used);
        }
    }
}

impl Shared {
    /// The buckets' size: `invalidation_max_missed_acks` missed timeouts'
    /// worth, and one of them to resume.
    pub(super) fn allowance(&self) -> Allowance {
        Allowance::of(&self.limits)
    }

    /// How soon an acknowledgement is prompt, and costs the peer nothing:
    /// an eighth of `invalidation_ack_timeout` (250 ms by default), more
    /// than an honest peer's round trip takes. Writes still wait up to the
    /// whole timeout; what a wait takes beyond this is paid from the
    /// peer's allowance (module doc).
    pub(super) fn prompt_ack(&self) -> Duration {
        self.limits.invalidation_ack_timeout / 8
    }

    /// The late part of the timeout (after the prompt part), in
    /// nanoseconds: the longest a late phase lasts.
    fn late_part(&self) -> u64 {
        let t = self.limits.invalidation_ack_timeout;
        nanos(t.saturating_sub(self.prompt_ack()))
    }

    /// Whether writes send to this peer without waiting: it has not
    /// acknowledged a push it missed the timeout for, or its connection's
    /// or its peer address's bucket is drained (module doc).
    pub(super) fn push_lagging(&self) -> bool {
        let now = Instant::now();
        let a = self.allowance();
        self.pushes.acked() < self.pushes.lag_until()
            || lock(&self.pushes.late).lagging(a, now)
            || self
                .peer_misses
                .as_ref()
                .is_some_and(|(misses, addr)| misses.lagging(*addr, a, now))
    }

    /// A wait went late, at `from`: reserves its first slice (the prompt
    /// part of the timeout) from the connection's bucket, and (if the
    /// connection reserved anything) from its address's for this write
    /// (`addr`), as much of it as they hold; more with
    /// [`LateWait::extend`]; given back, what is not used, when the
    /// result is dropped.
    pub(super) fn go_late<'a>(&'a self, addr: Option<&'a AddrWait>, from: Instant) -> LateWait<'a> {
        let mut late = LateWait {
            shared: self,
            addr,
            from,
            conn: 0,
            limit: Duration::ZERO,
            last: false,
        };
        late.extend();
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Allowance = Allowance {
        cap: 3_000,
        resume: 1_000,
    };

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refills_at_an_eighth_of_wall_time_and_resumes_at_one_miss() {
        let mut b = Bucket::default();
        let t0 = Instant::now();
        assert_eq!(b.reserve(A, t0, 1_000, 1_000, 0), 1_000);
        assert_eq!(b.reserve(A, t0, 1_000, 1_000, 0), 1_000);
        assert!(!b.lagging(A, t0));
        // What a wait did not use is given back.
        b.settle(A, t0, 1_000, 400);
        b.settle(A, t0, 1_000, 0);
        assert_eq!(b.reserve(A, t0, 2_000, 2_000, 0), 1_400, "what was left");
        assert!(b.lagging(A, t0), "drained");
        // 800 ns later, 100 are back: still lagging until 1,000 are.
        let t1 = t0 + Duration::from_nanos(800);
        assert!(b.lagging(A, t1));
        assert_eq!(
            b.reserve(A, t1, 1_000, 1_000, 1_400),
            100,
            "a wait under way gets what is back"
        );
        let t2 = t1 + Duration::from_nanos(8_000);
        assert!(!b.lagging(A, t2), "one miss's worth back");
        b.settle(A, t2, 1_500, 0);
        b.refill(A, t2 + Duration::from_secs(1));
        assert!(b.is_full());
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_of_waits_under_way_do_not_drain_a_bucket() {
        let mut b = Bucket::default();
        let t0 = Instant::now();
        // Three waits under way hold it all (a slice each), using little.
        for _ in 0..3 {
            assert_eq!(b.reserve(A, t0, 1_000, 2_000, 0), 1_000);
        }
        assert_eq!(b.reserve(A, t0, 1_000, 2_000, 0), 0, "none for a fourth");
        assert!(!b.lagging(A, t0), "only held: not drained");
        // One that holds a slice and may need more than is left with the
        // others' holdings counted as left drains it.
        assert_eq!(b.reserve(A, t0, 1_000, 2_500, 1_000), 0);
        assert!(b.lagging(A, t0), "its own holding is not left");
        b.drained = false;
        // The waits end, having used a tenth of what they held.
        for _ in 0..3 {
            b.settle(A, t0, 1_000, 900);
        }
        assert!(!b.lagging(A, t0));
        assert_eq!(b.reserve(A, t0, 1_000, 2_000, 0), 1_000, "given back");
        // Used up: drained.
        b.settle(A, t0, 1_000, 0);
        assert_eq!(b.reserve(A, t0, 1_000, 2_000, 0), 1_000);
        assert!(b.lagging(A, t0), "1,700 left, 2,000 wanted");
    }

    #[test]
    fn a_late_phase_reserves_at_most_56_slices() {
        // 31.25 ms at the defaults (2 s timeout: 1.75 s late part).
        assert_eq!(slice_of(1_750_000_000), 31_250_000);
        for rest in [1, 2, 55, 56, 57, 111, 113, 7_875, 1_750_000_001, u64::MAX] {
            let (mut have, mut n) = (0u64, 0u64);
            while have < rest {
                have = have.saturating_add(slice_of(rest)).min(rest);
                n += 1;
            }
            assert!(n <= SLICES, "{rest} ns: {n} slices");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_are_bounded_and_forgotten_once_full() {
        let misses = PeerMisses::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        assert_eq!(misses.reserve(a, A, now, 2_000, 2_000, 0), 2_000);
        misses.settle(a, A, now, 2_000, 0);
        assert_eq!(misses.reserve(a, A, now, 2_000, 2_000, 0), 1_000);
        assert!(misses.lagging(a, A, now));
        assert!(!misses.lagging("10.0.0.2".parse().unwrap(), A, now));
        // A flood of addresses keeps at most MAX_PEERS; the one with the
        // least used goes, not the drained one.
        for i in 0..MAX_PEERS as u32 {
            misses.reserve(IpAddr::from((i + 1).to_be_bytes()), A, now, 1, 1, 0);
        }
        assert_eq!(lock(&misses.0).len(), MAX_PEERS);
        assert!(misses.lagging(a, A, now), "kept");
        // Refilled: forgotten when next looked at for room, or settled.
        let later = now + Duration::from_micros(24);
        assert!(!misses.lagging(a, A, later));
        misses.settle(a, A, later, 1_000, 0);
        assert!(!lock(&misses.0).contains_key(&a));
    }
}
