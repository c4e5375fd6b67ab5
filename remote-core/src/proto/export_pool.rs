//! The objects every connection of one server exports, counted together
//! (`Limits::max_server_exports`) and per peer address
//! (`Limits::max_exports_per_peer`), so what peers can make a server hold
//! for them is bounded server-wide and not only per connection, and one
//! address cannot take all of it.
//!
//! A connection may always hold [`RESERVED_EXPORTS`] objects, whatever the
//! others hold: peers that fill the pool cannot stop a bystander from
//! getting its first few references. So the pool holds at most
//! `max_server_exports + connections × RESERVED_EXPORTS` objects: an export
//! past `max_server_exports` is only made for a connection holding fewer
//! than [`RESERVED_EXPORTS`], and each such export stays within that
//! connection's reserve until it is released. The same holds per address.
//! (A red-team pass filled a first form, with no count per address, from
//! ten connections of one address in 0.6 s.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use super::tables::TableError;

/// Objects each connection may export even when the pool is full.
pub const RESERVED_EXPORTS: usize = 64;

/// A count of exports with a limit.
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

    /// Counts one more, whatever the limit.
    fn add(&self) {
        self.held.fetch_add(1, Relaxed);
    }

    /// Counts one more if under the limit.
    fn try_add(&self) -> bool {
        self.held
            .fetch_update(Relaxed, Relaxed, |h| (h < self.max).then_some(h + 1))
            .is_ok()
    }

    fn sub(&self, n: usize) {
        self.held.fetch_sub(n, Relaxed);
    }
}

/// The count of objects exported by the connections of one server.
#[derive(Debug)]
pub struct ExportPool {
    all: Count,
    /// Each peer address's count, while a connection from it holds it.
    peers: Mutex<HashMap<IpAddr, Weak<Count>>>,
    per_peer_max: usize,
}

impl ExportPool {
    /// A pool of `max` exports, `per_peer_max` of them for the connections
    /// of one address (besides the connections' reserves).
    pub fn new(max: usize, per_peer_max: usize) -> Arc<Self> {
        Arc::new(ExportPool {
            all: Count::new(max),
            peers: Mutex::new(HashMap::new()),
            per_peer_max,
        })
    }

    /// No bound but `max_exports` (a standalone connection).
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

    /// Exports counted now, on every connection.
    pub fn held(&self) -> usize {
        self.all.held.load(Relaxed)
    }
}

/// What one connection's export table counts in: its server's pool and
/// its peer address's part of it.
#[derive(Debug)]
pub struct PoolShare {
    pool: Arc<ExportPool>,
    peer: Option<Arc<Count>>,
}

impl PoolShare {
    /// Counts one more export for a connection already holding `own`, or
    /// says which bound refuses it (nothing counted then).
    pub fn take(&self, own: usize) -> Result<(), TableError> {
        let all = &self.pool.all;
        if own < RESERVED_EXPORTS {
            all.add();
            if let Some(p) = &self.peer {
                p.add();
            }
            return Ok(());
        }
        if let Some(p) = &self.peer {
            if !p.try_add() {
                return Err(TableError::PeerFull(p.max));
            }
        }
        if !all.try_add() {
            if let Some(p) = &self.peer {
                p.sub(1);
            }
            return Err(TableError::PoolFull(all.max));
        }
        Ok(())
    }

    /// Gives back `n` exports (released, or their connection closed).
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
        let pool = ExportPool::new(100, usize::MAX);
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
    fn one_address_gets_its_part_and_the_others_the_rest() {
        let ip = |n: u8| Some(IpAddr::from([10, 0, 0, n]));
        let pool = ExportPool::new(100, 40);
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
