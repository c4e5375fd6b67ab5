//! Client-side caching (`#[remote(cache(..))]`, `#[remote(invalidates(..))]`):
//! hits and misses counted at the server, expiry on tokio's clock, a
//! client's own writes, sessions as part of the key, bounded memory, and
//! the cache emptied with its connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_core::schema::CacheDef;
use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote};

/// A key-value store; `session` hands out one store per user.
#[remote]
pub trait Store {
    /// The value under `key`, prefixed with the store's user.
    #[remote(cache(ttl = "5s"))]
    async fn get(&self, key: String) -> Result<Option<String>, Error>;
    /// Always fails (errors are not cached).
    #[remote(cache(ttl = "5s"))]
    async fn fail(&self, key: String) -> Result<String, Error>;
    /// Writes `key`.
    #[remote(invalidates(get, blocking_get))]
    async fn put(&self, key: String, value: String) -> Result<(), Error>;
    /// `get`, as a blocking method.
    #[remote(cache(ttl = "1m"))]
    fn blocking_get(&self, key: String) -> Result<Option<String>, Error>;
    /// `n` bytes.
    #[remote(cache(ttl = "1h"))]
    async fn blob(&self, n: u32, tag: u64) -> Result<Vec<u8>, Error>;
    /// The store of `user` (a capability: never cached).
    async fn session(&self, user: String) -> Result<Remote<dyn Store>, Error>;
    /// Calls `w.changed(key)` on every later `put`, before `put` returns.
    async fn watch(&self, w: Remote<dyn Watcher>) -> Result<(), Error>;
}

/// A client's listener for writes made by others.
#[remote]
pub trait Watcher {
    /// `key` was written.
    async fn changed(&self, key: String) -> Result<(), Error>;
}

/// Drops the cached `get`s of one proxy when told of a write.
struct Invalidator(Remote<dyn Store>);

#[remote]
impl Watcher for Invalidator {
    async fn changed(&self, _key: String) -> Result<(), Error> {
        let h = self.0.handle().expect("a proxy");
        h.invalidate_cached(&["get"]);
        Ok(())
    }
}

#[derive(Default)]
struct Calls {
    get: AtomicUsize,
    fail: AtomicUsize,
    blob: AtomicUsize,
}

struct Mem {
    user: String,
    data: Arc<Mutex<HashMap<String, String>>>,
    calls: Arc<Calls>,
    watchers: Arc<Mutex<Vec<Remote<dyn Watcher>>>>,
}

impl Mem {
    fn read(&self, key: &str) -> Option<String> {
        self.calls.get.fetch_add(1, Ordering::SeqCst);
        let data = self.data.lock().unwrap();
        data.get(key).map(|v| format!("{}:{v}", self.user))
    }
}

#[remote]
impl Store for Mem {
    async fn get(&self, key: String) -> Result<Option<String>, Error> {
        Ok(self.read(&key))
    }
    async fn fail(&self, key: String) -> Result<String, Error> {
        self.calls.fail.fetch_add(1, Ordering::SeqCst);
        Err(Error::Unauthenticated(format!("no {key}")))
    }
    async fn put(&self, key: String, value: String) -> Result<(), Error> {
        self.data.lock().unwrap().insert(key.clone(), value);
        let watchers = self.watchers.lock().unwrap().clone();
        for w in watchers {
            w.changed(key.clone()).await?;
        }
        Ok(())
    }
    fn blocking_get(&self, key: String) -> Result<Option<String>, Error> {
        Ok(self.read(&key))
    }
    async fn blob(&self, n: u32, _tag: u64) -> Result<Vec<u8>, Error> {
        self.calls.blob.fetch_add(1, Ordering::SeqCst);
        Ok(vec![7; n as usize])
    }
    async fn session(&self, user: String) -> Result<Remote<dyn Store>, Error> {
        Ok(Remote::new(Arc::new(Mem {
            user,
            data: self.data.clone(),
            calls: self.calls.clone(),
            watchers: self.watchers.clone(),
        }) as Arc<dyn Store>))
    }
    async fn watch(&self, w: Remote<dyn Watcher>) -> Result<(), Error> {
        self.watchers.lock().unwrap().push(w);
        Ok(())
    }
}

/// A client connection to a served store, the server's end, and its counters.
async fn setup(limits: Limits) -> (Remote<dyn Store>, Connection, Connection, Arc<Calls>) {
    let mem = Arc::new(Mem {
        user: "root".into(),
        data: Arc::default(),
        calls: Arc::default(),
        watchers: Arc::default(),
    });
    connect(&mem, limits).await
}

/// A new client connection to `mem` (shared with earlier ones).
async fn connect(
    mem: &Arc<Mem>,
    limits: Limits,
) -> (Remote<dyn Store>, Connection, Connection, Arc<Calls>) {
    let calls = mem.calls.clone();
    let root = Remote::new(mem.clone() as Arc<dyn Store>);
    // Pushed invalidations wait long enough for a loaded machine.
    let patient = Limits {
        invalidation_ack_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let (client, server) = Connection::pair(
        ConnectionBuilder::new().limits(limits),
        ConnectionBuilder::new().limits(patient).serve(root),
    )
    .await
    .unwrap();
    (client.root::<dyn Store>(), client, server, calls)
}

#[tokio::test]
async fn a_repeated_call_is_a_hit_that_never_reaches_the_server() {
    let (store, conn, _server, calls) = setup(Limits::default()).await;
    store.put("k".into(), "v".into()).await.unwrap();
    assert_eq!(
        store.get("k".into()).await.unwrap().as_deref(),
        Some("root:v")
    );
    assert_eq!(
        store.get("k".into()).await.unwrap().as_deref(),
        Some("root:v")
    );
    assert_eq!(
        calls.get.load(Ordering::SeqCst),
        1,
        "the second get was a hit"
    );
    // Other arguments are another key.
    assert_eq!(store.get("x".into()).await.unwrap(), None);
    assert_eq!(calls.get.load(Ordering::SeqCst), 2);
    let s = conn.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 2, 2), "{s:?}");
    assert!(s.bytes > 0);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_their_ttl_on_tokios_clock() {
    let (store, _conn, _server, calls) = setup(Limits::default()).await;
    store.get("k".into()).await.unwrap();
    tokio::time::advance(Duration::from_millis(4_900)).await;
    store.get("k".into()).await.unwrap();
    assert_eq!(calls.get.load(Ordering::SeqCst), 1, "still fresh at 4.9 s");
    tokio::time::advance(Duration::from_millis(200)).await;
    store.get("k".into()).await.unwrap();
    assert_eq!(calls.get.load(Ordering::SeqCst), 2, "expired at 5.1 s");
}

#[tokio::test]
async fn a_clients_own_write_is_never_read_stale() {
    let (store, conn, _server, calls) = setup(Limits::default()).await;
    assert_eq!(store.get("k".into()).await.unwrap(), None);
    store.put("k".into(), "old".into()).await.unwrap();
    assert_eq!(
        store.get("k".into()).await.unwrap().as_deref(),
        Some("root:old")
    );
    store.put("k".into(), "new".into()).await.unwrap();
    assert_eq!(
        store.get("k".into()).await.unwrap().as_deref(),
        Some("root:new")
    );
    assert_eq!(calls.get.load(Ordering::SeqCst), 3);
    assert_eq!(
        conn.cache_stats().invalidations,
        4,
        "two puts, two methods each"
    );
}

/// Runs `f` on a plain thread (blocking proxies refuse runtime threads).
async fn off_runtime<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.expect("the thread panicked")
}

#[tokio::test]
async fn blocking_methods_are_cached_and_invalidated_too() {
    let (store, _conn, _server, calls) = setup(Limits::default()).await;
    let s = store.clone();
    let seen = off_runtime(move || {
        let a = s.blocking_get("k".into()).unwrap();
        let b = s.blocking_get("k".into()).unwrap();
        (a, b)
    })
    .await;
    assert_eq!(seen, (None, None));
    assert_eq!(calls.get.load(Ordering::SeqCst), 1);
    store.put("k".into(), "v".into()).await.unwrap();
    let s = store.clone();
    let after = off_runtime(move || s.blocking_get("k".into()).unwrap()).await;
    assert_eq!(after.as_deref(), Some("root:v"));
}

#[tokio::test]
async fn errors_are_not_cached() {
    let (store, conn, _server, calls) = setup(Limits::default()).await;
    for _ in 0..2 {
        assert!(store.fail("k".into()).await.is_err());
    }
    assert_eq!(calls.fail.load(Ordering::SeqCst), 2);
    assert_eq!(conn.cache_stats().entries, 0);
}

#[tokio::test]
async fn two_sessions_with_equal_arguments_never_share_an_entry() {
    let (store, conn, _server, calls) = setup(Limits::default()).await;
    store.put("k".into(), "v".into()).await.unwrap();
    let alice = store.session("alice".into()).await.unwrap();
    let bob = store.session("bob".into()).await.unwrap();
    assert_eq!(
        alice.get("k".into()).await.unwrap().as_deref(),
        Some("alice:v")
    );
    assert_eq!(bob.get("k".into()).await.unwrap().as_deref(), Some("bob:v"));
    assert_eq!(
        alice.get("k".into()).await.unwrap().as_deref(),
        Some("alice:v")
    );
    assert_eq!(bob.get("k".into()).await.unwrap().as_deref(), Some("bob:v"));
    assert_eq!(calls.get.load(Ordering::SeqCst), 2, "one miss per session");
    let s = conn.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (2, 2, 2), "{s:?}");
    // A write through one session invalidates that session's entries only.
    alice.put("k".into(), "w".into()).await.unwrap();
    assert_eq!(bob.get("k".into()).await.unwrap().as_deref(), Some("bob:v"));
    assert_eq!(
        alice.get("k".into()).await.unwrap().as_deref(),
        Some("alice:w")
    );
}

#[tokio::test]
async fn memory_stays_under_the_bound_under_a_flood_of_distinct_keys() {
    let limits = Limits {
        cache_max_entries: 50,
        cache_max_bytes: 64 << 10,
        ..Limits::default()
    };
    let (store, conn, _server, calls) = setup(limits).await;
    for tag in 0..2_000u64 {
        store.blob(1_000, tag).await.unwrap();
        if tag % 100 == 0 {
            let s = conn.cache_stats();
            assert!(s.bytes <= 64 << 10, "{s:?}");
            assert!(s.entries <= 50, "{s:?}");
        }
    }
    let s = conn.cache_stats();
    assert!(s.bytes <= 64 << 10 && s.entries <= 50, "{s:?}");
    assert!(s.evictions >= 1_900, "{s:?}");
    assert_eq!(calls.blob.load(Ordering::SeqCst), 2_000);
    // The same flood with few entries' worth of bytes: the byte bound bites.
    let few = Limits {
        cache_max_entries: 10_000,
        cache_max_bytes: 8 << 10,
        ..Limits::default()
    };
    let (store, conn, _server, _) = setup(few).await;
    for tag in 0..200u64 {
        store.blob(1_000, tag).await.unwrap();
    }
    let s = conn.cache_stats();
    assert!(s.bytes <= 8 << 10 && s.entries <= 8, "{s:?}");
}

#[tokio::test]
async fn a_lost_connection_empties_its_cache_and_serves_nothing_from_it() {
    let (store, conn, server, _calls) = setup(Limits::default()).await;
    store.get("k".into()).await.unwrap();
    assert_eq!(conn.cache_stats().entries, 1);
    server.close();
    let _ = conn.closed().await;
    assert_eq!(conn.cache_stats().entries, 0);
    assert!(matches!(
        store.get("k".into()).await,
        Err(Error::ConnectionLost(_))
    ));
}

#[test]
fn the_schema_lists_cached_methods_with_their_role() {
    let schema = remote_core::schema::collect();
    let store = schema
        .interfaces
        .values()
        .find(|i| i.name == "Store")
        .expect("Store in the schema");
    let role = |name: &str| {
        store
            .methods
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .cache
            .clone()
    };
    assert_eq!(role("get"), Some(CacheDef::Cached { ttl_ms: 5_000 }));
    assert_eq!(role("blob"), Some(CacheDef::Cached { ttl_ms: 3_600_000 }));
    assert_eq!(
        role("put"),
        Some(CacheDef::Invalidates {
            methods: vec!["get".into(), "blocking_get".into()]
        })
    );
    assert_eq!(role("session"), None);
}

#[tokio::test]
async fn a_write_by_one_client_invalidates_another_clients_entry_before_it_returns() {
    let mem = Arc::new(Mem {
        user: "root".into(),
        data: Arc::default(),
        calls: Arc::default(),
        watchers: Arc::default(),
    });
    let (writer, _wc, _ws, calls) = connect(&mem, Limits::default()).await;
    let (reader, rc, _rs, _) = connect(&mem, Limits::default()).await;
    let listener = Remote::new(Arc::new(Invalidator(reader.clone())) as Arc<dyn Watcher>);
    reader.watch(listener).await.unwrap();
    writer.put("k".into(), "old".into()).await.unwrap();
    assert_eq!(
        reader.get("k".into()).await.unwrap().as_deref(),
        Some("root:old")
    );
    assert_eq!(
        reader.get("k".into()).await.unwrap().as_deref(),
        Some("root:old")
    );
    assert_eq!(rc.cache_stats().hits, 1);
    // `put` returns after the reader's listener has run: the reader's next
    // read is fresh, with no waiting.
    writer.put("k".into(), "new".into()).await.unwrap();
    assert_eq!(
        reader.get("k".into()).await.unwrap().as_deref(),
        Some("root:new")
    );
    assert_eq!(calls.get.load(Ordering::SeqCst), 2);
    // Without a listener, the server's pushed invalidation does the same
    // (tests/cache_push.rs has more).
    let (other, oc, _os, _) = connect(&mem, Limits::default()).await;
    assert_eq!(
        other.get("k".into()).await.unwrap().as_deref(),
        Some("root:new")
    );
    writer.put("k".into(), "newer".into()).await.unwrap();
    assert_eq!(
        other.get("k".into()).await.unwrap().as_deref(),
        Some("root:newer")
    );
    assert_eq!(oc.cache_stats().hits, 0);
}

/// The owner's example (CACHING.md): a chat room's `range` cached, `push`
/// invalidating it.
#[remote]
pub trait Chat {
    /// Messages `start..end`.
    #[remote(cache(ttl = "5s"))]
    async fn range(&self, start: u64, end: u64) -> Result<Vec<String>, Error>;
    /// Appends a message; returns its index.
    #[remote(invalidates(range))]
    async fn push(&self, text: String) -> Result<u64, Error>;
}

#[derive(Default)]
struct Room {
    lines: Mutex<Vec<String>>,
    ranges: AtomicUsize,
}

#[remote]
impl Chat for Room {
    async fn range(&self, start: u64, end: u64) -> Result<Vec<String>, Error> {
        self.ranges.fetch_add(1, Ordering::SeqCst);
        let lines = self.lines.lock().unwrap();
        let end = (end as usize).min(lines.len());
        Ok(lines.get(start as usize..end).unwrap_or_default().to_vec())
    }
    async fn push(&self, text: String) -> Result<u64, Error> {
        let mut lines = self.lines.lock().unwrap();
        lines.push(text);
        Ok(lines.len() as u64 - 1)
    }
}

#[tokio::test]
async fn the_chat_rooms_range_is_cached_until_a_push() {
    let room = Arc::new(Room::default());
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(Remote::new(room.clone() as Arc<dyn Chat>)),
    )
    .await
    .unwrap();
    let chat = client.root::<dyn Chat>();
    chat.push("hello".into()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(chat.range(0, 10).await.unwrap(), ["hello"]);
    }
    assert_eq!(room.ranges.load(Ordering::SeqCst), 1);
    chat.push("world".into()).await.unwrap();
    assert_eq!(chat.range(0, 10).await.unwrap(), ["hello", "world"]);
    assert_eq!(room.ranges.load(Ordering::SeqCst), 2);
}
