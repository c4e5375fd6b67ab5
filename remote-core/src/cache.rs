//! Client-side caching of method results (see CACHING.md).
//!
//! `#[remote(cache(ttl = "5s"))]` on a method makes its proxy keep each
//! successful result for `ttl`, keyed by the object the proxy targets, the
//! method and the encoded arguments. The cache belongs to the connection:
//! two objects (two users' sessions) never share an entry, and a lost
//! connection empties it. `#[remote(invalidates(get, list))]` on a write
//! method drops the entries of the named methods on the same object when
//! the write's reply arrives, before the caller sees it, so a client never
//! reads its own write stale.
//!
//! Memory is bounded per connection by [`Limits::cache_max_entries`] and
//! [`Limits::cache_max_bytes`](crate::Limits::cache_max_bytes) (a `moka`
//! cache with a weigher), and on a server for all its connections together
//! by [`Limits::server_cache_max_bytes`](crate::Limits::server_cache_max_bytes).
//! Expiry is checked against tokio's clock, so tests
//! can drive it with a paused runtime.
//!
//! [`Limits::cache_max_entries`]: crate::Limits::cache_max_entries
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
//!
//! #[remote]
//! trait Profile {
//!     #[remote(cache(ttl = "30s"))]
//!     async fn name(&self) -> Result<String, Error>;
//!     #[remote(invalidates(name))]
//!     async fn rename(&self, to: String) -> Result<(), Error>;
//! }
//! struct Me(Mutex<String>);
//! #[remote]
//! impl Profile for Me {
//!     async fn name(&self) -> Result<String, Error> {
//!         Ok(self.0.lock().unwrap().clone())
//!     }
//!     async fn rename(&self, to: String) -> Result<(), Error> {
//!         *self.0.lock().unwrap() = to;
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> remote_core::Result<()> {
//!     tokio::runtime::Runtime::new()?.block_on(async {
//!         let me: Remote<dyn Profile> = Remote::new(Arc::new(Me(Mutex::new("ann".into()))));
//!         let (client, _server) =
//!             Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(me)).await?;
//!         let profile = client.root::<dyn Profile>();
//!         assert_eq!(profile.name().await?, "ann");
//!         profile.rename("bo".into()).await?; // drops the cached name
//!         assert_eq!(profile.name().await?, "bo"); // never the stale "ann"
//!         assert_eq!(client.cache_stats().hits, 0);
//!         assert_eq!(profile.name().await?, "bo");
//!         assert_eq!(client.cache_stats().hits, 1);
//!         Ok(())
//!     })
//! }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rt::time::Instant;
use bytes::Bytes;

use crate::codec;
use crate::proto::ObjectId;
use crate::weighed::{weighed, Weighed};

pub use crate::driver::invalidate::{invalidate, push_stats, InvalidationReport, PushStats};
pub use crate::memo::MemoStats;

/// How a method takes part in caching; generated code passes a `'static`
/// one to [`Handle::call_with`](crate::Handle::call_with).
#[derive(Debug)]
pub enum CacheRole {
    /// Successful results are kept for `ttl`.
    Cached {
        /// How long an entry is served, in milliseconds.
        ttl_ms: u64,
    },
    /// A reply to this method drops the entries of these methods (wire
    /// names) on the same object.
    Invalidates(&'static [&'static str]),
}

/// Counters of one connection's cache.
///
/// ```
/// use std::sync::Arc;
/// use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
///
/// #[remote]
/// trait Prices {
///     #[remote(cache(ttl = "60s"))]
///     async fn price(&self, item: String) -> Result<u64, Error>;
/// }
/// struct Shop;
/// #[remote]
/// impl Prices for Shop {
///     async fn price(&self, item: String) -> Result<u64, Error> {
///         Ok(item.len() as u64)
///     }
/// }
///
/// fn main() -> remote_core::Result<()> {
///     tokio::runtime::Runtime::new()?.block_on(async {
///         let shop: Remote<dyn Prices> = Remote::new(Arc::new(Shop));
///         let (client, _server) =
///             Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(shop))
///                 .await?;
///         let prices = client.root::<dyn Prices>();
///         assert_eq!(prices.price("tea".into()).await?, 3); // asks the server
///         assert_eq!(prices.price("tea".into()).await?, 3); // from the cache
///         let stats = client.cache_stats();
///         assert_eq!((stats.misses, stats.hits, stats.entries), (1, 1, 1));
///         Ok(())
///     })
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls to a cached method that went to the peer.
    pub misses: u64,
    /// Entries dropped to stay under the entry or byte bound.
    pub evictions: u64,
    /// Methods invalidated on an object (one per name per write).
    pub invalidations: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes of keys and values held now.
    pub bytes: u64,
}

#[derive(Debug, Hash, PartialEq, Eq)]
struct Key {
    object: u32,
    method: &'static str,
    /// Bumped by each invalidation of (object, method): a reply that was
    /// in flight across an invalidation is stored under the old version,
    /// where no lookup finds it.
    version: u64,
    args: Box<[u8]>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    /// What the reply it came from weighed in the memory budget, if it
    /// was heavy (0 if light): what a hit counts while held.
    weight: usize,
    expires: Instant,
}

/// One connection's cache.
pub(crate) struct ClientCache {
    map: moka::sync::Cache<Key, Entry>,
    /// The version of each (object, method) looked up, while the object
    /// is imported ([`Versions`]).
    versions: Mutex<Versions>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
    invalidations: AtomicU64,
    bytes: Arc<AtomicU64>,
    /// The bound on `bytes`.
    max_bytes: usize,
    /// On a server, the bound its connections' caches share
    /// (`server_cache_max_bytes`).
    pooled: Option<crate::weighed::Pooled>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("stats", &self.stats())
            .finish()
    }
}

/// What an entry counts against the cache's bounds: its key's and value's
/// bytes, and [`ENTRY_OVERHEAD`].
fn size_of(k: &Key, v: &Entry) -> u64 {
    (k.args.len() + v.value.len() + ENTRY_OVERHEAD) as u64
}

/// What an entry holds besides its bytes: the map's node and key, and its
/// (object, method)'s version record. Counted as bytes alone, 10,000
/// entries of a few bytes each held 5.7 MB per connection against 30 KB
/// counted in `server_cache_max_bytes` (a red-team pass).
pub(crate) const ENTRY_OVERHEAD: usize = 320;

/// The version of each (object, method) looked up while the object is
/// imported. A version is a value of `clock`, which every new record and
/// every bump advances: a record forgotten with its object (the peer
/// may reuse the id) and made again starts past every version it had, so
/// a reply in flight for the old object is stored where no lookup finds
/// it. (Kept, bumped, for every object ever imported, records grew by
/// 291 bytes for each fresh id a peer picked, for the connection's life:
/// a red-team pass.)
#[derive(Debug, Default)]
struct Versions {
    of: HashMap<u32, HashMap<String, u64>>,
    clock: u64,
}

impl Versions {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// A miss to be filled when the reply arrives.
#[derive(Debug)]
pub(crate) struct Ticket {
    key: Key,
    ttl: Duration,
}

/// What a cached method's call does.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Answered: the encoded result, and its reply's weight if heavy
    /// (what a hit counts while held: `driver/cached.rs`).
    Hit(Bytes, usize),
    /// Go to the peer, then store the reply.
    Miss(Ticket),
}

impl ClientCache {
    /// A cache within `max_entries` and `max_bytes`, and within `pool`
    /// together with the others of the pool, if given.
    pub(crate) fn new(
        max_entries: usize,
        max_bytes: usize,
        pool: Option<Arc<crate::weighed::Pool>>,
    ) -> Self {
        let Weighed {
            map,
            evictions,
            bytes,
            pooled,
        } = weighed(max_entries, max_bytes, size_of, pool);
        ClientCache {
            map,
            versions: Mutex::new(Versions::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
            invalidations: AtomicU64::new(0),
            bytes,
            max_bytes,
            pooled,
        }
    }

    /// The current version of (object, method), recorded (at 0) if it was
    /// never looked up: pushed invalidations bump only recorded ones.
    fn version(&self, object: u32, method: &str) -> u64 {
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = v.of.get(&object).and_then(|m| m.get(method)) {
            return *n;
        }
        let n = v.tick();
        v.of.entry(object).or_default().insert(method.to_owned(), n);
        n
    }

    /// Looks a call up; `None` when its arguments cannot be a key (they
    /// hold a reference): such a call is not cached.
    pub(crate) fn lookup(
        &self,
        object: ObjectId,
        method: &'static str,
        ttl: Duration,
        args: &dyn codec::Encode,
    ) -> Option<Lookup> {
        let args = codec::encode_detached_dyn(args).ok()?.into_boxed_slice();
        let key = Key {
            object: object.0,
            method,
            version: self.version(object.0, method),
            args,
        };
        if let Some(e) = self.map.get(&key) {
            if Instant::now() < e.expires {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(Lookup::Hit(e.value, e.weight));
            }
            self.map.invalidate(&key);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Some(Lookup::Miss(Ticket { key, ttl }))
    }

    /// Stores the encoded result of a successful reply weighing `weight`
    /// if heavy (the caller checks that it holds no reference).
    pub(crate) fn store(&self, ticket: Ticket, value: &[u8], weight: usize) {
        // Copied: a slice would keep the whole received frame alive.
        let value = Bytes::copy_from_slice(value);
        let entry = Entry {
            value,
            weight,
            expires: Instant::now() + ticket.ttl,
        };
        // A replaced entry reaches the listener (as `Replaced`), which
        // counts its bytes out.
        let size = size_of(&ticket.key, &entry);
        crate::weighed::insert(
            &self.map,
            &self.bytes,
            self.max_bytes,
            self.pooled.as_ref(),
            (ticket.key, entry, size),
        );
    }

    /// Drops the entries of `methods` on `object`.
    pub(crate) fn invalidate(&self, object: ObjectId, methods: &[&str]) {
        self.invalidations
            .fetch_add(methods.len() as u64, Ordering::Relaxed);
        self.drop_methods(object, methods);
    }

    /// Bumps the versions of `methods` on `object`: their entries become
    /// unreachable at once (a lookup builds its key with the new version)
    /// and are evicted as the least useful entries as the cache fills, or
    /// dropped when it is emptied. No moka predicate is registered: each
    /// would stay, evaluated by every read and housekeeping scan, until a
    /// scan of the whole cache finished, so another client's flood of
    /// writes (pushed here as invalidations) would grow this cache's memory
    /// and read cost with every write.
    fn drop_methods(&self, object: ObjectId, methods: &[&str]) {
        let mut guard = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        let v = &mut *guard;
        let clock = &mut v.clock;
        // Only names looked up have entries (and a lookup in flight has
        // made its record): others make none (a record each for names
        // never looked up grew the root's by 65 bytes a name for the
        // connection's life, a red-team pass).
        if let Some(per_method) = v.of.get_mut(&object.0) {
            for m in methods {
                if let Some(n) = per_method.get_mut(*m) {
                    *clock += 1;
                    *n = *clock;
                }
            }
        }
    }

    /// Drops the entries of `methods` on `object` named by the peer (a
    /// pushed invalidation): only (object, method) pairs this cache has
    /// looked up are bumped, so a peer's names cannot grow its bookkeeping.
    pub(crate) fn invalidate_known(&self, object: ObjectId, methods: &[&str]) {
        let known: Vec<&str> = {
            let v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            let Some(per_method) = v.of.get(&object.0) else {
                return;
            };
            methods
                .iter()
                .copied()
                .filter(|m| per_method.contains_key(*m))
                .collect()
        };
        if !known.is_empty() {
            self.invalidate(object, &known);
        }
    }

    /// Forgets everything about `object` (its import was released: the
    /// peer may reuse the id for another object).
    pub(crate) fn forget_object(&self, object: ObjectId) {
        // Removed: a record made again starts past every version this one
        // had ([`Versions`]), so its entries and a reply in flight for the
        // old object stay unreachable.
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        v.of.remove(&object.0);
    }

    /// Empties the cache (the connection is gone, or its owner asks).
    pub(crate) fn clear(&self) {
        self.map.invalidate_all();
        self.map.run_pending_tasks();
    }

    /// The counters, after moka's pending evictions have run.
    pub(crate) fn stats(&self) -> CacheStats {
        self.map.run_pending_tasks();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries: self.map.entry_count(),
            bytes: self.bytes.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(c: &ClientCache) -> usize {
        let v = c.versions.lock().unwrap();
        v.of.values().map(HashMap::len).sum()
    }

    /// A peer's `invalidate` names cannot grow the cache's bookkeeping:
    /// only (object, method) pairs this side looked up are bumped.
    #[test]
    fn pushed_names_never_cached_are_ignored() {
        let c = ClientCache::new(10, 1 << 10, None);
        let ttl = Duration::from_secs(60);
        let Some(Lookup::Miss(t)) = c.lookup(ObjectId(1), "get", ttl, &("k",)) else {
            panic!("expected a miss");
        };
        c.store(t, &[0x01], 0);
        assert_eq!(names(&c), 1);
        let junk: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
        let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
        c.invalidate_known(ObjectId(1), &junk);
        c.invalidate_known(ObjectId(2), &["get"]);
        assert_eq!(names(&c), 1);
        assert!(matches!(
            c.lookup(ObjectId(1), "get", ttl, &("k",)),
            Some(Lookup::Hit(..))
        ));
        c.invalidate_known(ObjectId(1), &["get"]);
        assert!(matches!(
            c.lookup(ObjectId(1), "get", ttl, &("k",)),
            Some(Lookup::Miss(_))
        ));
        assert_eq!(c.stats().invalidations, 1);
    }

    /// A released object's record goes; a reply that was in flight for it
    /// is stored where no lookup finds it, once its id names another
    /// object too.
    #[test]
    fn a_released_objects_record_goes_and_its_late_reply_is_unreachable() {
        let c = ClientCache::new(10, 1 << 12, None);
        let ttl = Duration::from_secs(60);
        let Some(Lookup::Miss(late)) = c.lookup(ObjectId(1), "get", ttl, &("k",)) else {
            panic!("expected a miss");
        };
        c.forget_object(ObjectId(1));
        assert_eq!(names(&c), 0);
        // The id names another object now; the old object's reply lands.
        let Some(Lookup::Miss(_)) = c.lookup(ObjectId(1), "get", ttl, &("k",)) else {
            panic!("expected a miss");
        };
        c.store(late, &[0x01], 0);
        assert!(matches!(
            c.lookup(ObjectId(1), "get", ttl, &("k",)),
            Some(Lookup::Miss(_))
        ));
        assert_eq!(names(&c), 1);
    }

    /// Invalidating names never looked up makes no record (a record each
    /// grew a root's bookkeeping for the connection's life).
    #[test]
    fn invalidating_names_never_looked_up_makes_no_record() {
        let c = ClientCache::new(10, 1 << 12, None);
        let names_: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        let names_: Vec<&str> = names_.iter().map(String::as_str).collect();
        c.invalidate(ObjectId::ROOT, &names_);
        assert_eq!(names(&c), 0);
        let ttl = Duration::from_secs(60);
        let Some(Lookup::Miss(t)) = c.lookup(ObjectId::ROOT, "m1", ttl, &()) else {
            panic!("expected a miss");
        };
        c.store(t, &[0x01], 0);
        c.invalidate(ObjectId::ROOT, &names_);
        assert_eq!(names(&c), 1);
        assert!(matches!(
            c.lookup(ObjectId::ROOT, "m1", ttl, &()),
            Some(Lookup::Miss(_))
        ));
    }
}
