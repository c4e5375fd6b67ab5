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

/// Stalls on its first change until the test opens its gate (a
/// subscriber that fell behind), counting the changes it enters.
struct Stalled {
    entered: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

#[remote]
impl MapListener<u32, Vec<Item>> for Stalled {
    async fn changed(&self, _key: u32, _value: Option<Vec<Item>>) -> Result<(), Error> {
        if self.entered.fetch_add(1, SeqCst) == 0 {
            let _ = self.gate.acquire().await;
        }
        Ok(())
    }
}

const CHANGES: usize = 3;

/// Waits (at most 60 s) until `f` holds.
async fn eventually(f: impl Fn() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f() && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}

/// Changes the subscriber entered, and subscribers left, after `CHANGES`
/// changes made while it stalls on the first: once it is dropped, or has
/// been told of every change.
async fn lagging(with_ref: bool) -> (usize, usize) {
    let map = SharedMap::<u32, Vec<Item>>::new();
    let (client, _server) = serving::in_memory(map.remote(), Limits::default()).await;
    let remote = client.root::<dyn RemoteMap<u32, Vec<Item>>>();
    let entered = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let listener: Remote<dyn MapListener<u32, Vec<Item>>> = Remote::new(Arc::new(Stalled {
        entered: entered.clone(),
        gate: gate.clone(),
    }));
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
            assert!(eventually(|| entered.load(SeqCst) == 1).await);
        }
    }
    gate.add_permits(1);
    // Dropped at its next read if the log let go of what it had not
    // delivered; told of every change if not.
    assert!(
        eventually(|| map.subscribers() == 0 || entered.load(SeqCst) == CHANGES).await,
        "neither dropped nor told of every change"
    );
    (entered.load(SeqCst), map.subscribers())
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
