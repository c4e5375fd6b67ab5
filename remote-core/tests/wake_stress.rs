//! No call, reply or release is left unwritten or unwoken, whichever path
//! queues it: promise (pipelined) calls, calls whose deadline has already
//! passed or passes while they wait, `call_blocking` from a blocking
//! thread, callbacks both ways and replies of spawned handlers written by
//! their own task, over pipes so small that nearly every direct write is
//! cut short, on several worker threads. Each step is bounded (60 s), so a
//! lost wake-up fails the test instead of hanging it; the export counts
//! return to zero once every proxy is dropped.

#[path = "support/node.rs"]
mod node;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use node::{all_released, pair, Node, NodePipeline, N};
use raw::{bounded, eventually};
use remote_core::{with_timeout, Connection, Error};

/// `tasks` tasks of `rounds` rounds each, every round going through each
/// kind of call once; every answer checked, every step bounded.
async fn mixed_workload(
    client: &Connection,
    client_live: &Arc<AtomicUsize>,
    tasks: u64,
    rounds: u64,
) {
    let root = client.root::<dyn Node>();
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (root, client_live, done) = (root.clone(), client_live.clone(), done.clone());
            tokio::spawn(async move {
                for r in 0..rounds {
                    let id = 1 + t * rounds + r;
                    // A promise: the call on it is sent before `make`'s
                    // reply; the object is released once both are dropped.
                    let p = root.make_pipelined(id);
                    assert_eq!(p.add(1, 2).await.unwrap(), id + 3);
                    drop(p);
                    // A deadline already passed: fails at once, nothing sent.
                    let late = with_timeout(Duration::ZERO, root.add(1, 2)).await;
                    assert!(matches!(late, Err(Error::DeadlineExceeded(_))), "{late:?}");
                    // A deadline that may pass while the call waits: it
                    // ends either way (answered or deadline_exceeded).
                    let data = vec![(id % 251) as u8; 200 + (id % 7) as usize * 50];
                    match with_timeout(Duration::from_millis(1), root.echo_later(data.clone()))
                        .await
                    {
                        Ok(v) => assert_eq!(v, data),
                        Err(Error::DeadlineExceeded(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                    // A spawned handler's reply, written by its own task
                    // when it is the only call running.
                    assert_eq!(root.echo_later(data.clone()).await.unwrap(), data);
                    // A callback: the server calls our object, then
                    // releases it.
                    let mine = N::remote(id, &client_live);
                    assert_eq!(root.read(mine).await.unwrap(), id);
                    // One of its objects handed back to it and dropped.
                    let obj = root.make(id).await.unwrap();
                    assert_eq!(root.read(obj).await.unwrap(), id);
                    // A blocking call from a blocking thread.
                    if r % 4 == t % 4 {
                        let h = remote_core::Remote::handle(&root).unwrap().clone();
                        let sum = tokio::task::spawn_blocking(move || {
                            remote_core::blocking::allow_blocking(|| {
                                h.call_blocking::<_, u64, Error>("add", (id, 1u64))
                            })
                        })
                        .await
                        .unwrap();
                        assert_eq!(sum.unwrap(), id + 1);
                    }
                    done.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    for h in handles {
        bounded(h).await.unwrap();
    }
    assert_eq!(done.load(SeqCst) as u64, tasks * rounds);
    assert!(!client.is_closed());
}

/// Every path above over a 128-byte pipe on four workers; then nothing is
/// left exported on either side and nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_of_call_ends_and_releases_over_a_tiny_pipe() {
    let (client, server, server_live) = pair(128).await;
    let client_live = Arc::new(AtomicUsize::new(0));
    // Many callers (calls and replies mostly queued among others), then
    // two (often alone: written by the caller's or the handler's task).
    mixed_workload(&client, &client_live, 12, 20).await;
    mixed_workload(&client, &client_live, 2, 60).await;
    all_released(
        || server.exported_objects(),
        &server_live,
        &client,
        &client_live,
    )
    .await;
    assert!(
        eventually(|| client.queued_output_bytes() == 0 && server.queued_output_bytes() == 0).await
    );
}

/// Calls of every kind in flight when the connection closes: each ends
/// (answered, or failed with the connection's loss), none waits for a
/// wake-up that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_in_flight_when_the_connection_closes_all_end() {
    let (client, server, _server_live) = pair(256).await;
    let root = client.root::<dyn Node>();
    let started = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let (root, started) = (root.clone(), started.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                loop {
                    started.fetch_add(1, SeqCst);
                    let r = match t % 3 {
                        0 => root
                            .echo_later(vec![t as u8; 300])
                            .await
                            .map(|v| v.len() as u64),
                        1 => root.make_pipelined(t).add(1, 1).await,
                        _ => root.add(t, 1).await,
                    };
                    match r {
                        Ok(_) => ok += 1,
                        Err(Error::ConnectionLost(_)) => return ok,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    assert!(eventually(|| started.load(SeqCst) >= 400).await);
    server.close();
    for h in handles {
        bounded(h).await.unwrap();
    }
    bounded(client.closed()).await;
    assert!(client.is_closed());
}
