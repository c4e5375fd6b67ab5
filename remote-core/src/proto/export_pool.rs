//! The objects every connection of one server exports, counted together
//! (`Limits::max_server_exports`), so what peers can make a server hold for
//! them is bounded server-wide and not only per connection.
//!
//! A connection may always hold [`RESERVED_EXPORTS`] objects, whatever the
//! others hold: peers that fill the pool cannot stop a bystander from
//! getting its first few references. So the pool holds at most
//! `max_server_exports + connections × RESERVED_EXPORTS` objects: an export
//! past `max_server_exports` is only made for a connection holding fewer
//! than [`RESERVED_EXPORTS`], and each such export stays within that
//! connection's reserve until it is released.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Objects each connection may export even when the pool is full.
pub const RESERVED_EXPORTS: usize = 64;

/// The count of objects exported by the connections sharing it (one
/// server's, or one standalone connection's own).
#[derive(Debug)]
pub struct ExportPool {
    held: AtomicUsize,
    max: usize,
}

impl ExportPool {
    /// A pool of `max` exports (besides the connections' reserves).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ExportPool {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// Counts one more export for a connection already holding `own`:
    /// `false` (nothing counted) if the pool is full and `own` is past the
    /// reserve.
    pub fn take(&self, own: usize) -> bool {
        if own < RESERVED_EXPORTS {
            self.held.fetch_add(1, Relaxed);
            return true;
        }
        self.held
            .fetch_update(Relaxed, Relaxed, |h| (h < self.max).then_some(h + 1))
            .is_ok()
    }

    /// Gives back `n` exports (released, or their connection closed).
    pub fn give(&self, n: usize) {
        if n > 0 {
            self.held.fetch_sub(n, Relaxed);
        }
    }

    /// Exports counted now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// The pool's limit.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_reserve_an_export_needs_room_in_the_pool() {
        let pool = ExportPool::new(100);
        // A connection fills the pool.
        for own in 0..100 {
            assert!(pool.take(own));
        }
        assert!(!pool.take(100), "full pool, connection past its reserve");
        assert_eq!(pool.held(), 100);
        // Another connection still gets its reserve, and no more.
        for own in 0..RESERVED_EXPORTS {
            assert!(pool.take(own));
        }
        assert!(!pool.take(RESERVED_EXPORTS));
        assert_eq!(pool.held(), 100 + RESERVED_EXPORTS);
        // Room comes back only once the pool is under its limit again.
        pool.give(RESERVED_EXPORTS);
        assert!(!pool.take(RESERVED_EXPORTS));
        pool.give(1);
        assert!(pool.take(RESERVED_EXPORTS));
        assert_eq!(pool.held(), 100);
    }
}
