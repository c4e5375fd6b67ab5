//! Red-team pass 50: one client's ordinary burst of writes to a
//! `SharedMap` ends every other client's subscription to it. A subscriber
//! is told one change per round trip, and a map drops a subscriber that
//! falls more than `SUBSCRIBER_QUEUE` (1,024) changes behind; writers are
//! never slowed for subscribers. So a writer with 100 inserts in flight
//! (2,000 inserts of small numbers, about 40 KB sent) outruns an idle
//! subscriber on the same machine and the server ends its subscription:
//! measured, an honest subscriber was told 1,100 of 1,100 changes of a
//! burst of 1,100, then 106 of 2,000, then 0 of 4,000 (and nothing after:
//! it is no longer subscribed, and is not told so). Any client that may
//! write (the map served as a root, as `pressure_stall.rs` does) can do
//! this to every subscriber at will. The drop on lag is documented
//! (`collections/mod.rs`, PROTOCOL.md §12); its consequence, that a
//! subscriber doing nothing wrong loses its subscription to another
//! client's writes, contradicts "a well-behaved client's subscriptions are
//! never dropped" (the lag bound is `collections/map.rs`, `Map::logged`
//! returning `Next::Lagged`, and `subscribers.rs`, `follow`, returning on
//! it).
//!
//! The safe behaviour asserted: after the burst, the subscriber is still
//! subscribed (it is told of a later change).
//!
//! Fixed: a write that would push the log past its bounds first waits for
//! the slowest subscribers to deliver (`collections/map.rs`,
//! `State::room`), the time charged to their lateness allowance
//! (`driver/reader_lateness.rs`); the writer is slowed down, the honest
//! subscriber keeps up (`tests/map_laggard_allowance.rs`: a laggard is
//! still dropped once its allowance is spent).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{on_change, RemoteMap, SharedMap};
use remote_core::{Connection, Limits, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_does_not_end_another_clients_subscription() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let map = SharedMap::<u32, u32>::new();
        let served = map.clone();
        let server = Server::builder()
            .limits(Limits::default())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(move |_| served.remote());
        let honest = Connection::connect(server.local_addr()).await.unwrap();
        let last = Arc::new(AtomicBool::new(false));
        let seen = last.clone();
        honest
            .root::<dyn RemoteMap<u32, u32>>()
            .subscribe(on_change(move |k: u32, _v: Option<u32>| {
                if k == u32::MAX {
                    seen.store(true, Ordering::SeqCst);
                }
            }))
            .await
            .unwrap();
        // Another client writes 2,000 entries, 100 inserts in flight.
        let writer = Connection::connect(server.local_addr()).await.unwrap();
        let w = writer.root::<dyn RemoteMap<u32, u32>>();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..2_000u32 {
            let w = w.clone();
            set.spawn(async move { w.insert(i, i).await });
            while set.len() >= 100 {
                set.join_next().await.unwrap().unwrap().unwrap();
            }
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        // A later change: a subscriber still subscribed is told of it; one
        // whose subscription ended is not, and the map counts none.
        w.insert(u32::MAX, 0).await.unwrap();
        let ended = loop {
            if last.load(Ordering::SeqCst) {
                break false;
            }
            if map.subscribers() == 0 {
                break true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            !ended,
            "the honest subscriber's subscription was ended by another client's 2,000 inserts"
        );
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await
    .expect("within 120 s");
}
