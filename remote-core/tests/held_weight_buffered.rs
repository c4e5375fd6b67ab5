//! `codec::held_weight` (a shared collection's change, a stream's item
//! held between pulls) weighs a value by its types through the weighing
//! deserializer, as a call's arguments are: serde's buffered types
//! (untagged and internally tagged enums) weigh a node at twice their
//! densest item, and their tries are bounded (a review: weighed as an
//! unknown type, each node took 2 KiB, an honest stream's 603 KB item
//! weighed 2.7 MB and ended the stream; unbounded, a 100-byte value of a
//! nested untagged enum took seconds to weigh, 2^22 tries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use remote_core::collections::{on_change, RemoteMap, SharedMap};
use remote_core::stream::RemoteStream;
use remote_core::{remote, Connection, Error, Limits, Remote, Server};

/// A JSON-like value, as a server author would write it.
#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Json {
    Num(i64),
    Str(String),
    Arr(Vec<Json>),
}

/// The same values, externally tagged (no serde buffer): the control.
#[derive(Debug, Clone, remote_core::Wire)]
pub enum Tagged {
    Num(i64),
    Str(String),
    Arr(Vec<Tagged>),
}

#[remote]
pub trait Docs {
    /// A small document, then one of 1,000 strings of 600 bytes.
    async fn untagged(&self) -> Result<RemoteStream<Json>, Error>;
    async fn tagged(&self) -> Result<RemoteStream<Tagged>, Error>;
}

struct DocsImpl;

#[remote]
impl Docs for DocsImpl {
    async fn untagged(&self) -> Result<RemoteStream<Json>, Error> {
        let big = Json::Arr(vec![Json::Str("x".repeat(600)); 1000]);
        Ok(RemoteStream::new(futures_util::stream::iter([
            Json::Num(1),
            big,
        ])))
    }
    async fn tagged(&self) -> Result<RemoteStream<Tagged>, Error> {
        let big = Tagged::Arr(vec![Tagged::Str("x".repeat(600)); 1000]);
        Ok(RemoteStream::new(futures_util::stream::iter([
            Tagged::Num(1),
            big,
        ])))
    }
}

async fn pull_all<T: remote_core::Wire>(mut s: RemoteStream<T>) -> Result<usize, Error> {
    let mut n = 0;
    while let Some(item) = s.next().await {
        item?;
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_item_held_between_pulls_weighs_what_it_holds() {
    let server = Server::builder()
        .limits(Limits::default())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(DocsImpl) as Arc<dyn Docs>));
    let c = Connection::connect(server.local_addr()).await.unwrap();
    let api = c.root::<dyn Docs>();
    // Control: externally tagged, the big item is held for the next pull.
    let tagged = pull_all(api.tagged().await.unwrap()).await;
    // The same values, untagged.
    let untagged = pull_all(api.untagged().await.unwrap()).await;
    c.close();
    server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(tagged.as_ref().ok(), Some(&2), "control: {tagged:?}");
    assert_eq!(
        untagged.as_ref().ok(),
        Some(&2),
        "an honest untagged stream ended: {untagged:?}"
    );
}

/// Untagged struct variants, the more specific first (as serde advises):
/// each level tries `Group` (decoding all its children) before `Layer`.
#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Shape {
    Group { children: Vec<Shape>, name: String },
    Layer { children: Vec<Shape> },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_a_small_nested_untagged_value_is_weighed_in_bounded_time() {
    const DEPTH: usize = 22;
    let mut shape = Shape::Layer { children: vec![] };
    for _ in 0..DEPTH {
        shape = Shape::Layer {
            children: vec![shape],
        };
    }
    let map = SharedMap::<u32, Shape>::new();
    map.subscribe(on_change(|_: u32, _: Option<Shape>| {}))
        .await
        .unwrap();
    let start = Instant::now();
    let weigh = tokio::task::spawn_blocking({
        let map = map.clone();
        move || {
            futures_util::FutureExt::now_or_never(map.insert(0, shape))
                .unwrap()
                .unwrap()
        }
    });
    let r = tokio::time::timeout(Duration::from_secs(2), weigh).await;
    let took = start.elapsed();
    assert!(
        r.is_ok(),
        "inserting a value {DEPTH} levels deep into a map with one local subscriber took more \
         than {took:?} (the measuring decode tries 2^{DEPTH} untagged variants, unbounded)"
    );
}
