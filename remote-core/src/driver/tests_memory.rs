//! A closed connection frees its shared state (tables, buffers, tasks):
//! no reference cycle or stray task keeps an `Arc<Shared>` alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;

use super::shared::Shared;
use crate::collections::{RemoteList, SharedVec};
use crate::{Connection, ConnectionBuilder, Error};

/// Waits (at most 60 s) until nothing holds `state` any more.
async fn freed(state: &Weak<Shared>) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while state.strong_count() > 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    state.strong_count() == 0
}

/// 200,000 small integers: a frame of about 200 KiB.
fn big_value() -> Vec<u8> {
    (0..200_000).map(|i| (i % 100) as u8).collect()
}

/// Limits under which no reader's timer fires during a test: no
/// keepalive, and calls' deadlines and the idle check an hour away.
fn quiet() -> crate::Limits {
    crate::Limits {
        keepalive_interval: None,
        idle_timeout: Duration::from_secs(3600),
        default_deadline: Duration::from_secs(3600),
        max_deadline: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// A server of `root` and its client over an in-memory pipe, both with
/// `limits`.
async fn pair_with<T: ?Sized + crate::interface::Interface>(
    limits: crate::Limits,
    root: crate::Remote<T>,
) -> (Connection, Connection) {
    Connection::pair(
        ConnectionBuilder::new().limits(limits.clone()).serve(root),
        ConnectionBuilder::new().limits(limits),
    )
    .await
    .unwrap()
}

/// A client and a server over an in-memory pipe, the server serving a
/// one-item list; only weak references to the server's state are kept (a
/// server holds its connections only while they are open).
async fn connect() -> (Connection, Weak<Shared>) {
    let v = SharedVec::<u64>::new();
    v.push(7).await.unwrap();
    let (server, client) = Connection::pair(
        ConnectionBuilder::new().serve(v.remote()),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let server_state = Arc::downgrade(&server.shared);
    (client, server_state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_after_many_concurrent_calls_free_their_state() {
    for round in 0..5 {
        let (client, server_state) = connect().await;
        let client_state = Arc::downgrade(&client.shared);
        let list = client.root::<dyn RemoteList<u64>>();
        for _ in 0..10 {
            for len in join_all((0..100).map(|_| list.len())).await {
                assert_eq!(len.unwrap(), 1);
            }
        }
        drop(list);
        client.close();
        client.closed().await;
        drop(client);
        assert!(
            freed(&client_state).await,
            "round {round}: the client's connection state outlived its close"
        );
        assert!(
            freed(&server_state).await,
            "round {round}: the server's connection state outlived its client"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_with_calls_in_flight_frees_its_state() {
    for round in 0..5 {
        let (client, server_state) = connect().await;
        let client_state = Arc::downgrade(&client.shared);
        let list = client.root::<dyn RemoteList<u64>>();
        // 100 callers, each making calls until the connection goes.
        let done = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..100)
            .map(|_| {
                let (list, done) = (list.clone(), done.clone());
                tokio::spawn(async move {
                    loop {
                        match list.len().await {
                            Ok(len) => assert_eq!(len, 1),
                            Err(e) => return e,
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        drop(list);
        // Closed once 1,000 calls completed, while the callers keep making
        // more: the tables and buffers are in use.
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < 1000 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            done.load(Ordering::Relaxed) >= 1000,
            "the calls did not run"
        );
        client.close();
        for caller in callers {
            let e = caller.await.unwrap();
            assert!(matches!(e, Error::ConnectionLost(_)), "{e:?}");
        }
        drop(client);
        assert!(
            freed(&client_state).await,
            "round {round}: the client's connection state outlived its close"
        );
        assert!(
            freed(&server_state).await,
            "round {round}: the server's connection state outlived its client"
        );
    }
}

/// Large calls and replies are moved into the output queue, not copied
/// (`Shared::send_vec_as`): what the budget counts for them is given back once
/// they are written, on both ends.
#[tokio::test]
async fn large_frames_moved_to_the_writer_leave_nothing_counted() {
    let v = SharedVec::<Vec<u8>>::new();
    let (server, client) = Connection::pair(
        ConnectionBuilder::new().serve(v.remote()),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let list = client.root::<dyn RemoteList<Vec<u8>>>();
    // 200,000 small integers: a frame of about 200 KiB each way.
    let big = big_value();
    for round in 0..3u64 {
        assert_eq!(list.push(big.clone()).await.unwrap(), round);
        assert_eq!(list.get(round).await.unwrap().as_deref(), Some(&big[..]));
    }
    for (name, shared) in [("client", &client.shared), ("server", &server.shared)] {
        // Large buffers kept for the next large frame (`kept.rs`) stay
        // counted: everything else is given back.
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        let counted = || shared.budget.used() - shared.kept.bytes();
        while (shared.queued_output() > 0 || counted() > 16 << 10)
            && tokio::time::Instant::now() < end
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(shared.queued_output(), 0, "{name}: output left queued");
        assert!(
            counted() <= 16 << 10,
            "{name}: {} bytes still counted in the budget",
            counted()
        );
        // At most a spare output buffer and a read buffer, each of about a
        // frame's size.
        assert!(
            shared.kept.bytes() <= 4 * big.len() + (64 << 10),
            "{name}: {} bytes kept",
            shared.kept.bytes()
        );
    }
}

/// Large buffers kept for the next large frame are given back when the
/// connection goes idle (its reader's timer, here the keepalive's).
#[tokio::test]
async fn kept_large_buffers_are_given_back_when_idle() {
    let v = SharedVec::<Vec<u8>>::new();
    let (server, client) = pair_with(
        crate::Limits {
            keepalive_interval: Some(Duration::from_millis(200)),
            ..Default::default()
        },
        v.remote(),
    )
    .await;
    let list = client.root::<dyn RemoteList<Vec<u8>>>();
    let big = big_value();
    // Right after a large call the client keeps the buffer it wrote (the
    // spare its next encode takes) and the server the one it read into
    // (unless a timer fired during that call: then after a later one).
    let (mut client_kept, mut server_kept) = (false, false);
    for round in 0..50u64 {
        assert_eq!(list.push(big.clone()).await.unwrap(), round);
        client_kept |= client.shared.kept.bytes() >= big.len();
        server_kept |= server.shared.kept.bytes() >= big.len();
        if client_kept && server_kept {
            break;
        }
    }
    assert!(
        client_kept,
        "the client never kept the large buffer it wrote"
    );
    assert!(
        server_kept,
        "the server never kept the large buffer it read"
    );
    for (name, shared) in [("client", &client.shared), ("server", &server.shared)] {
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        while shared.kept.bytes() > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            shared.kept.bytes(),
            0,
            "{name}: kept buffers not given back"
        );
    }
}

/// Large buffers kept for the next large frame are given back as soon as a
/// task waits for room in the budget, idle or not, not at the next idle
/// check: a red-team pass found a connection's kept buffer holding the room
/// its own next large WebSocket message waited for, until the call's
/// deadline. (No keepalive, and calls' deadlines and the idle check an
/// hour away: the readers' timers do not fire.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_large_buffers_are_given_back_when_a_task_waits_for_room() {
    let v = SharedVec::<Vec<u8>>::new();
    let (server, client) = pair_with(quiet(), v.remote()).await;
    let list = client.root::<dyn RemoteList<Vec<u8>>>();
    let big = big_value();
    // The client keeps the buffer it wrote, the server the one it read.
    for (name, conn) in [("client", &client), ("server", &server)] {
        let mut kept = false;
        for _ in 0..50 {
            list.push(big.clone()).await.unwrap();
            kept = conn.shared.kept.bytes() >= big.len();
            if kept {
                break;
            }
        }
        assert!(kept, "{name}: never kept a large buffer");
        // A task starts to wait for room in the connection's budget.
        let budget = &conn.shared.budget;
        let starving = budget.starving();
        starving.set(true);
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while conn.shared.kept.bytes() > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            conn.shared.kept.bytes(),
            0,
            "{name}: kept buffers not given back while a task waits for room"
        );
        // Nothing is kept while it waits...
        list.push(big.clone()).await.unwrap();
        list.push(big.clone()).await.unwrap();
        assert_eq!(conn.shared.kept.bytes(), 0, "{name}: kept while short");
        drop(starving);
    }
}

/// An object whose `take` never returns.
#[crate::remote]
trait Sink: Send + Sync {
    async fn take(&self, data: Vec<u8>) -> Result<(), Error>;
}

struct Hole;

#[crate::remote]
impl Sink for Hole {
    async fn take(&self, _data: Vec<u8>) -> Result<(), Error> {
        std::future::pending().await
    }
}

/// A spare output buffer kept by the writer after the reader last looked
/// (two large calls that are never answered: the reader has no turn after
/// them) is given back too when a task waits for room: the writer tells
/// the reader it keeps one (`Control::Kept`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_kept_while_the_reader_waits_is_given_back_when_a_task_waits_for_room() {
    let root: crate::Remote<dyn Sink> = crate::Remote::new(Arc::new(Hole));
    let (_server, client) = pair_with(quiet(), root).await;
    let sink = Arc::new(client.root::<dyn Sink>());
    let big = big_value();
    let mut calls = Vec::new();
    let base = client.stats().bytes_out;
    for i in 1..=2u64 {
        let (sink, arg) = (sink.clone(), big.clone());
        calls.push(tokio::spawn(async move { sink.take(arg).await }));
        // One batch each (the first written before the second is made):
        // the second follows the first, so its buffer is kept.
        let written = || client.stats().bytes_out - base >= i * big.len() as u64;
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while !written() && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(written(), "call {i} not written");
    }
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while !client.shared.kept.has_spare() && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(client.shared.kept.has_spare(), "the writer kept no spare");
    let starving = client.shared.budget.starving();
    starving.set(true);
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.shared.kept.bytes() > 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        client.shared.kept.bytes(),
        0,
        "the spare was not given back"
    );
    drop(starving);
    for c in calls {
        c.abort();
    }
}

/// A peer's object whose `open` never returns (the call waits forever).
#[crate::remote]
trait Stuck: Send + Sync {
    async fn open(&self) -> Result<crate::Remote<dyn Stuck>, Error>;
}

struct Forever(Arc<AtomicUsize>);

#[crate::remote]
impl Stuck for Forever {
    async fn open(&self) -> Result<crate::Remote<dyn Stuck>, Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        std::future::pending().await
    }
}

/// A pair whose server serves a [`Forever`], and the client's promise of
/// `open` once the server runs it. The promise is its call's waiter in the
/// client's call table, and holds the client's state: a cycle, broken
/// however the connection ends.
async fn pending_promise() -> (Connection, Connection, crate::Promise<dyn Stuck>) {
    let started = Arc::new(AtomicUsize::new(0));
    let root: crate::Remote<dyn Stuck> = crate::Remote::new(Arc::new(Forever(started.clone())));
    let (server, client) = Connection::pair(
        ConnectionBuilder::new().serve(root),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let api = client.root::<dyn Stuck>();
    let p: crate::Promise<dyn Stuck> = api.handle().unwrap().pipeline("open", ());
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while started.load(Ordering::Relaxed) == 0 && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(started.load(Ordering::Relaxed), 1, "the call did not start");
    (server, client, p)
}

#[tokio::test]
async fn a_connection_closed_with_a_promise_pending_frees_its_state() {
    let (server, client, p) = pending_promise().await;
    let client_state = Arc::downgrade(&client.shared);
    client.close();
    assert!(matches!(p.resolved().await, Err(Error::ConnectionLost(_))));
    drop((p, client, server));
    assert!(
        freed(&client_state).await,
        "the client's state outlived its close (promise in its call table)"
    );
}

#[test]
fn a_runtime_dropped_with_a_promise_pending_frees_the_state() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client_state = rt.block_on(async {
        let (server, client, p) = pending_promise().await;
        let state = Arc::downgrade(&client.shared);
        drop((p, client, server));
        state
    });
    assert!(client_state.strong_count() > 0, "the connection is open");
    // Dropping the runtime drops the reader task: its disconnect empties
    // the call table (and so settles the promise).
    drop(rt);
    assert_eq!(
        client_state.strong_count(),
        0,
        "the client's state outlived its runtime (promise in its call table)"
    );
}
