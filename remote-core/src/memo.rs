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
//! An invalidation costs O(1) whatever the cache holds: it records the new
//! epoch for each (object, method) it names, and an entry stored at an
//! older epoch than its (object, method)'s record is a miss. That record
//! holds at most `memo_max_entries` names; past it the whole cache is
//! emptied (moka's `invalidate_all`, also O(1)) and the record starts over.
//! (moka's `invalidate_entries_if` was used before: each call registered a
//! predicate that every read and every housekeeping scan evaluated until a
//! scan of the whole cache finished, so a flood of invalidating writes made
//! reads of every object cost O(writes): 50,000 invalidations of another
//! object made 1,000 reads of a full cache take minutes in a debug build.)
//!
//! [`Limits::memo_max_entries`]: crate::Limits::memo_max_entries
//! [`Limits::memo_max_bytes`]: crate::Limits::memo_max_bytes

use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use crate::rt::time::Instant;
use bytes::Bytes;

use crate::proto::ExportKey;
use crate::weighed::{weighed, Weighed};

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
    /// The cache's epoch when the reply was computed (and stored).
    epoch: u64,
}

/// An invalidated (object, method): the object's allocation and
/// interface, and a hash of the method's name (two names with one hash
/// only make a read miss needlessly, never serve a stale entry).
type Stale = (usize, TypeId, u64);

fn name_hash(method: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(method)
}

/// What invalidations take, under one lock.
#[derive(Default)]
struct Epochs {
    /// Bumped by every invalidation.
    now: u64,
    /// The epoch of the last invalidation of each (object, method) named
    /// since the record last started over (bounded: see `invalidate`).
    stale: std::collections::HashMap<Stale, u64>,
    /// When the record started over: every entry computed before is stale
    /// (moka's `invalidate_all` frees them, but keeps an entry stamped at
    /// the very same instant; this does not depend on its clock).
    floor: u64,
    /// Misses whose replies are being computed (tickets alive): while
    /// there are any, invalidations are recorded even in an empty cache,
    /// so a reply that crossed its own method's invalidation is refused.
    pending: usize,
}

impl Epochs {
    /// The epoch `key`'s method of its object was last invalidated at, or
    /// when the record started over if later.
    fn stale_since(&self, key: &Key) -> u64 {
        if self.stale.is_empty() {
            return self.floor;
        }
        let k: Stale = (key.addr, key.interface, name_hash(key.method));
        self.stale.get(&k).copied().unwrap_or(0).max(self.floor)
    }
}

/// What an entry counts against the cache's bounds: its key's and value's
/// bytes, and what the map holds besides for each
/// ([`ENTRY_OVERHEAD`](crate::cache::ENTRY_OVERHEAD)).
fn size_of(k: &Key, v: &Entry) -> u64 {
    (k.args.len() + k.caller.len() + v.value.len() + crate::cache::ENTRY_OVERHEAD) as u64
}

/// One cache of memoised replies.
pub(crate) struct MemoCache {
    map: moka::sync::Cache<Key, Entry>,
    /// The epoch and the record of invalidated methods; stores and
    /// invalidations take it.
    epochs: Mutex<Epochs>,
    /// Most names `epochs.stale` holds (`memo_max_entries`).
    max_stale: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
    invalidations: AtomicU64,
    bytes: Arc<AtomicU64>,
    /// The bound on `bytes`.
    max_bytes: usize,
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
pub struct MemoTicket(Option<Box<Pending>>);

/// What a miss remembers to store its reply (boxed: a ticket travels in a
/// `Result`).
type Pending = (Arc<MemoCache>, Key, Duration, u64, Alive);

impl std::fmt::Debug for MemoTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoTicket")
            .field("active", &self.0.is_some())
            .finish()
    }
}

/// Takes a ticket's miss off the count of replies being computed.
struct Done<'a>(&'a MemoCache);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let mut epochs = self.0.epochs.lock().unwrap_or_else(|p| p.into_inner());
        epochs.pending = epochs.pending.saturating_sub(1);
    }
}

impl Drop for MemoTicket {
    /// A miss whose reply is never stored (an error, a cancelled call).
    fn drop(&mut self) {
        if let Some(pending) = self.0.take() {
            drop(Done(&pending.0));
        }
    }
}

impl MemoTicket {
    /// A ticket that stores nothing.
    pub(crate) fn none() -> Self {
        MemoTicket(None)
    }

    /// Stores the encoded value of a successful reply (holding no
    /// reference), unless its method of its object was invalidated since
    /// the lookup.
    pub(crate) fn store(mut self, value: &[u8]) {
        let Some(pending) = self.0.take() else {
            return;
        };
        let (cache, key, ttl, epoch, alive) = *pending;
        // A reference names an object of one connection: never replayed
        // on another (even one nested in a `Wire` struct).
        let mut refs = Vec::new();
        let mut r = crate::proto::Reader::new(value);
        let plain = r.skip_value(usize::MAX, &mut refs).is_ok() && refs.is_empty();
        let entry = Entry {
            value: Bytes::copy_from_slice(if plain { value } else { &[] }),
            expires: Instant::now() + ttl,
            alive,
            epoch,
        };
        // Under one lock: no longer computing, and not stored if this
        // method of this object was invalidated (or the record started
        // over) since the lookup, as the reply may predate the write.
        // Invalidations of anything else (any object of the process
        // reaches every memo) do not matter.
        let mut now = cache.epochs.lock().unwrap_or_else(|p| p.into_inner());
        now.pending = now.pending.saturating_sub(1);
        if !plain || now.stale_since(&key) > epoch {
            return;
        }
        let size = size_of(&key, &entry);
        crate::weighed::insert(
            &cache.map,
            &cache.bytes,
            cache.max_bytes,
            None,
            (key, entry, size),
        );
        drop(now);
    }
}

impl MemoCache {
    /// A new cache, registered for invalidation.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Arc<Self> {
        let Weighed {
            map,
            evictions,
            bytes,
            pooled: _,
        } = weighed(max_entries, max_bytes, size_of, None);
        let cache = Arc::new(MemoCache {
            map,
            epochs: Mutex::new(Epochs::default()),
            max_stale: max_entries.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
            invalidations: AtomicU64::new(0),
            bytes,
            max_bytes,
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
        // Read before the lookup: an entry older than its method's last
        // invalidation is stale.
        let stale_since = {
            let epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
            epochs.stale_since(&key)
        };
        if let Some(e) = self.map.get(&key) {
            if Instant::now() < e.expires && (e.alive)() && e.epoch >= stale_since {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(e.value);
            }
            self.map.invalidate(&key);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // A miss: its reply is computed after this epoch, and an
        // invalidation of its method from now on refuses the store.
        let epoch = {
            let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
            epochs.pending += 1;
            epochs.now
        };
        Err(MemoTicket(Some(Box::new((
            self.clone(),
            key,
            ttl,
            epoch,
            alive,
        )))))
    }

    fn invalidate(&self, key: ExportKey, methods: &[&str]) {
        let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        epochs.now += 1;
        self.invalidations
            .fetch_add(methods.len() as u64, Ordering::Relaxed);
        // Nothing stored (every store counts its bytes under this lock
        // first) and no reply being computed: nothing to mark stale, so a
        // cache nobody uses does not record every write of the process.
        if self.bytes.load(Ordering::Acquire) == 0 && epochs.pending == 0 {
            return;
        }
        let now = epochs.now;
        for m in methods {
            let k: Stale = (key.addr, key.interface, name_hash(m));
            if epochs.stale.len() >= self.max_stale && !epochs.stale.contains_key(&k) {
                // Record full: start over from an empty cache (every entry
                // is older than this invalidation anyway).
                epochs.stale.clear();
                epochs.floor = now;
                self.map.invalidate_all();
                return;
            }
            epochs.stale.insert(k, now);
        }
        drop(epochs);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: usize) -> ExportKey {
        ExportKey {
            addr,
            interface: TypeId::of::<u8>(),
        }
    }

    fn get(cache: &Arc<MemoCache>, addr: usize, method: &'static str, arg: u8) -> Option<Bytes> {
        let alive: Alive = Arc::new(|| true);
        let hour = Duration::from_secs(3600);
        match cache.lookup(key(addr), alive, method, Caller::default(), hour, &[arg]) {
            Ok(v) => Some(v),
            Err(ticket) => {
                ticket.store(&[arg]);
                None
            }
        }
    }

    #[test]
    fn invalidations_drop_only_their_methods_and_never_pile_up() {
        let cache = MemoCache::new(100, 1 << 20);
        for arg in 0..10 {
            assert!(get(&cache, 1, "get", arg).is_none(), "a first read misses");
            get(&cache, 1, "len", arg);
        }
        assert_eq!(get(&cache, 1, "get", 3).as_deref(), Some(&[3][..]));
        // A flood of invalidations of another object: the record of
        // invalidated methods stays under its bound, and reads of the
        // first object still hit (each read costs one lookup in it, not
        // one per invalidation).
        for other in 0..100_000 {
            cache.invalidate(key(1000 + other % 50), &["get"]);
        }
        let stale = cache.epochs.lock().unwrap().stale.len();
        assert!(stale <= 100, "{stale}");
        for arg in 0..10 {
            assert_eq!(get(&cache, 1, "get", arg).as_deref(), Some(&[arg][..]));
        }
        // Invalidating object 1's `get` drops those entries, not `len`'s.
        cache.invalidate(key(1), &["get"]);
        for arg in 0..10 {
            assert!(get(&cache, 1, "get", arg).is_none(), "stale: a miss");
            assert_eq!(get(&cache, 1, "len", arg).as_deref(), Some(&[arg][..]));
        }
        // Stored again after the invalidation: served again.
        assert_eq!(get(&cache, 1, "get", 4).as_deref(), Some(&[4][..]));
    }

    #[test]
    fn a_reply_computed_across_its_own_invalidation_is_not_stored_others_are() {
        let alive: Alive = Arc::new(|| true);
        let hour = Duration::from_secs(3600);
        let cache = MemoCache::new(100, 1 << 20);
        let lookup = |addr, method| {
            cache
                .lookup(
                    key(addr),
                    alive.clone(),
                    method,
                    Caller::default(),
                    hour,
                    &[7],
                )
                .expect_err("a miss")
        };
        // In flight while its own method of its object is invalidated: the
        // reply may predate the write, so it is not stored.
        let ticket = lookup(1, "get");
        cache.invalidate(key(1), &["get"]);
        ticket.store(&[7]);
        assert!(get(&cache, 1, "get", 7).is_none(), "not stored: a miss");
        // In flight while another object and another method are: stored.
        let ticket = lookup(2, "get");
        cache.invalidate(key(3), &["get"]);
        cache.invalidate(key(2), &["len"]);
        ticket.store(&[7]);
        assert_eq!(get(&cache, 2, "get", 7).as_deref(), Some(&[7][..]));
    }

    #[test]
    fn a_full_record_of_invalidated_methods_empties_the_cache_instead() {
        let cache = MemoCache::new(4, 1 << 20);
        get(&cache, 1, "get", 1);
        assert!(get(&cache, 1, "get", 1).is_some());
        // Five distinct objects invalidated: over the bound of 4 names.
        for other in 0..5 {
            cache.invalidate(key(100 + other), &["get"]);
        }
        {
            // Stale by the floor too, whatever moka's clock says.
            let epochs = cache.epochs.lock().unwrap();
            let k = Key {
                addr: 1,
                interface: TypeId::of::<u8>(),
                method: "get",
                caller: Caller::default(),
                args: Box::new([1]),
            };
            assert!(epochs.stale_since(&k) > 0 && epochs.stale.len() <= 4);
        }
        assert!(get(&cache, 1, "get", 1).is_none(), "emptied");
        assert!(get(&cache, 1, "get", 1).is_some(), "filled again");
    }
}
