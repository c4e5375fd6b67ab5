//! `codec::held_weight` decodes a copy of a value this side holds through
//! the weighing deserializer in a measuring mode (`weigh/measure.rs`),
//! with no connection lent: serde's buffered types (untagged, internally
//! tagged, flattened, nested), values holding references (decoded outside
//! a connection: they fail), a measurement stopped by the bounds on
//! tries, a `Deserialize` that panics midway; and a real weighed dispatch
//! decode on the same thread after each (a `current_thread` runtime: the
//! server's dispatch runs on the test's thread). From a review.

#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use remote_core::collections::{on_change, RemoteMap, SharedMap};
use remote_core::{remote, Error, Limits, Remote};

#[remote]
pub trait Ping {
    async fn ping(&self) -> Result<u32, Error>;
}

struct Pong;

#[remote]
impl Ping for Pong {
    async fn ping(&self) -> Result<u32, Error> {
        Ok(7)
    }
}

#[derive(Debug, Clone, remote_core::Wire)]
#[serde(tag = "kind")]
pub enum Internal {
    Nums { v: Vec<u64> },
    Name { s: String },
}

#[derive(Debug, Clone, remote_core::Wire)]
pub struct Extra {
    pub a: u32,
    pub list: Vec<Option<[u64; 4]>>,
}

#[derive(Debug, Clone, remote_core::Wire)]
pub struct Flat {
    pub id: u32,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Untagged, holding internally tagged, flattened, nested untagged values,
/// and references.
#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Mixed {
    Num(i64),
    Text(String),
    Tagged(Internal),
    Flat(Flat),
    Ref(Remote<dyn Ping>),
    RefAndList {
        r: Remote<dyn Ping>,
        list: Vec<Option<[u64; 32]>>,
    },
    List(Vec<Mixed>),
}

/// A plain struct holding a reference (no buffer).
#[derive(Debug, Clone, remote_core::Wire)]
pub struct WithRef {
    pub list: Vec<Option<[u64; 32]>>,
    pub r: Remote<dyn Ping>,
    pub inner: Option<Box<Mixed>>,
}

static PANIC: AtomicBool = AtomicBool::new(false);

fn maybe_boom<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = <u32 as serde::Deserialize>::deserialize(d)?;
    if PANIC.load(SeqCst) {
        panic!("rv3: Deserialize panics midway");
    }
    Ok(v)
}

#[derive(Debug, Clone, remote_core::Wire)]
pub struct Boomy {
    #[serde(deserialize_with = "maybe_boom")]
    pub x: u32,
}

/// A value whose decode panics under several open buffered decodes.
#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Bomb {
    Deep(Vec<Bomb>),
    Tagged(Tag),
}

#[derive(Debug, Clone, remote_core::Wire)]
#[serde(tag = "t")]
pub enum Tag {
    B(Boomy),
}

/// serde tries `Fail` (decoding all the children) before `Ok` at each
/// level: nested, the tries grow as Fibonacci's numbers.
#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Fib {
    Fail(Vec<Fib>, u8),
    Ok(Vec<Fib>),
}

fn fib(depth: usize) -> Fib {
    let mut v = Fib::Ok(vec![]);
    for _ in 0..depth {
        v = Fib::Ok(vec![v]);
    }
    v
}

fn mixed_values(r: &Remote<dyn Ping>) -> Vec<Mixed> {
    vec![
        Mixed::Num(1),
        Mixed::Text("x".repeat(100)),
        Mixed::Tagged(Internal::Nums { v: vec![1; 1000] }),
        Mixed::Tagged(Internal::Name { s: "n".into() }),
        Mixed::Flat(Flat {
            id: 1,
            extra: Extra {
                a: 2,
                list: vec![None; 500],
            },
        }),
        Mixed::Ref(r.clone()),
        Mixed::RefAndList {
            r: r.clone(),
            list: vec![None; 100],
        },
        Mixed::List(vec![
            Mixed::Ref(r.clone()),
            Mixed::List(vec![Mixed::Tagged(Internal::Nums { v: vec![3; 10] })]),
            Mixed::Flat(Flat {
                id: 3,
                extra: Extra {
                    a: 4,
                    list: vec![Some([1; 4]); 10],
                },
            }),
        ]),
    ]
}

/// A map served to an in-memory client that subscribes; returns the map,
/// the client's view, the delivered-count and the connections.
async fn subscribed<V: remote_core::Wire + Clone + Sync>() -> (
    Arc<SharedMap<u32, V>>,
    Remote<dyn RemoteMap<u32, V>>,
    Arc<AtomicUsize>,
    (remote_core::Connection, remote_core::Connection),
) {
    let map = SharedMap::<u32, V>::new();
    let (client, server) = serving::in_memory(map.remote(), Limits::default()).await;
    let remote = client.root::<dyn RemoteMap<u32, V>>();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    remote
        .subscribe(on_change(move |_k: u32, _v: Option<V>| {
            g.fetch_add(1, SeqCst);
        }))
        .await
        .unwrap();
    (map, remote, got, (client, server))
}

async fn wait_for(got: &AtomicUsize, n: usize) -> usize {
    for _ in 0..200 {
        if got.load(SeqCst) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got.load(SeqCst)
}

/// Local inserts (measured on this thread, no connection lent) of every
/// kind of buffered value, some holding references; then the peer's
/// inserts of the same kinds, decoded weighed on this same thread.
#[tokio::test(flavor = "current_thread")]
async fn buffered_values_and_references_measure_outside_a_connection() {
    let (map, remote, got, _conns) = subscribed::<Mixed>().await;
    let r: Remote<dyn Ping> = Remote::new(Arc::new(Pong));
    let values = mixed_values(&r);
    let n = values.len();
    for (i, v) in values.into_iter().enumerate() {
        RemoteMap::insert(&*map, i as u32, v).await.unwrap();
    }
    assert_eq!(wait_for(&got, n).await, n, "every local change delivered");
    // The peer's inserts: a weighed dispatch decode on this thread (the
    // references are the client's own exports, decoded as imports).
    let values = mixed_values(&r);
    for (i, v) in values.into_iter().enumerate() {
        remote.insert(100 + i as u32, v).await.unwrap();
    }
    assert_eq!(
        wait_for(&got, 2 * n).await,
        2 * n,
        "every remote change delivered"
    );
    assert_eq!(map.snapshot().len(), 2 * n);
}

#[tokio::test(flavor = "current_thread")]
async fn a_plain_struct_with_a_reference_measures_outside_a_connection() {
    let (map, remote, got, _conns) = subscribed::<WithRef>().await;
    let r: Remote<dyn Ping> = Remote::new(Arc::new(Pong));
    let v = WithRef {
        list: vec![None; 10],
        r: r.clone(),
        inner: Some(Box::new(Mixed::List(vec![
            Mixed::Num(1),
            Mixed::Ref(r.clone()),
        ]))),
    };
    RemoteMap::insert(&*map, 1, v.clone()).await.unwrap();
    remote.insert(2, v).await.unwrap();
    assert_eq!(wait_for(&got, 2).await, 2);
}

/// A measurement stopped by the bound on tries (a nested untagged value
/// whose tries grow as Fibonacci's numbers) ends at once, and leaves the
/// thread's weighing at rest: the peer's call with a buffered argument,
/// decoded weighed on this thread next, is not refused.
#[tokio::test(flavor = "current_thread")]
async fn a_stopped_measurement_leaves_the_thread_clean() {
    let (map, remote, got, _conns) = subscribed::<Fib>().await;
    let t = Instant::now();
    RemoteMap::insert(&*map, 1, fib(40)).await.unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "measuring took {took:?}");
    // Honest buffered values from the peer, decoded weighed here, are not
    // refused. (The subscriber itself refuses the change of `fib(40)` by
    // the same bound, and is dropped: not counted here.)
    for i in 0..5 {
        remote.insert(10 + i, fib(6)).await.unwrap();
    }
    drop(got);
    assert_eq!(map.snapshot().len(), 6);
    // A fresh subscriber gets the next measured changes.
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    remote
        .subscribe(on_change(move |_k: u32, _v: Option<Fib>| {
            g.fetch_add(1, SeqCst);
        }))
        .await
        .unwrap();
    for i in 0..3 {
        RemoteMap::insert(&*map, 20 + i, fib(6)).await.unwrap();
    }
    remote.insert(30, fib(6)).await.unwrap();
    assert_eq!(wait_for(&got, 4).await, 4);
}

/// A `Deserialize` that panics in the middle of a measurement (under
/// open buffered decodes): the panic reaches the local insert (user code),
/// and the thread's weighing is left at rest for the next decodes.
#[tokio::test(flavor = "current_thread")]
async fn a_panic_in_a_measurement_leaves_the_thread_clean() {
    let (map, remote, got, _conns) = subscribed::<Bomb>().await;
    let bomb = Bomb::Deep(vec![Bomb::Deep(vec![Bomb::Tagged(Tag::B(Boomy { x: 1 }))])]);
    PANIC.store(true, SeqCst);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RemoteMap::insert(&*map, 1, bomb.clone()).now_or_never()
    }));
    PANIC.store(false, SeqCst);
    assert!(panicked.is_err(), "the measurement's Deserialize panicked");
    // Another measurement, and the peer's weighed calls, on this thread.
    RemoteMap::insert(&*map, 2, bomb.clone()).await.unwrap();
    for i in 0..3 {
        remote.insert(10 + i, bomb.clone()).await.unwrap();
    }
    assert_eq!(wait_for(&got, 4).await, 4);
    // A nested buffered value from the peer still decodes.
    let mut deep = Bomb::Tagged(Tag::B(Boomy { x: 0 }));
    for _ in 0..20 {
        deep = Bomb::Deep(vec![deep]);
    }
    remote.insert(50, deep).await.unwrap();
}

/// The map a `Deserialize` below changes while it decodes (user code
/// measuring inside a decode).
static MAP: std::sync::OnceLock<Arc<SharedMap<u32, Mixed>>> = std::sync::OnceLock::new();
static KEY: AtomicUsize = AtomicUsize::new(1000);

fn trigger<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = <u32 as serde::Deserialize>::deserialize(d)?;
    if let Some(map) = MAP.get() {
        let value = Mixed::List(vec![
            Mixed::Tagged(Internal::Nums { v: vec![1; 100] }),
            Mixed::Flat(Flat {
                id: 1,
                extra: Extra {
                    a: 1,
                    list: vec![None; 10],
                },
            }),
        ]);
        let k = KEY.fetch_add(1, SeqCst) as u32;
        RemoteMap::insert(&**map, k, value)
            .now_or_never()
            .expect("a local insert is ready at once")
            .unwrap();
    }
    Ok(v)
}

/// A struct argument (a map: decoded weighed).
#[derive(Debug, Clone, remote_core::Wire)]
pub struct Trigger {
    #[serde(deserialize_with = "trigger")]
    pub x: u32,
    pub more: Vec<Mixed>,
}

/// A newtype of a number (a flat argument: decoded unweighed).
#[derive(Debug, Clone, remote_core::Wire)]
pub struct Trig(#[serde(deserialize_with = "trigger")] pub u32);

#[remote]
pub trait Sink {
    async fn take(&self, t: Trigger) -> Result<u32, Error>;
    async fn take_flat(&self, t: Trig) -> Result<u32, Error>;
}

struct SinkImpl;

#[remote]
impl Sink for SinkImpl {
    async fn take(&self, t: Trigger) -> Result<u32, Error> {
        Ok(t.x + t.more.len() as u32)
    }
    async fn take_flat(&self, t: Trig) -> Result<u32, Error> {
        Ok(t.0)
    }
}

/// A measurement made by user code while a weighed dispatch decode runs
/// on this thread (it is skipped: `measured` returns `None`), and while an
/// unweighed one does (it runs): neither panics nor disturbs the
/// dispatch's own weighing; the calls and the changes go through.
#[tokio::test(flavor = "current_thread")]
async fn a_measurement_inside_a_dispatch_decode() {
    let (map, _remote, got, _conns) = subscribed::<Mixed>().await;
    MAP.set(map.clone()).ok().unwrap();
    let (client, _server) = serving::in_memory(
        Remote::<dyn Sink>::new(Arc::new(SinkImpl)),
        Limits::default(),
    )
    .await;
    let sink = client.root::<dyn Sink>();
    for i in 0..3 {
        let more = vec![Mixed::Tagged(Internal::Nums { v: vec![2; 100] }); 3];
        assert_eq!(sink.take(Trigger { x: i, more }).await.unwrap(), i + 3);
        assert_eq!(sink.take_flat(Trig(i)).await.unwrap(), i);
    }
    assert_eq!(wait_for(&got, 6).await, 6);
    assert_eq!(map.snapshot().len(), 6);
}
