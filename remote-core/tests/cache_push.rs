//! Invalidation pushed by the server (feature `invalidate`, PROTOCOL.md
//! §3.9): a write through one connection drops the entries cached for the
//! same object by every other connection before the write returns; a raw
//! peer that never acknowledges delays writes by at most
//! `invalidation_ack_timeout` and makes the server hold nothing; a peer
//! without the feature never gets one; sessions stay apart.

#[path = "support/pipe.rs"]
mod pipe;
#[path = "support/serving.rs"]
mod serving;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipe::{frame, kind, raw_peer};
use remote_core::proto::{encode, encode_invalidated, CallId, ObjectId};
use remote_core::{remote, Connection, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

/// A key-value store; `session` hands out one store per user, the same
/// one to every connection that asks for that user.
#[remote]
pub trait Kv {
    /// The value under `key`.
    #[remote(cache(ttl = "1h"))]
    async fn get(&self, key: String) -> Result<Option<String>, Error>;
    /// Writes `key`.
    #[remote(invalidates(get))]
    async fn put(&self, key: String, value: String) -> Result<(), Error>;
    /// The store of `user`.
    async fn session(&self, user: String) -> Result<Remote<dyn Kv>, Error>;
}

#[derive(Default)]
struct Mem {
    data: Mutex<HashMap<String, String>>,
    /// `get`s that reached this object's handler.
    gets: AtomicUsize,
    sessions: Mutex<HashMap<String, Arc<dyn Kv>>>,
}

#[remote]
impl Kv for Mem {
    async fn get(&self, key: String) -> Result<Option<String>, Error> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(self.data.lock().unwrap().get(&key).cloned())
    }
    async fn put(&self, key: String, value: String) -> Result<(), Error> {
        self.data.lock().unwrap().insert(key, value);
        Ok(())
    }
    async fn session(&self, user: String) -> Result<Remote<dyn Kv>, Error> {
        Ok(serving::named(&self.sessions, user, || {
            Arc::new(Mem::default())
        }))
    }
}

/// A client connected in memory to a connection serving `root`.
async fn client(root: &Arc<dyn Kv>, limits: Limits) -> (Remote<dyn Kv>, Connection, Connection) {
    let (c, s) = serving::in_memory(Remote::new(root.clone()), limits).await;
    (c.root::<dyn Kv>(), c, s)
}

/// Limits whose acknowledgement wait holds on a loaded machine.
fn patient() -> Limits {
    Limits {
        invalidation_ack_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

fn gets(mem: &Mem) -> usize {
    mem.gets.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_write_by_one_client_empties_another_clients_entry_before_it_returns() {
    let mem = Arc::new(Mem::default());
    let root: Arc<dyn Kv> = mem.clone();
    let (handle, a, b) = serving::two_clients(patient(), root.clone()).await;
    let (writer, reader) = (a.root::<dyn Kv>(), b.root::<dyn Kv>());
    writer.put("k".into(), "old".into()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            reader.get("k".into()).await.unwrap().as_deref(),
            Some("old")
        );
    }
    assert_eq!(gets(&mem), 1, "the second read was a hit");
    assert_eq!(b.cache_stats().hits, 1);
    // No listener: the server pushes the invalidation to B and waits for
    // B's acknowledgement before A's `put` returns.
    writer.put("k".into(), "new".into()).await.unwrap();
    assert_eq!(
        reader.get("k".into()).await.unwrap().as_deref(),
        Some("new")
    );
    assert_eq!(gets(&mem), 2, "B's read after the write was a miss");
    assert_eq!(b.cache_stats().invalidations, 1);
    // A write the server makes itself, through the explicit handle.
    mem.data.lock().unwrap().insert("k".into(), "local".into());
    assert_eq!(
        reader.get("k".into()).await.unwrap().as_deref(),
        Some("new")
    );
    let report = remote_core::cache::invalidate(&root, &["get"]).await;
    assert_eq!((report.notified, report.unacknowledged), (2, 0));
    assert_eq!(
        reader.get("k".into()).await.unwrap().as_deref(),
        Some("local")
    );
    assert_eq!(gets(&mem), 3);
    handle.shutdown(Duration::from_secs(5)).await;
}

/// Held by the tests that compare `push_stats()` (process-wide counters)
/// before and after their writes: run beside another, a test counted its
/// writes too.
static PUSH_STATS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_peer_that_never_acknowledges_delays_a_write_by_at_most_the_bound() {
    let _stats = PUSH_STATS.lock().await;
    let mem = Arc::new(Mem::default());
    let root: Arc<dyn Kv> = mem.clone();
    let bound = Duration::from_millis(200);
    let limits = Limits {
        invalidation_ack_timeout: bound,
        ..Limits::default()
    };
    let (writer, _wc, _ws) = client(&root, limits.clone()).await;
    let (server_end, mut pr, _pw) =
        raw_peer(Remote::new(root.clone()), limits, vec!["invalidate"]).await;
    // The peer reads everything and answers nothing.
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let reader = tokio::spawn(async move {
        while let Some(f) = frame(&mut pr).await {
            if kind(&f) == 10 {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let before = remote_core::cache::push_stats();
    let started = tokio::time::Instant::now();
    writer.put("k".into(), "1".into()).await.unwrap();
    let first = started.elapsed();
    assert!(first >= bound, "the write waited for the acknowledgement");
    let after = remote_core::cache::push_stats();
    assert!(after.lagged > before.lagged, "{before:?} -> {after:?}");
    // Lagging now: later writes are not held up by this peer.
    const WRITES: usize = 300;
    for i in 0..WRITES {
        writer.put("k".into(), i.to_string()).await.unwrap();
    }
    let end = remote_core::cache::push_stats();
    assert!(
        end.not_waited >= after.not_waited + WRITES as u64,
        "{after:?} -> {end:?}"
    );
    // Every push reached the peer, and nothing is left queued for it.
    assert!(support::eventually(60, || received.load(Ordering::SeqCst) == WRITES + 1).await);
    assert!(support::eventually(60, || server_end.queued_output_bytes() == 0).await);
    assert!(!server_end.is_closed(), "a slow peer is never disconnected");
    reader.abort();
}

#[tokio::test]
async fn an_acknowledgement_of_an_invalidation_never_sent_is_a_protocol_violation() {
    let root: Arc<dyn Kv> = Arc::new(Mem::default());
    let (server_end, mut pr, mut pw) = raw_peer(
        Remote::new(root.clone()),
        Limits::default(),
        vec!["invalidate"],
    )
    .await;
    assert_eq!(
        kind(&frame(&mut pr).await.unwrap()),
        0,
        "the server's hello"
    );
    pw.write_all(&encode_invalidated(7)).await.unwrap();
    let goodbye = frame(&mut pr).await.unwrap();
    assert_eq!(kind(&goodbye), 6);
    let text = String::from_utf8_lossy(&goodbye);
    assert!(
        text.contains("acknowledgement of invalidation 7, but only 0 were sent"),
        "{text}"
    );
    assert!(support::eventually(60, || server_end.is_closed()).await);
}

#[tokio::test]
async fn a_peer_without_the_feature_gets_no_push_and_its_connection_still_works() {
    let _stats = PUSH_STATS.lock().await;
    let mem = Arc::new(Mem::default());
    let root: Arc<dyn Kv> = mem.clone();
    let (writer, _wc, _ws) = client(&root, Limits::default()).await;
    let (_server_end, mut pr, mut pw) = raw_peer(
        Remote::new(root.clone()),
        Limits::default(),
        vec!["keepalive"],
    )
    .await;
    assert_eq!(
        kind(&frame(&mut pr).await.unwrap()),
        0,
        "the server's hello"
    );
    // Not even waited for: it is not a holder.
    let before = remote_core::cache::push_stats();
    writer.put("k".into(), "v".into()).await.unwrap();
    // Its connection still works, and the reply is the next frame it gets.
    let mut call = encode::begin(64);
    encode::call_head(&mut call, CallId(1), ObjectId::ROOT, "get", 10_000);
    call.extend_from_slice(&[0x91, 0xa1, b'k']);
    encode::finish(&mut call);
    pw.write_all(&call).await.unwrap();
    let reply = frame(&mut pr).await.unwrap();
    assert_eq!(kind(&reply), 2, "a return, no invalidate before it");
    assert!(reply.ends_with(&[0xa1, b'v']), "{reply:?}");
    let after = remote_core::cache::push_stats();
    assert_eq!(after.not_waited, before.not_waited);
}

/// An interface with no cached method: no peer caches anything of it.
#[remote]
pub trait Plain {
    /// Always 7.
    async fn seven(&self) -> Result<u32, Error>;
}

struct Seven;

#[remote]
impl Plain for Seven {
    async fn seven(&self) -> Result<u32, Error> {
        Ok(7)
    }
}

/// Hands out one object of each interface.
#[remote]
pub trait Hub {
    async fn plain(&self) -> Result<Remote<dyn Plain>, Error>;
    async fn kv(&self) -> Result<Remote<dyn Kv>, Error>;
}

struct Objects(Arc<dyn Plain>, Arc<dyn Kv>);

#[remote]
impl Hub for Objects {
    async fn plain(&self) -> Result<Remote<dyn Plain>, Error> {
        Ok(Remote::new(self.0.clone()))
    }
    async fn kv(&self) -> Result<Remote<dyn Kv>, Error> {
        Ok(Remote::new(self.1.clone()))
    }
}

#[tokio::test]
async fn objects_whose_interface_has_no_cached_method_are_not_indexed_for_pushes() {
    use remote_core::Interface;
    const {
        assert!(!<dyn Plain as Interface>::CACHED);
        assert!(<dyn Kv as Interface>::CACHED);
    }
    let (plain, kv): (Arc<dyn Plain>, Arc<dyn Kv>) = (Arc::new(Seven), Arc::new(Mem::default()));
    let hub: Arc<dyn Hub> = Arc::new(Objects(plain.clone(), kv.clone()));
    let (c, _s) = serving::in_memory(Remote::new(hub), patient()).await;
    let hub = c.root::<dyn Hub>();
    let (held_plain, held_kv) = (hub.plain().await.unwrap(), hub.kv().await.unwrap());
    assert_eq!(held_plain.seven().await.unwrap(), 7);
    // The peer holds both; only the one it may cache from is pushed to
    // (each export of it took the index's shard lock: a cost per call).
    let report = remote_core::cache::invalidate(&kv, &["get"]).await;
    assert_eq!((report.notified, report.unacknowledged), (1, 0));
    let report = remote_core::cache::invalidate(&plain, &["seven"]).await;
    assert_eq!((report.notified, report.unacknowledged), (0, 0));
    drop((held_plain, held_kv));
}

#[tokio::test]
async fn invalidating_one_session_leaves_another_sessions_entries() {
    let root: Arc<dyn Kv> = Arc::new(Mem::default());
    let (writer, _wc, _ws) = client(&root, patient()).await;
    let (reader, rc, _rs) = client(&root, patient()).await;
    let (alice_w, alice, bob) = (
        writer.session("alice".into()).await.unwrap(),
        reader.session("alice".into()).await.unwrap(),
        reader.session("bob".into()).await.unwrap(),
    );
    alice_w.put("k".into(), "a1".into()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(alice.get("k".into()).await.unwrap().as_deref(), Some("a1"));
        assert_eq!(bob.get("k".into()).await.unwrap(), None);
    }
    let s = rc.cache_stats();
    assert_eq!((s.hits, s.misses), (2, 2), "{s:?}");
    alice_w.put("k".into(), "a2".into()).await.unwrap();
    assert_eq!(alice.get("k".into()).await.unwrap().as_deref(), Some("a2"));
    assert_eq!(bob.get("k".into()).await.unwrap(), None);
    let s = rc.cache_stats();
    assert_eq!(
        (s.hits, s.misses, s.invalidations),
        (3, 3, 1),
        "alice's entry was dropped, bob's was a hit: {s:?}"
    );
}

#[tokio::test]
async fn a_shared_vecs_pages_stay_cached_until_any_push() {
    use remote_core::collections::{RemoteList, SharedVec};
    let list = SharedVec::<String>::new();
    let pair = || async {
        let (c, s) = serving::in_memory(list.remote(), patient()).await;
        (c.root::<dyn RemoteList<String>>(), c, s)
    };
    let (writer, wc, _ws) = pair().await;
    let (reader, rc, _rs) = pair().await;
    writer.push("hello".into()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(reader.range(0, 10).await.unwrap(), ["hello"]);
    }
    let s = rc.cache_stats();
    assert_eq!((s.misses, s.hits), (1, 2), "{s:?}");
    // A push by another client: the reader's next page is fresh.
    writer.push("world".into()).await.unwrap();
    assert_eq!(reader.range(0, 10).await.unwrap(), ["hello", "world"]);
    // The writer's own pages too.
    assert_eq!(writer.range(0, 10).await.unwrap(), ["hello", "world"]);
    writer.push("again".into()).await.unwrap();
    assert_eq!(writer.range(0, 10).await.unwrap().len(), 3);
    assert_eq!(wc.cache_stats().hits, 0);
    // A push made by the server itself, through the trait.
    assert_eq!(reader.range(0, 10).await.unwrap().len(), 3);
    list.push("local".into()).await.unwrap();
    assert_eq!(reader.range(0, 10).await.unwrap().len(), 4);
    let s = rc.cache_stats();
    assert_eq!((s.misses, s.hits), (4, 2), "{s:?}");
}
