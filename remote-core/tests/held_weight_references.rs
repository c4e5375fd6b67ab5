//! `codec::held_weight` decodes its copy outside a connection, where a
//! reference fails its decode; a value it cannot decode counts each item
//! at the most its types may take. Counted at what was weighed before the
//! reference (a review), a `SharedMap<u32, Vec<Item>>` change of 20,000
//! `Item`s of `nil`s (~1,048 bytes each decoded, ~21 MB held in the log)
//! weighed 5 MB with a reference in its first item, and 46 MB without:
//! the log (bounded at `SUBSCRIBER_QUEUE_BYTES`, 16 MiB) kept 3 such
//! changes (~63 MB decoded) behind a stalled subscriber.

#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{MapListener, RemoteMap, SharedMap};
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
pub struct Item {
    pub r: Option<Remote<dyn Ping>>,
    pub data: Option<[[u64; 32]; 4]>,
}

/// Stalls on its first change (a subscriber that fell behind), then
/// counts.
struct Stalled(Arc<AtomicUsize>);

#[remote]
impl MapListener<u32, Vec<Item>> for Stalled {
    async fn changed(&self, _key: u32, _value: Option<Vec<Item>>) -> Result<(), Error> {
        if self.0.fetch_add(1, SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Ok(())
    }
}

const CHANGES: usize = 3;

/// Delivered changes, and subscribers left, after `CHANGES` changes made
/// while the subscriber stalls on the first.
async fn lagging(with_ref: bool) -> (usize, usize) {
    let map = SharedMap::<u32, Vec<Item>>::new();
    let (client, _server) = serving::in_memory(map.remote(), Limits::default()).await;
    let remote = client.root::<dyn RemoteMap<u32, Vec<Item>>>();
    let got = Arc::new(AtomicUsize::new(0));
    let listener: Remote<dyn MapListener<u32, Vec<Item>>> =
        Remote::new(Arc::new(Stalled(got.clone())));
    remote.subscribe(listener).await.unwrap();
    let r: Remote<dyn Ping> = Remote::new(Arc::new(Pong));
    for k in 0..CHANGES as u32 {
        let mut v = vec![
            Item {
                r: None,
                data: None
            };
            20_000
        ];
        if with_ref {
            v[0].r = Some(r.clone());
        }
        // The peer's change (its own export first, for the reference).
        remote.insert(k, v).await.unwrap();
        if k == 0 {
            // The subscriber takes the first and stalls on it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    (got.load(SeqCst), map.subscribers())
}

/// Control: weighed whole (~11.6 MB each), the log keeps one change
/// behind the stalled subscriber, which is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_is_dropped_without_a_reference() {
    let (got, subscribers) = lagging(false).await;
    assert!(
        got < CHANGES && subscribers == 0,
        "delivered {got} of {CHANGES}, {subscribers} subscribers left"
    );
}

/// Fails: with a reference first, each change weighs its bytes and items
/// only; 3 changes (~63 MB decoded) stay in a log bounded at 16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_first_does_not_cut_the_measurement() {
    let (got, subscribers) = lagging(true).await;
    assert!(
        got < CHANGES && subscribers == 0,
        "delivered all {got} of {CHANGES} changes ({subscribers} subscribers left): the log \
         held {CHANGES} changes of 20,000 ~1 KB items (~63 MB decoded) against its 16 MiB, \
         each weighed at its bytes and items only (the reference first failed the measuring \
         decode outside a connection)"
    );
}
