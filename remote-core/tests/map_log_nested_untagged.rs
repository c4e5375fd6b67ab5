//! `codec::held_weight` weighs serde's buffered types as a call's
//! arguments are, but not the copies of serde's buffer a decode makes
//! while it runs: they are gone once it ends. Counted (a review), a change
//! of an untagged value holding 10,000 numbers (~10 KB on the wire, ~330
//! KB decoded) weighed 1.45 MB flat, 7.9 MB nested 20 deep and 14.3 MB
//! nested 40 deep: two such changes were past the change log's 16 MiB,
//! and an honest subscriber one change behind was dropped.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{MapListener, RemoteMap, SharedMap};
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote};

#[path = "support/serving.rs"]
mod serving;

#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Json {
    Num(i64),
    Arr(Vec<Json>),
}

fn deep(depth: usize) -> Json {
    let mut v = Json::Arr(vec![Json::Num(1); 10_000]);
    for _ in 0..depth {
        v = Json::Arr(vec![v]);
    }
    v
}

struct Slow(Arc<AtomicUsize>);

#[remote]
impl MapListener<u32, Json> for Slow {
    async fn changed(&self, _key: u32, _value: Option<Json>) -> Result<(), Error> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.fetch_add(1, SeqCst);
        Ok(())
    }
}

const CHANGES: usize = 4;

async fn changes(depth: usize) -> (usize, usize) {
    let map = SharedMap::<u32, Json>::new();
    let served = map.clone();
    let server = serving::tcp(Limits::default(), move |_| served.remote()).await;
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let remote = client.root::<dyn RemoteMap<u32, Json>>();
    let got = Arc::new(AtomicUsize::new(0));
    let listener: Remote<dyn MapListener<u32, Json>> = Remote::new(Arc::new(Slow(got.clone())));
    remote.subscribe(listener).await.unwrap();
    for _ in 0..CHANGES {
        remote.insert(0, deep(depth)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..100 {
        if got.load(SeqCst) == CHANGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = got.load(SeqCst);
    let subscribers = map.subscribers();
    client.close();
    (got, subscribers)
}

/// Control: passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_subscriber_gets_every_flat_untagged_change() {
    assert_eq!(changes(0).await, (CHANGES, 1));
}

/// Fails: the changes are weighed at 14.3 MB each (serde's copies of the
/// buffer, one per level, counted as held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_subscriber_gets_every_nested_untagged_change() {
    let (got, subscribers) = changes(40).await;
    assert_eq!(
        (got, subscribers),
        (CHANGES, 1),
        "changes delivered, subscribers left: {got} of {CHANGES} changes of 10,000 numbers \
         nested 40 deep (~10 KB each on the wire, ~330 KB decoded) reached an honest \
         subscriber one change behind"
    );
}
