//! A `SharedMap`'s change log is bounded by what its changes weigh
//! (`SUBSCRIBER_QUEUE_BYTES`, 16 MiB), weighed by `codec::held_weight`.
//! Weighing serde's buffered types as an unknown type's (2 KiB a node), a
//! change to a value of an untagged type holding 10,000 numbers (10 KB on
//! the wire) weighed 20.6 MB, more than the whole log: each change pushed
//! out the one before, and an honest subscriber one change behind was
//! dropped (a review). Four such changes made a little apart reach a
//! subscriber that takes 300 ms per notification.

#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{MapListener, RemoteMap, SharedMap};
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote};

#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Json {
    Num(i64),
    Arr(Vec<Json>),
}

/// The same values, externally tagged: the control.
#[derive(Debug, Clone, remote_core::Wire)]
pub enum Tagged {
    Num(i64),
    Arr(Vec<Tagged>),
}

struct Slow(Arc<AtomicUsize>);

#[remote]
impl<V: remote_core::Wire + Clone + Sync> MapListener<u32, V> for Slow {
    async fn changed(&self, _key: u32, _value: Option<V>) -> Result<(), Error> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_subscriber_gets_every_small_untagged_change() {
    changes(|| Json::Arr(vec![Json::Num(1); 10_000])).await;
}

/// The same nested 40 deep (within `max_depth`): serde's passing copies
/// of its buffer, one a level, are not counted as held (counted, each
/// change weighed 14.3 MB for ~330 KB held, a review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_subscriber_gets_every_nested_untagged_change() {
    fn deep() -> Json {
        let mut v = Json::Arr(vec![Json::Num(1); 10_000]);
        for _ in 0..40 {
            v = Json::Arr(vec![v]);
        }
        v
    }
    changes(deep).await;
}

/// The control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_subscriber_gets_every_small_tagged_change() {
    changes(|| Tagged::Arr(vec![Tagged::Num(1); 10_000])).await;
}

async fn changes<V: remote_core::Wire + Clone + Sync>(value: fn() -> V) {
    const CHANGES: usize = 4;
    let map = SharedMap::<u32, V>::new();
    let served = map.clone();
    let server = serving::tcp(Limits::default(), move |_| served.remote()).await;
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let remote = client.root::<dyn RemoteMap<u32, V>>();
    let got = Arc::new(AtomicUsize::new(0));
    let listener: Remote<dyn MapListener<u32, V>> = Remote::new(Arc::new(Slow(got.clone())));
    remote.subscribe(listener).await.unwrap();
    for _ in 0..CHANGES {
        remote.insert(0, value()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Until all arrive (300 ms each), 20 s at most.
    for _ in 0..400 {
        if got.load(SeqCst) == CHANGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = got.load(SeqCst);
    let subscribers = map.subscribers();
    client.close();
    assert_eq!(
        (got, subscribers),
        (CHANGES, 1),
        "changes delivered, subscribers left: {got} of {CHANGES} changes of 10,000 numbers \
         (10 KB each on the wire) reached an honest subscriber"
    );
}
