//! Things every connection of one server holds for its peer, counted
//! together and per peer address, so what peers can make a server hold
//! for them is bounded server-wide and not only per connection, and one
//! address cannot take all of it. Two such pools: the objects exported
//! (`Limits::max_server_exports`, `Limits::max_exports_per_peer`) and the
//! kept answers of pipelined calls (`Limits::max_kept_answers`,
//! `Limits::max_kept_answers_per_peer`); and, counting bytes with no
//! reserve, the stream items held between pulls (`Budget::held`: an
//! eighth of the memory budget, a quarter of that per address).
//!
//! A connection may always hold its pool's reserve ([`RESERVED_EXPORTS`]
//! exports, [`RESERVED_KEPT_ANSWERS`] kept answers), whatever the others
//! hold: peers that fill the pool cannot stop a bystander from getting
//! its first few. So a pool holds at most `max + connections × reserve`:
//! a thing past `max` is only counted for a connection holding fewer than
//! the reserve, and each such one stays within that connection's reserve
//! until it is given back. The same holds per address. (A red-team pass
//! filled a first form, with no count per address, from ten connections
//! of one address in 0.6 s.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use super::tables::TableError;

/// Objects each connection may export even when the pool is full.
pub const RESERVED_EXPORTS: usize = 64;

/// Answers each connection may keep even when the pool is full.
pub const RESERVED_KEPT_ANSWERS: usize = 4;

/// A count of things (or bytes) with a limit.
#[derive(Debug)]
struct Count {
    held: AtomicUsize,
    max: usize,
}

impl Count {
    fn new(max: usize) -> Self {
        Count {
            held: AtomicUsize::new(0),
            max,
        }
    }

    /// Counts `n` more, whatever the limit.
    fn add(&self, n: usize) {
        self.held.fetch_add(n, Relaxed);
    }

    /// Counts `n` more if that stays within the limit.
    fn try_add(&self, n: usize) -> bool {
        self.held
            .fetch_update(Relaxed, Relaxed, |h| {
                (h.saturating_add(n) <= self.max).then_some(h + n)
            })
            .is_ok()
    }

    fn sub(&self, n: usize) {
        self.held.fetch_sub(n, Relaxed);
    }
}

/// The count of one kind of thing held by the connections of one server.
#[derive(Debug)]
pub struct CountPool {
    all: Count,
    /// Each peer address's count, while a connection from it holds it.
    peers: Mutex<HashMap<IpAddr, Weak<Count>>>,
    per_peer_max: usize,
    /// What each connection may hold whatever the others hold.
    reserve: usize,
}

impl CountPool {
    /// A pool of `max` exports, `per_peer_max` of them for the connections
    /// of one address (besides the connections' reserves of
    /// [`RESERVED_EXPORTS`]).
    pub fn new(max: usize, per_peer_max: usize) -> Arc<Self> {
        Self::with_reserve(max, per_peer_max, RESERVED_EXPORTS)
    }

    /// A pool of `max` things, `per_peer_max` of them for the connections
    /// of one address, besides `reserve` each connection may hold.
    pub fn with_reserve(max: usize, per_peer_max: usize, reserve: usize) -> Arc<Self> {
        Arc::new(CountPool {
            all: Count::new(max),
            peers: Mutex::new(HashMap::new()),
            per_peer_max,
            reserve,
        })
    }

    /// No bound (a standalone connection: its own limits bound it).
    pub fn unbounded() -> Arc<Self> {
        Self::new(usize::MAX, usize::MAX)
    }

    /// A connection's share of the pool: from peer address `peer` (keyed
    /// as `max_connections_per_peer` keys them), if it is counted per peer.
    pub fn share(self: &Arc<Self>, peer: Option<IpAddr>) -> PoolShare {
        let peer = peer
            .map(|key| crate::per_peer::shared(&self.peers, key, || Count::new(self.per_peer_max)));
        PoolShare {
            pool: self.clone(),
            peer,
        }
    }

    /// Things counted now, on every connection.
    pub fn held(&self) -> usize {
        self.all.held.load(Relaxed)
    }
}

/// What one connection counts in: its server's pool and its peer
/// address's part of it.
#[derive(Debug)]
pub struct PoolShare {
    pool: Arc<CountPool>,
    peer: Option<Arc<Count>>,
}

impl PoolShare {
    /// Counts one more for a connection already holding `own`, or says
    /// which bound refuses it (nothing counted then).
    pub fn take(&self, own: usize) -> Result<(), TableError> {
        self.take_n(own, 1)
    }

    /// Counts `n` more for a connection already holding `own` (past its
    /// reserve, all of them must fit), or says which bound refuses them
    /// (nothing counted then).
    pub fn take_n(&self, own: usize, n: usize) -> Result<(), TableError> {
        let all = &self.pool.all;
        if own < self.pool.reserve {
            all.add(n);
            if let Some(p) = &self.peer {
                p.add(n);
            }
            return Ok(());
        }
        if let Some(p) = &self.peer {
            if !p.try_add(n) {
                return Err(TableError::PeerFull(p.max));
            }
        }
        if !all.try_add(n) {
            if let Some(p) = &self.peer {
                p.sub(n);
            }
            return Err(TableError::PoolFull(all.max));
        }
        Ok(())
    }

    /// Gives back `n` (released, or their connection closed).
    pub fn give(&self, n: usize) {
        if n > 0 {
            self.pool.all.sub(n);
            if let Some(p) = &self.peer {
                p.sub(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_reserve_an_export_needs_room_in_the_pool() {
        let pool = CountPool::new(100, usize::MAX);
        let (a, b) = (pool.share(None), pool.share(None));
        // A connection fills the pool.
        for own in 0..100 {
            a.take(own).unwrap();
        }
        assert_eq!(a.take(100), Err(TableError::PoolFull(100)));
        assert_eq!(pool.held(), 100);
        // Another still gets its reserve, and no more.
        for own in 0..RESERVED_EXPORTS {
            b.take(own).unwrap();
        }
        assert!(b.take(RESERVED_EXPORTS).is_err());
        assert_eq!(pool.held(), 100 + RESERVED_EXPORTS);
        // Room comes back only once the pool is under its limit again.
        b.give(RESERVED_EXPORTS);
        assert!(b.take(RESERVED_EXPORTS).is_err());
        a.give(1);
        b.take(RESERVED_EXPORTS).unwrap();
        assert_eq!(pool.held(), 100);
    }

    #[test]
    fn bytes_with_no_reserve_are_taken_whole_or_not_at_all() {
        let ip = |n: u8| Some(IpAddr::from([10, 0, 0, n]));
        let pool = CountPool::with_reserve(1000, 400, 0);
        let (a, b) = (pool.share(ip(1)), pool.share(ip(2)));
        a.take_n(0, 300).unwrap();
        // Past the address's part: refused whole, nothing counted.
        assert_eq!(a.take_n(0, 101), Err(TableError::PeerFull(400)));
        assert_eq!(pool.held(), 300);
        a.take_n(0, 100).unwrap();
        b.take_n(0, 400).unwrap();
        // Past the pool: refused whole, the address's count unchanged.
        let c = pool.share(ip(3));
        assert_eq!(c.take_n(0, 201), Err(TableError::PoolFull(1000)));
        c.take_n(0, 200).unwrap();
        assert_eq!(pool.held(), 1000);
        c.give(200);
        assert_eq!(c.peer.as_ref().unwrap().held.load(Relaxed), 0);
        assert_eq!(pool.held(), 800);
    }

    #[test]
    fn one_address_gets_its_part_and_the_others_the_rest() {
        let ip = |n: u8| Some(IpAddr::from([10, 0, 0, n]));
        let pool = CountPool::new(100, 40);
        // Two connections of one address share its 40 past their reserves.
        let (a1, a2) = (pool.share(ip(1)), pool.share(ip(1)));
        for own in 0..RESERVED_EXPORTS {
            a1.take(own).unwrap();
        }
        assert_eq!(a1.take(RESERVED_EXPORTS), Err(TableError::PeerFull(40)));
        assert_eq!(a2.take(RESERVED_EXPORTS), Err(TableError::PeerFull(40)));
        // A refusal by the pool leaves the address's count as it was.
        let b = pool.share(ip(2));
        for own in 0..40 {
            b.take(own).unwrap();
        }
        let c = pool.share(ip(3));
        assert_eq!(c.take(RESERVED_EXPORTS), Err(TableError::PoolFull(100)));
        b.give(40);
        a1.give(RESERVED_EXPORTS);
        for own in 0..40 {
            c.take(RESERVED_EXPORTS + own).unwrap();
        }
        assert_eq!(c.take(RESERVED_EXPORTS + 40), Err(TableError::PeerFull(40)));
        assert_eq!(pool.held(), 40);
        // An address's count is forgotten with its last connection.
        drop((a1, a2));
        let _d = pool.share(ip(4));
        let peers = pool.peers.lock().unwrap();
        assert!(!peers.contains_key(&ip(1).unwrap()));
        assert_eq!(peers.len(), 3, "addresses 2, 3 and 4");
    }
}
