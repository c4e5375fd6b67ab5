//! Review pass 52 (of c46f9c7, `SharedMap` writer backpressure): the
//! subscribers' allowance is the invalidation one
//! (`Allowance::of(limits)`, `driver/lateness.rs`): a server configured
//! with `invalidation_max_missed_acks: 0` ("0: writes never wait", its only
//! documented meaning, about pushed invalidations, `limits.rs`) has an
//! allowance of 0, so `Bucket::charge` returns `None` at once and
//! `State::room` drops every subscriber at the log's oldest change the
//! first instant a write waits: the red-team pass 50 burst
//! (`map_burst_keeps_subscribers.rs`) ends an honest subscription again.
//! Neither `Limits` field's doc says it governs map subscriptions. (The
//! same for a small `invalidation_ack_timeout`, which is also the
//! subscribers' patience.)
//!
//! Asserted (the safe behaviour): the red-team burst keeps the honest
//! subscriber subscribed under that configuration too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{on_change, RemoteMap, SharedMap};
use remote_core::{Connection, Limits, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_invalidation_waits_disabled_a_burst_still_keeps_subscribers() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let map = SharedMap::<u32, u32>::new();
        let served = map.clone();
        let server = Server::builder()
            .limits(Limits {
                // "0: writes never wait" (for invalidation acknowledgements).
                invalidation_max_missed_acks: 0,
                ..Limits::default()
            })
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
