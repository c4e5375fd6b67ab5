//! Review pass 52 (of c46f9c7/b5ece9a, `SharedMap` writer backpressure):
//! the time a lone writer waits for a lagging subscriber is never charged
//! to the subscriber's allowance.
//!
//! `State::room` (`collections/map.rs`) charges a stalled reader only in
//! its loop body, after it found no room: when the laggard delivers, the
//! woken writer finds room at once (`self.fits(size)` returns before any
//! charge), appends, and its `Waiter` drop (`unwait`, `waiting == 0`)
//! clears every reader's `stall` without charging the time since
//! `st.charged`. With one write in flight (a client writing in order, the
//! common case) the only charge is the zero one made when the wait began,
//! so a subscriber answering every change just within its patience
//! (`invalidation_ack_timeout`) holds every write up by that much, for as
//! long as it stays connected: the allowance SECURITY.md and PROTOCOL.md
//! §12 say bounds it ("at most its allowance plus an eighth of the time")
//! is never drawn on. With 50 writes in flight (`map_laggard_allowance.rs`)
//! the other woken writers find the log full again and charge it, which is
//! why that test passes.
//!
//! Here: timeout 400 ms (patience 400 ms, allowance 3 × 350 ms = 1.05 s),
//! a laggard answering each change after 250 ms, and one client writing
//! in order. Once the log is full every write waits ~250 ms for it; charged,
//! the laggard is dropped after about 5 such writes. Asserted: it is
//! dropped within 60 writes past the full log (measured today: not
//! dropped, 60 writes each waiting ~250 ms, 15 s in all, and it would go
//! on forever).
//!
//! Fixed: room found at a wake-up, and a writer leaving, charge what was
//! waited until then (`State::settle`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{MapListener, RemoteMap, SharedMap, SUBSCRIBER_QUEUE};
use remote_core::{Connection, Error, Limits, Remote, Server};

struct Laggard {
    delay: Duration,
    seen: AtomicU32,
}

#[remote_core::remote]
impl MapListener<u32, u32> for Laggard {
    async fn changed(&self, _: u32, _: Option<u32>) -> Result<(), Error> {
        tokio::time::sleep(self.delay).await;
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_writers_waits_for_a_just_in_time_subscriber_are_charged() {
    tokio::time::timeout(Duration::from_secs(120), async {
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
            delay: Duration::from_millis(250),
            seen: AtomicU32::new(0),
        });
        laggard_conn
            .root::<dyn RemoteMap<u32, u32>>()
            .subscribe(Remote::new(
                laggard.clone() as Arc<dyn MapListener<u32, u32>>
            ))
            .await
            .unwrap();
        assert_eq!(map.subscribers(), 1);
        let writer = Connection::connect(server.local_addr()).await.unwrap();
        let w = writer.root::<dyn RemoteMap<u32, u32>>();
        // One write at a time: fills the log, then each write waits.
        let full = SUBSCRIBER_QUEUE as u32;
        let extra = 60u32;
        let start = std::time::Instant::now();
        let mut past_full = None;
        let mut waited = Duration::ZERO;
        for i in 0..full + extra {
            let t = std::time::Instant::now();
            w.insert(i, i).await.unwrap();
            if i >= full {
                waited += t.elapsed();
            }
            if map.subscribers() == 0 {
                past_full = Some(i.saturating_sub(full));
                break;
            }
        }
        let seen = laggard.seen.load(Ordering::SeqCst);
        eprintln!(
            "writes past the full log before the laggard was dropped: {past_full:?}; \
             their wait {waited:?}; laggard told {seen}; total {:?}",
            start.elapsed()
        );
        assert!(
            past_full.is_some(),
            "a subscriber answering every 250 ms (patience 400 ms, allowance 1.05 s) held \
             each of {extra} in-order writes up for {:?} on average ({waited:?} in all) \
             and was never dropped",
            waited / extra
        );
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await
    .expect("within 120 s");
}
