//! A moka cache bounded in entries and in bytes at once, counting the bytes
//! it holds and the entries it evicted for size: the store under both the
//! client cache (`cache.rs`) and the server's memo (`memo.rs`). Caches may
//! also share one bound in bytes ([`Pool`]): a server's connections' client
//! caches do.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use moka::notification::RemovalCause;

/// The cache and its counters.
pub(crate) struct Weighed<K, V> {
    pub(crate) map: moka::sync::Cache<K, V>,
    /// Entries evicted because a bound was reached.
    pub(crate) evictions: Arc<AtomicU64>,
    /// Bytes held (keys' and values' payloads, as `size_of` counts them);
    /// [`insert`] adds, eviction subtracts.
    pub(crate) bytes: Arc<AtomicU64>,
    /// The pool these bytes count in too, if any.
    pub(crate) pooled: Option<Pooled>,
}

/// Bytes that several caches hold together, under one bound: an entry
/// that would take them past it is not stored (each cache still evicts
/// within its own bounds). A server's connections each have a client
/// cache, bounded by `cache_max_bytes` each; without a sum, eight of them
/// held 133 MiB where a server called cached methods on its clients'
/// objects, and 1,024 connections could hold 8 GiB (a red-team pass).
#[derive(Debug)]
pub(crate) struct Pool {
    bytes: AtomicU64,
    max: u64,
}

impl Pool {
    pub(crate) fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Pool {
            bytes: AtomicU64::new(0),
            max: max_bytes as u64,
        })
    }

    /// Bytes the caches of the pool hold together.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Counts `n` bytes if they fit under the bound.
    fn take(&self, n: u64) -> bool {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b.saturating_add(n) <= self.max).then_some(b + n)
            })
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One cache's part in a [`Pool`]. What the cache still holds is given
/// back when the part is dropped (with its cache: moka tells its listener
/// nothing then), and nothing after that.
pub(crate) struct Pooled {
    pool: Arc<Pool>,
    bytes: Arc<AtomicU64>,
    /// Set on drop: the listener gives nothing back after it.
    gone: Arc<AtomicBool>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if !self.gone.swap(true, Ordering::AcqRel) {
            self.pool.give(self.bytes.load(Ordering::Acquire));
        }
    }
}

/// Inserts `v` (of `size` bytes as `size_of` counts it) under `k` in a
/// [`weighed`] cache bounded to `max_bytes`, counting it in `bytes` (and
/// in its pool, unless that is full: then nothing is stored). moka
/// evicts for size in its housekeeping, which runs only every so many
/// operations: past the byte bound it is run at once, so a burst of inserts
/// leaves the cache at its bound, not past it (a memo of 16 MiB held 47 MiB
/// after 200 replies of 900 KiB, and eight connections' client caches of 8
/// MiB 133 MiB: found by a red-team pass).
pub(crate) fn insert<K, V>(
    map: &moka::sync::Cache<K, V>,
    bytes: &AtomicU64,
    max_bytes: usize,
    pooled: Option<&Pooled>,
    (k, v, size): (K, V, u64),
) where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    if let Some(p) = pooled {
        if !p.pool.take(size) {
            return;
        }
    }
    bytes.fetch_add(size, Ordering::AcqRel);
    map.insert(k, v);
    if bytes.load(Ordering::Acquire) > max_bytes as u64 {
        map.run_pending_tasks();
    }
}

/// A cache holding at most `max_entries` entries and `max_bytes` bytes as
/// `size_of` counts them, and counting them in `pool` too if given.
///
/// Every entry weighs its bytes plus an equal share (`slot`) of the byte
/// bound, so total weight within `max_bytes` keeps both the bytes held under
/// `max_bytes` and the number of entries under `max_entries`.
pub(crate) fn weighed<K, V>(
    max_entries: usize,
    max_bytes: usize,
    size_of: fn(&K, &V) -> u64,
    pool: Option<Arc<Pool>>,
) -> Weighed<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let max_entries = max_entries.max(1) as u64;
    let max_bytes = max_bytes.max(1) as u64;
    let slot = max_bytes.div_ceil(max_entries).max(1);
    let evictions = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let pooled = pool.map(|pool| Pooled {
        pool,
        bytes: bytes.clone(),
        gone: Arc::default(),
    });
    let to_pool = pooled.as_ref().map(|p| (p.pool.clone(), p.gone.clone()));
    let (ev, by) = (evictions.clone(), bytes.clone());
    let map = moka::sync::Cache::builder()
        .max_capacity(max_bytes)
        .weigher(move |k: &K, v: &V| u32::try_from(size_of(k, v) + slot).unwrap_or(u32::MAX))
        .eviction_listener(move |k: Arc<K>, v: V, cause| {
            let size = size_of(&k, &v);
            by.fetch_sub(size, Ordering::AcqRel);
            if let Some((pool, gone)) = &to_pool {
                if !gone.load(Ordering::Acquire) {
                    pool.give(size);
                }
            }
            if cause == RemovalCause::Size {
                ev.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build();
    Weighed {
        map,
        evictions,
        bytes,
        pooled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of(_: &u32, v: &bytes::Bytes) -> u64 {
        v.len() as u64
    }

    #[test]
    fn caches_of_a_pool_keep_within_it_together_and_give_back() {
        let pool = Pool::new(10_000);
        let a = weighed(100, 8_000, size_of, Some(pool.clone()));
        let b = weighed(100, 8_000, size_of, Some(pool.clone()));
        let put = |w: &Weighed<u32, bytes::Bytes>, k: u32| {
            insert(
                &w.map,
                &w.bytes,
                8_000,
                w.pooled.as_ref(),
                (k, bytes::Bytes::from(vec![0; 1_000]), 1_000),
            );
        };
        for k in 0..6 {
            put(&a, k);
        }
        for k in 0..6 {
            put(&b, k);
        }
        a.map.run_pending_tasks();
        b.map.run_pending_tasks();
        // Each cache's bound (8,000) would hold six; the pool holds ten.
        assert_eq!(pool.bytes(), 10_000);
        assert_eq!(a.bytes.load(Ordering::Acquire), 6_000);
        assert_eq!(b.bytes.load(Ordering::Acquire), 4_000);
        assert_eq!(b.map.entry_count(), 4);
        // Emptied, a cache gives its bytes back.
        a.map.invalidate_all();
        a.map.run_pending_tasks();
        assert_eq!(a.bytes.load(Ordering::Acquire), 0);
        assert_eq!(pool.bytes(), 4_000);
        // Dropped, too: what it held, once.
        drop(b);
        assert_eq!(pool.bytes(), 0);
        put(&a, 9);
        assert_eq!(pool.bytes(), 1_000);
    }
}
