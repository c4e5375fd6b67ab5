//! Review pass 52 (of c46f9c7, `SharedMap` writer backpressure): a
//! subscriber behind the same peer address as a laggard (NAT, proxy; here
//! 127.0.0.1) is dropped on the first moment writers wait for it, however
//! promptly it answers, for as long as the address's allowance is drained
//! (up to 14 s at the defaults, and a laggard can drain it again and again).
//!
//! `ReaderLateness::charge` (`driver/reader_lateness.rs`) returns `None`
//! when the peer address's bucket is lagging (`PeerMisses::charge` ->
//! `Bucket::lagging`), and `State::room` (`collections/map.rs`) gives up
//! on any reader at the log's oldest change whose charge returns `None`,
//! even a charge of zero made the instant writers first wait. So a laggard
//! (or a late invalidation acknowledger: the same bucket) behind an
//! address makes every other subscription from that address, to every
//! `SharedMap` of the server, end at the next burst of writes: the
//! red-team pass 50 scenario (`map_burst_keeps_subscribers.rs`) fails again
//! for the honest subscriber, which is not told it was dropped. SECURITY.md
//! says only "subscribers behind one address share it"; for invalidation
//! the shared allowance costs a NAT-mate a wait skipped, here it costs its
//! subscription.
//!
//! Asserted (the safe behaviour): a prompt subscriber on another
//! connection from the same address keeps its subscription through the
//! red-team burst (2,000 inserts, 100 in flight), as it does when no
//! laggard shares its address.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{on_change, MapListener, RemoteMap, SharedMap};
use remote_core::{Connection, Error, Limits, Remote, Server};

struct Laggard {
    seen: AtomicU32,
}

#[remote_core::remote]
impl MapListener<u32, u32> for Laggard {
    async fn changed(&self, _: u32, _: Option<u32>) -> Result<(), Error> {
        // Within the 2 s patience, each time.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laggard_behind_an_address_gets_a_prompt_neighbours_subscription_dropped() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let map = SharedMap::<u32, u32>::new();
        let served = map.clone();
        let server = Server::builder()
            .limits(Limits::default())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(move |_| served.remote());
        // The laggard, from 127.0.0.1, spends its allowance (and its
        // address's) against 50 writes in flight.
        let hostile = Connection::connect(server.local_addr()).await.unwrap();
        let laggard = Arc::new(Laggard {
            seen: AtomicU32::new(0),
        });
        hostile
            .root::<dyn RemoteMap<u32, u32>>()
            .subscribe(Remote::new(
                laggard.clone() as Arc<dyn MapListener<u32, u32>>
            ))
            .await
            .unwrap();
        let writer = Connection::connect(server.local_addr()).await.unwrap();
        let w = writer.root::<dyn RemoteMap<u32, u32>>();
        let mut set = tokio::task::JoinSet::new();
        let mut i = 0u32;
        while map.subscribers() > 0 {
            let w = w.clone();
            set.spawn(async move { w.insert(i, i).await });
            i += 1;
            while set.len() >= 50 {
                set.join_next().await.unwrap().unwrap().unwrap();
            }
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        let dropped_after = std::time::Instant::now();
        eprintln!(
            "laggard dropped after {i} writes, told {}",
            laggard.seen.load(Ordering::SeqCst)
        );
        // An honest neighbour: another client at the same address,
        // answering at once.
        let honest = Connection::connect(server.local_addr()).await.unwrap();
        let last = Arc::new(AtomicBool::new(false));
        let told = Arc::new(AtomicU32::new(0));
        let (seen, count) = (last.clone(), told.clone());
        honest
            .root::<dyn RemoteMap<u32, u32>>()
            .subscribe(on_change(move |k: u32, _v: Option<u32>| {
                count.fetch_add(1, Ordering::SeqCst);
                if k == u32::MAX {
                    seen.store(true, Ordering::SeqCst);
                }
            }))
            .await
            .unwrap();
        // The red-team burst: 2,000 inserts, 100 in flight.
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
        eprintln!(
            "burst done {:?} after the laggard was dropped",
            dropped_after.elapsed()
        );
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
            "a prompt subscriber at the laggard's address lost its subscription to the burst \
             (told {} of 2,001 changes)",
            told.load(Ordering::SeqCst)
        );
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await
    .expect("within 120 s");
}
