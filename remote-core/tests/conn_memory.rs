//! Closed connections give back all their memory: after rounds of
//! connections that each made many concurrent calls are closed, the live
//! heap (a counting global allocator; its own test binary, tests one at a
//! time) returns to its baseline and does not grow with the rounds.
//!
//! Counting note: `stats_alloc` already adds a `realloc`'s growth to
//! `bytes_allocated` (and its shrink to `bytes_deallocated`), so the live
//! heap is `bytes_allocated - bytes_deallocated`. Adding `bytes_reallocated`
//! on top counts every growth twice and reads as a "leak" proportional to
//! the number of buffers that grew (hence to the calls' concurrency) that
//! never goes away; that is what a suspected connection leak turned out to
//! be.

#[path = "support/counting.rs"]
mod counting;

use std::time::{Duration, Instant};

use counting::live;
use futures_util::future::join_all;
use remote_core::collections::{RemoteList, SharedVec};
use remote_core::{Connection, ConnectionBuilder, Server};

/// Polls (from a plain thread) until the live heap is at most `bound`
/// bytes above `baseline`, for at most 60 s; the last excess seen.
fn settles(baseline: isize, bound: isize) -> isize {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let excess = live() - baseline;
        if excess <= bound || Instant::now() >= end {
            return excess;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (at most 60 s) until at most `tasks` tasks are alive on `rt`:
/// the closed connections' readers and writers have ended.
fn quiesce(rt: &tokio::runtime::Runtime, tasks: usize) {
    let end = Instant::now() + Duration::from_secs(60);
    while rt.metrics().num_alive_tasks() > tasks && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        rt.metrics().num_alive_tasks() <= tasks,
        "{} tasks still alive 60 s after the connections closed",
        rt.metrics().num_alive_tasks()
    );
}

/// Calls per connection, and how many are in flight at once.
const CALLS: usize = 2000;
const CONCURRENT: usize = 100;

/// `CALLS` `len()` calls on `list`, `CONCURRENT` at a time.
async fn hammer(list: &remote_core::Remote<dyn RemoteList<u64>>) {
    for _ in 0..CALLS / CONCURRENT {
        let lens = join_all((0..CONCURRENT).map(|_| list.len())).await;
        for len in lens {
            assert_eq!(len.unwrap(), 1);
        }
    }
}

/// One in-memory connection pair: many concurrent calls, then both ends
/// closed and their close awaited.
async fn pair_round() {
    let v = SharedVec::<u64>::new();
    v.push(1).await.unwrap();
    let (s, c) = Connection::pair(
        ConnectionBuilder::new().serve(v.remote()),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let list = c.root::<dyn RemoteList<u64>>();
    hammer(&list).await;
    drop(list);
    c.close();
    s.close();
    c.closed().await;
    s.closed().await;
}

/// Bytes a round may leave above the baseline. One leaked connection pair
/// (its state, tables and buffers) holds about 7.5 KB after these calls;
/// measured residue without a leak is 0 to 300 bytes (the runtime's own
/// bookkeeping).
const BOUND: isize = 4 << 10;

#[test]
fn connection_pairs_closed_on_a_live_runtime_give_their_memory_back() {
    let _serial = counting::serial();
    let rt = counting::runtime();
    // Warm up: the runtime's own caches and each thread's capped scratch
    // buffers reach their size here, once per process, not per connection.
    for _ in 0..2 {
        rt.block_on(pair_round());
        quiesce(&rt, 0);
    }
    // Allocated before the baseline: its growth is not the connections'.
    let mut after = Vec::with_capacity(10);
    let baseline = live();
    for round in 0..10 {
        rt.block_on(pair_round());
        quiesce(&rt, 0);
        let excess = settles(baseline, BOUND);
        assert!(
            excess <= BOUND,
            "round {round}: {excess} bytes above the baseline after its connections closed"
        );
        after.push(excess);
    }
    // Nothing accumulates: the last round holds no more than the first.
    assert!(
        after[9] <= after[0].max(0) + (1 << 10),
        "the heap grew over ten rounds: {after:?}"
    );
}

#[test]
fn a_dropped_runtime_leaves_nothing_of_its_connections() {
    let _serial = counting::serial();
    // The colleague's measurement: a runtime per round, dropped after its
    // connections closed (its worker threads end, freeing their
    // thread-locals, possibly just after `drop` returns).
    let round = || {
        let rt = counting::runtime();
        rt.block_on(pair_round());
        quiesce(&rt, 0);
        drop(rt);
    };
    round();
    let baseline = live();
    for n in 0..5 {
        round();
        let excess = settles(baseline, 1 << 10);
        assert!(
            excess <= 1 << 10,
            "round {n}: {excess} bytes left after the connections and the runtime went"
        );
    }
}

#[test]
fn a_server_returns_to_its_baseline_after_busy_clients_leave() {
    let _serial = counting::serial();
    let rt = counting::runtime();
    let v = rt.block_on(async {
        let v = SharedVec::<u64>::new();
        v.push(1).await.unwrap();
        v
    });
    let v2 = v.clone();
    let server = rt.block_on(async move {
        Server::bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(move |_| v2.remote())
    });
    let addr = server.local_addr().to_owned();
    // Four clients at once, each with many calls in flight; all of them
    // leave, and the server has no connection left.
    let clients = |n: usize| {
        rt.block_on(async {
            let conns = join_all((0..n).map(|_| Connection::connect(&addr))).await;
            let conns: Vec<Connection> = conns.into_iter().map(Result::unwrap).collect();
            join_all(conns.iter().map(|c| async move {
                let list = c.root::<dyn RemoteList<u64>>();
                hammer(&list).await;
            }))
            .await;
            for c in &conns {
                c.close();
            }
            for c in &conns {
                c.closed().await;
            }
            let end = tokio::time::Instant::now() + Duration::from_secs(60);
            while server.connections() > 0 && tokio::time::Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(server.connections(), 0, "the server still counts a client");
        });
        // Only the accept loop is left.
        quiesce(&rt, 1);
    };
    clients(4);
    clients(4);
    let mut after = Vec::with_capacity(5);
    let baseline = live();
    for round in 0..5 {
        clients(4);
        let excess = settles(baseline, BOUND);
        assert!(
            excess <= BOUND,
            "round {round}: the server holds {excess} bytes above its baseline after its clients left"
        );
        after.push(excess);
    }
    assert!(
        after[4] <= after[0].max(0) + (1 << 10),
        "the server's heap grew over five rounds of clients: {after:?}"
    );
    rt.block_on(server.shutdown(Duration::from_secs(5)));
}
