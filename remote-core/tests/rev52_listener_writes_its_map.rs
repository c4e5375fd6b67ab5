//! Review pass 52 (of c46f9c7, `SharedMap` writer backpressure): a local
//! listener that writes to the map it listens to, from its callback (a
//! derived entry, an index, a counter), deadlocks with itself once the log
//! is full: its write waits for room (`State::room`), room waits for its
//! own delivery, and its delivery waits for its write. Nothing moves for
//! `LOCAL_PATIENCE` (2 s: every writer of the map stalls), then the map
//! gives up on the listener (dropped, its notification abandoned, not
//! told) and the writes go on. It is honest and prompt; the only thing
//! that makes it "lag" is the backpressure itself.
//!
//! Asserted (the safe behaviour): such a listener keeps its subscription
//! through a burst (2,000 inserts, 100 in flight) that a listener doing
//! the same work without writing survives (both are told of a later
//! change). Today it is dropped once the log fills with it at the oldest
//! change, after every writer of the map stood still for its 2 s patience
//! (the control is told everything; the mirror is not).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use remote_core::collections::{MapListener, RemoteMap, SharedMap};
use remote_core::{Error, Remote};

const MIRROR: u32 = 1 << 30;

/// Mirrors each key below `MIRROR` to `MIRROR + key`, in the same map
/// (or, with `map` unset, only does the same work: the control).
struct Mirror {
    map: OnceLock<Remote<dyn RemoteMap<u32, u32>>>,
    last: AtomicBool,
}

impl Mirror {
    fn new() -> Arc<Self> {
        Arc::new(Mirror {
            map: OnceLock::new(),
            last: AtomicBool::new(false),
        })
    }
}

#[remote_core::remote]
impl MapListener<u32, u32> for Mirror {
    async fn changed(&self, k: u32, v: Option<u32>) -> Result<(), Error> {
        if k == u32::MAX {
            self.last.store(true, Ordering::SeqCst);
        } else if k < MIRROR {
            // Some work of its own (I/O, say) before it writes.
            tokio::time::sleep(Duration::from_millis(1)).await;
            if let (Some(v), Some(map)) = (v, self.map.get()) {
                map.insert(MIRROR + k, v).await?;
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_writing_to_its_own_map_is_not_dropped_by_backpressure() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let map = SharedMap::<u32, u32>::new();
        let mirror = Mirror::new();
        let _ = mirror.map.set(map.remote());
        let control = Mirror::new();
        for l in [&mirror, &control] {
            map.remote()
                .subscribe(Remote::new(l.clone() as Arc<dyn MapListener<u32, u32>>))
                .await
                .unwrap();
        }
        // Another client's burst: 2,000 inserts, 100 in flight.
        let w = map.remote();
        let mut set = tokio::task::JoinSet::new();
        let start = std::time::Instant::now();
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
        eprintln!("burst took {:?}", start.elapsed());
        w.insert(u32::MAX, 0).await.unwrap();
        // The control, doing the same work but not writing, keeps up.
        while !control.last.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ended = loop {
            if mirror.last.load(Ordering::SeqCst) {
                break false;
            }
            if map.subscribers() < 2 {
                break true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            !ended,
            "a listener writing to its own map was dropped by the burst ({:?})",
            start.elapsed()
        );
    })
    .await
    .expect("within 60 s");
}
