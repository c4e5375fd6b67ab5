//! Writers to a `SharedMap` wait for a subscriber that lags behind its
//! change log (`map_burst_keeps_subscribers.rs`), but a subscriber can
//! hold them up only for as long as its lateness allowance lasts
//! (`driver/reader_lateness.rs`): one that answers just often enough never
//! to miss its patience still pays for every moment writers wait for it,
//! and one that answers nothing is given up on after its patience. Either
//! way it is dropped, every write completes, and an honest subscriber that
//! keeps up is told of every change.
//!
//! The server's `invalidation_ack_timeout` is 400 ms: a subscriber's
//! patience, and its allowance 3 × 350 ms (refilling at an eighth of wall
//! time). Nothing here asserts a duration: the laggard's end and the
//! writes' completion are events.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{on_change, MapListener, RemoteMap, SharedMap, SUBSCRIBER_QUEUE};
use remote_core::{Connection, Error, Limits, Remote, Server};

/// A listener that answers each change after `delay` (or never).
struct Laggard {
    delay: Option<Duration>,
    seen: AtomicU32,
}

#[remote_core::remote]
impl MapListener<u32, u32> for Laggard {
    async fn changed(&self, _: u32, _: Option<u32>) -> Result<(), Error> {
        match self.delay {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Polls `cond` until it holds (the test's outer timeout bounds it).
async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A laggard (answering after `delay`, or never) subscribed from one
/// client, an honest local subscriber, and `n` inserts from another client
/// with 50 in flight: all of them complete, the laggard is dropped having
/// been told fewer than `n` changes, and the honest subscriber is told all.
async fn writes_outlast(delay: Option<Duration>, n: u32) -> u32 {
    let map = SharedMap::<u32, u32>::new();
    let served = map.clone();
    let server = Server::builder()
        .limits(Limits {
            invalidation_ack_timeout: Duration::from_millis(400),
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| served.remote());
    let laggard_conn = Connection::connect(server.local_addr()).await.unwrap();
    let laggard = Arc::new(Laggard {
        delay,
        seen: AtomicU32::new(0),
    });
    laggard_conn
        .root::<dyn RemoteMap<u32, u32>>()
        .subscribe(Remote::new(
            laggard.clone() as Arc<dyn MapListener<u32, u32>>
        ))
        .await
        .unwrap();
    let told = Arc::new(AtomicU32::new(0));
    let count = told.clone();
    map.remote()
        .subscribe(on_change(move |_: u32, _: Option<u32>| {
            count.fetch_add(1, Ordering::SeqCst);
        }))
        .await
        .unwrap();
    assert_eq!(map.subscribers(), 2);
    let writer = Connection::connect(server.local_addr()).await.unwrap();
    let w = writer.root::<dyn RemoteMap<u32, u32>>();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let w = w.clone();
        set.spawn(async move { w.insert(i, i).await });
        while set.len() >= 50 {
            set.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    until(|| map.subscribers() == 1).await;
    until(|| told.load(Ordering::SeqCst) == n).await;
    let seen = laggard.seen.load(Ordering::SeqCst);
    assert!(seen < n, "the laggard was told {seen} of {n} changes");
    server.shutdown(Duration::from_secs(5)).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_answering_just_in_time_is_dropped_once_its_allowance_is_spent() {
    tokio::time::timeout(Duration::from_secs(120), async {
        // Answers every 200 ms: never misses its 400 ms patience, and each
        // answer lets one more write in, so only the allowance ends it
        // (1.05 s, after about 6 answers with writers waiting).
        let n = SUBSCRIBER_QUEUE as u32 * 3;
        let seen = writes_outlast(Some(Duration::from_millis(200)), n).await;
        // Waited for without bound, it would have been told over 2,000
        // (each answer letting one write in); 5 to 6 were measured.
        assert!(seen < 200, "the laggard was told {seen} changes");
    })
    .await
    .expect("within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_answering_nothing_is_dropped_after_its_patience() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let n = SUBSCRIBER_QUEUE as u32 * 2;
        let seen = writes_outlast(None, n).await;
        assert_eq!(seen, 0);
    })
    .await
    .expect("within 120 s");
}
