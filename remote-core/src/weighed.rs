//! A moka cache bounded in entries and in bytes at once, counting the bytes
//! it holds and the entries it evicted for size: the store under both the
//! client cache (`cache.rs`) and the server's memo (`memo.rs`).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// Inserts `v` (of `size` bytes as `size_of` counts it) under `k` in a
/// [`weighed`] cache bounded to `max_bytes`, counting it in `bytes`. moka
/// evicts for size in its housekeeping, which runs only every so many
/// operations: past the byte bound it is run at once, so a burst of inserts
/// leaves the cache at its bound, not past it (a memo of 16 MiB held 47 MiB
/// after 200 replies of 900 KiB, and eight connections' client caches of 8
/// MiB 133 MiB: found by a red-team pass).
pub(crate) fn insert<K, V>(
    map: &moka::sync::Cache<K, V>,
    bytes: &AtomicU64,
    max_bytes: usize,
    k: K,
    v: V,
    size: u64,
) where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    bytes.fetch_add(size, Ordering::AcqRel);
    map.insert(k, v);
    if bytes.load(Ordering::Acquire) > max_bytes as u64 {
        map.run_pending_tasks();
    }
}

/// A cache holding at most `max_entries` entries and `max_bytes` bytes as
/// `size_of` counts them.
///
/// Every entry weighs its bytes plus an equal share (`slot`) of the byte
/// bound, so total weight within `max_bytes` keeps both the bytes held under
/// `max_bytes` and the number of entries under `max_entries`.
pub(crate) fn weighed<K, V>(
    max_entries: usize,
    max_bytes: usize,
    size_of: fn(&K, &V) -> u64,
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
    let (ev, by) = (evictions.clone(), bytes.clone());
    let map = moka::sync::Cache::builder()
        .max_capacity(max_bytes)
        .weigher(move |k: &K, v: &V| u32::try_from(size_of(k, v) + slot).unwrap_or(u32::MAX))
        .eviction_listener(move |k: Arc<K>, v: V, cause| {
            by.fetch_sub(size_of(&k, &v), Ordering::AcqRel);
            if cause == RemovalCause::Size {
                ev.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build();
    Weighed {
        map,
        evictions,
        bytes,
    }
}
