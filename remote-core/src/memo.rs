//! Server-side memoisation of `#[remote(memoize(ttl = ".."))]` replies
//! (CACHING.md).
//!
//! The key is the served object's identity (its allocation and interface),
//! the method, the encoded arguments and the caller's authenticated
//! identity ([`Caller`]: the user name and the TLS client certificate), so
//! connections share an entry only when they reach the same object as the
//! same user: a reply that depends on `Peer::current()` never reaches
//! another user. Each entry keeps a weak reference to
//! its object: the allocation (hence the address in the key) cannot be
//! reused by another object while the entry lives, and an entry whose
//! object is gone is never served. Only successful replies holding no
//! reference are stored.
//!
//! A server's connections share one cache (a standalone connection makes
//! its own on first use), bounded by [`Limits::memo_max_entries`] and
//! [`Limits::memo_max_bytes`] (a `moka` cache with a weigher). Invalidation
//! (`invalidates(..)` or [`cache::invalidate`](crate::cache::invalidate))
//! reaches every cache of the process. A reply computed across an
//! invalidation of any object of its cache is not stored (a per-cache epoch,
//! checked under the lock invalidations take), so a stale result is never
//! stored after the invalidation that should have removed it.
//!
//! [`Limits::memo_max_entries`]: crate::Limits::memo_max_entries
//! [`Limits::memo_max_bytes`]: crate::Limits::memo_max_bytes

use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use crate::rt::time::Instant;
use bytes::Bytes;
use moka::notification::RemovalCause;

use crate::proto::ExportKey;

/// Counters of a memo cache (a server's, or a standalone connection's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoStats {
    /// Calls answered from the cache: their handler did not run.
    pub hits: u64,
    /// Calls to a memoised method whose handler ran.
    pub misses: u64,
    /// Entries dropped to stay under the entry or byte bound.
    pub evictions: u64,
    /// Methods invalidated (one per name per invalidation). Every
    /// invalidation in the process reaches every memo cache, so this
    /// counts those of objects this cache never held too.
    pub invalidations: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes of keys and values held now.
    pub bytes: u64,
}

/// Who a memoised reply was computed for: the authenticated user name and
/// the SHA-256 of the verified TLS client certificate, each `None` when
/// the connection has none. Unauthenticated callers without a client
/// certificate share one scope.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub(crate) struct Caller {
    user: Option<Box<str>>,
    cert: Option<[u8; 32]>,
}

impl Caller {
    /// The scope of `peer`'s calls.
    pub(crate) fn of(peer: &crate::Peer) -> Caller {
        Caller {
            user: peer.user().map(Into::into),
            cert: peer.tls_identity().map(|t| t.sha256()),
        }
    }

    fn len(&self) -> usize {
        self.user.as_deref().map_or(0, str::len)
    }
}

#[derive(Debug, Hash, PartialEq, Eq)]
struct Key {
    addr: usize,
    interface: TypeId,
    method: &'static str,
    caller: Caller,
    args: Box<[u8]>,
}

/// Whether the entry's object is still alive (a weak reference inside).
type Alive = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct Entry {
    value: Bytes,
    expires: Instant,
    alive: Alive,
}

fn size_of(k: &Key, v: &Entry) -> u64 {
    (k.args.len() + k.caller.len() + v.value.len()) as u64
}

/// One cache of memoised replies.
pub(crate) struct MemoCache {
    map: moka::sync::Cache<Key, Entry>,
    /// Bumped by every invalidation; stores and invalidations take it.
    epoch: Mutex<u64>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
    invalidations: AtomicU64,
    bytes: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoCache")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Every live memo cache, for invalidation.
static CACHES: LazyLock<Mutex<Vec<Weak<MemoCache>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

fn caches() -> std::sync::MutexGuard<'static, Vec<Weak<MemoCache>>> {
    CACHES.lock().unwrap_or_else(|p| p.into_inner())
}

/// A miss to be filled by the reply.
pub struct MemoTicket(Option<(Arc<MemoCache>, Key, Duration, u64, Alive)>);

impl std::fmt::Debug for MemoTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoTicket")
            .field("active", &self.0.is_some())
            .finish()
    }
}

impl MemoTicket {
    /// A ticket that stores nothing.
    pub(crate) fn none() -> Self {
        MemoTicket(None)
    }

    /// Stores the encoded value of a successful reply (holding no
    /// reference), unless an invalidation ran since the lookup.
    pub(crate) fn store(self, value: &[u8]) {
        let Some((cache, key, ttl, epoch, alive)) = self.0 else {
            return;
        };
        // A reference names an object of one connection: never replayed
        // on another (even one nested in a `Wire` struct).
        let mut refs = Vec::new();
        let mut r = crate::proto::Reader::new(value);
        if r.skip_value(usize::MAX, &mut refs).is_err() || !refs.is_empty() {
            return;
        }
        let entry = Entry {
            value: Bytes::copy_from_slice(value),
            expires: Instant::now() + ttl,
            alive,
        };
        let now = cache.epoch.lock().unwrap_or_else(|p| p.into_inner());
        if *now != epoch {
            return;
        }
        cache
            .bytes
            .fetch_add(size_of(&key, &entry), Ordering::AcqRel);
        cache.map.insert(key, entry);
        drop(now);
    }
}

impl MemoCache {
    /// A new cache, registered for invalidation.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Arc<Self> {
        let max_entries = max_entries.max(1) as u64;
        let max_bytes = max_bytes.max(1) as u64;
        // As in the client cache: each entry weighs its bytes plus an
        // equal share of the byte bound, so both bounds hold.
        let slot = max_bytes.div_ceil(max_entries).max(1);
        let evictions = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (ev, by) = (evictions.clone(), bytes.clone());
        let map = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .support_invalidation_closures()
            .weigher(move |k: &Key, v: &Entry| {
                u32::try_from(size_of(k, v) + slot).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |k: Arc<Key>, v: Entry, cause| {
                by.fetch_sub(size_of(&k, &v), Ordering::AcqRel);
                if cause == RemovalCause::Size {
                    ev.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let cache = Arc::new(MemoCache {
            map,
            epoch: Mutex::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
            invalidations: AtomicU64::new(0),
            bytes,
        });
        let mut all = caches();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&cache));
        cache
    }

    /// Looks a call up: `Ok(bytes)` is a hit (the encoded value), `Err` a
    /// miss whose ticket stores the reply.
    pub(crate) fn lookup(
        self: &Arc<Self>,
        key: ExportKey,
        alive: Alive,
        method: &'static str,
        caller: Caller,
        ttl: Duration,
        args: &[u8],
    ) -> Result<Bytes, MemoTicket> {
        let key = Key {
            addr: key.addr,
            interface: key.interface,
            method,
            caller,
            args: args.into(),
        };
        // Read before the lookup: an invalidation after it refuses the store.
        let epoch = *self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = self.map.get(&key) {
            if Instant::now() < e.expires && (e.alive)() {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(e.value);
            }
            self.map.invalidate(&key);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Err(MemoTicket(Some((self.clone(), key, ttl, epoch, alive))))
    }

    fn invalidate(&self, key: ExportKey, methods: &[&str]) {
        let mut epoch = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        *epoch += 1;
        self.invalidations
            .fetch_add(methods.len() as u64, Ordering::Relaxed);
        // Nothing stored (every store counts its bytes under this lock
        // first): no predicate to register, so a cache nobody uses does
        // not collect one per write.
        if self.bytes.load(Ordering::Acquire) == 0 {
            return;
        }
        let names: Vec<String> = methods.iter().map(|m| (*m).to_owned()).collect();
        // Entries inserted before this call and matching are never served
        // again (moka checks the predicate on reads until they are gone).
        let _ = self.map.invalidate_entries_if(move |k, _| {
            k.addr == key.addr
                && k.interface == key.interface
                && names.iter().any(|n| n == k.method)
        });
        drop(epoch);
    }

    /// The counters, after moka's pending evictions have run.
    pub(crate) fn stats(&self) -> MemoStats {
        self.map.run_pending_tasks();
        MemoStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries: self.map.entry_count(),
            bytes: self.bytes.load(Ordering::Acquire),
        }
    }
}

/// Invalidates `methods` of the object `key` in every memo cache.
pub(crate) fn invalidate(key: ExportKey, methods: &[&str]) {
    let live: Vec<Arc<MemoCache>> = caches().iter().filter_map(Weak::upgrade).collect();
    for cache in live {
        cache.invalidate(key, methods);
    }
}
