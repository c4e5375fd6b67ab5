//! Review pass 52 (of c46f9c7/b5ece9a, `SharedMap` writer backpressure):
//! what 1,000 writes waiting for a laggard cost the server. Every
//! delivery by any subscriber (`Feed::advanced` -> `Notify::notify_waiters`,
//! `collections/map.rs`) wakes every waiting write; each takes the map's
//! write lock and scans every reader (`State::room`), though only a
//! delivery by a reader at the log's oldest change can make room. A
//! measurement (printed, not asserted): process CPU time and a bystander's
//! `get` latency while 1,000 writes (8 connections × 125) wait for a
//! laggard answering every 100 ms, with 16 prompt subscribers.
//!
//! Measured (2 shared cores, debug build): 960 writes waiting, 16 prompt
//! subscribers, laggard every 100 ms: 1.47 s CPU over 6.06 s (24% of
//! wall), bystander `get` worst 15 ms, laggard dropped at 6.0 s; with 80
//! writes waiting 1.33 s CPU, worst 5 ms. With an honest subscriber
//! answering at once, 960 writes past the full log took 0.40 s and 0.74 s
//! CPU (0.77 ms a write, against 0.88 ms with 80): no quadratic blow-up,
//! as woken writers not yet polled again are not woken twice.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use remote_core::collections::{on_change, MapListener, RemoteMap, SharedMap};
use remote_core::{Connection, Error, Limits, Remote, Server};

struct Laggard {
    delay: Duration,
    seen: AtomicU32,
}

#[remote_core::remote]
impl MapListener<u32, u32> for Laggard {
    async fn changed(&self, _: u32, _: Option<u32>) -> Result<(), Error> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime, stime: fields 14 and 15 (1-based), 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

async fn run(fast: usize, writers: usize, delay_ms: u64) {
    let map = SharedMap::<u32, u32>::new();
    let served = map.clone();
    let server = Server::builder()
        .limits(Limits::default())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| served.remote());
    let addr = server.local_addr();
    let subs = Connection::connect(addr).await.unwrap();
    for _ in 0..fast {
        subs.root::<dyn RemoteMap<u32, u32>>()
            .subscribe(on_change(|_: u32, _: Option<u32>| {}))
            .await
            .unwrap();
    }
    let lag_conn = Connection::connect(addr).await.unwrap();
    let laggard = Arc::new(Laggard {
        delay: Duration::from_millis(delay_ms),
        seen: AtomicU32::new(0),
    });
    lag_conn
        .root::<dyn RemoteMap<u32, u32>>()
        .subscribe(Remote::new(
            laggard.clone() as Arc<dyn MapListener<u32, u32>>
        ))
        .await
        .unwrap();
    let by = Connection::connect(addr).await.unwrap();
    let by = by.root::<dyn RemoteMap<u32, u32>>();
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(Connection::connect(addr).await.unwrap());
    }
    // Fill the log, one write at a time.
    let fill = conns[0].root::<dyn RemoteMap<u32, u32>>();
    for k in 0..1024u32 {
        fill.insert(900_000 + k, k).await.unwrap();
    }
    let done = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let cpu0 = cpu_ticks();
    let mut set = tokio::task::JoinSet::new();
    let per = writers / 8;
    assert!(per <= 120);
    for (c, conn) in conns.iter().enumerate() {
        let w = conn.root::<dyn RemoteMap<u32, u32>>();
        for j in 0..per {
            let w = w.clone();
            let done = done.clone();
            let k = (c * 100_000 + j) as u32;
            set.spawn(async move {
                let r = w.insert(k, k).await;
                done.fetch_add(1, Ordering::SeqCst);
                r
            });
        }
    }
    // Bystander: gets while the writes wait, until the laggard is dropped.
    let mut worst = Duration::ZERO;
    let mut gets = 0u32;
    let mut dropped_at = None;
    while set.len() > 0 {
        let t = Instant::now();
        by.get(1).await.unwrap();
        worst = worst.max(t.elapsed());
        gets += 1;
        if dropped_at.is_none() && map.subscribers() == fast {
            dropped_at = Some((start.elapsed(), cpu_ticks() - cpu0, done.load(Ordering::SeqCst)));
        }
        while let Some(r) = set.try_join_next() {
            r.unwrap().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if gets % 100 == 0 {
            // Progress.
            eprintln!("  {:?}: subs {} done {} seen {} left {}", start.elapsed(), map.subscribers(), done.load(Ordering::SeqCst), laggard.seen.load(Ordering::SeqCst), set.len());
        }
    }
    let (t, ticks) = (start.elapsed(), cpu_ticks() - cpu0);
    eprintln!(
        "fast={fast} writers={writers} delay={delay_ms}ms: all done in {t:?}; laggard dropped at {dropped_at:?} \
         (time, ticks, writes done), told {}; CPU {:.2} s ({:.0}% of wall); bystander gets \
         {gets}, worst {worst:?}",
        laggard.seen.load(Ordering::SeqCst),
        ticks as f64 / 100.0,
        ticks as f64 / t.as_secs_f64(),
    );
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn waiting_writers_wake_up_cost() {
    tokio::time::timeout(Duration::from_secs(180), async {
        run(0, 8, 100).await;
        run(16, 80, 100).await;
        run(16, 960, 100).await;
        run(16, 80, 0).await;
        run(16, 960, 0).await;
    })
    .await
    .expect("within 180 s");
}
