//! Subscriptions under abuse: bounded per connection, idempotent, ended
//! when their connection closes, while another client is served.

use futures_util::future::join_all;
use remote_core::collections::{on_change, on_push, RemoteList, RemoteMap, SharedMap, SharedVec};
use remote_core::{Connection, Error, Limits, Remote, Server, ServerHandle};
use tokio::sync::mpsc;

use super::{eventually, recv};

async fn list_server(log: &std::sync::Arc<SharedVec<u32>>, limits: Limits) -> ServerHandle {
    let log = log.clone();
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| log.remote())
}

async fn client(server: &ServerHandle) -> (Connection, Remote<dyn RemoteList<u32>>) {
    let conn = Connection::connect(server.local_addr()).await.unwrap();
    let list = conn.root::<dyn RemoteList<u32>>();
    (conn, list)
}

/// Subscribes a listener to `list`'s pushes: `(index, value)` each.
async fn pushes(list: &Remote<dyn RemoteList<u32>>) -> mpsc::UnboundedReceiver<(u64, u32)> {
    let (tx, rx) = mpsc::unbounded_channel();
    list.subscribe(on_push(move |i, x: u32| {
        let _ = tx.send((i, x));
    }))
    .await
    .unwrap();
    rx
}

fn assert_limit(err: &Error, name: &str) {
    match err {
        Error::Remote(r) => {
            assert_eq!(r.kind, "limit_exceeded", "{err}");
            assert!(r.message.contains(name), "{err}");
        }
        other => panic!("expected limit_exceeded naming {name}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_the_same_listener_again_is_a_no_op() {
    let log = SharedVec::<u32>::new();
    let server = list_server(&log, Limits::default()).await;
    let (_conn, list) = client(&server).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = on_push(move |i, x: u32| {
        let _ = tx.send((i, x));
    });
    // Far over the per-connection limit: all accepted, counted once.
    for _ in 0..10 {
        let calls = (0..100).map(|_| list.subscribe(listener.clone()));
        for r in join_all(calls).await {
            r.unwrap();
        }
    }
    assert_eq!(log.subscribers(), 1);
    list.push(7).await.unwrap();
    list.push(8).await.unwrap();
    // Notified once per push: a second subscription would deliver (0, 7)
    // twice before (1, 8).
    assert_eq!(recv(&mut rx).await, (0, 7));
    assert_eq!(recv(&mut rx).await, (1, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_capped_naming_the_limit() {
    let limits = Limits {
        max_subscriptions_per_connection: 4,
        ..Limits::default()
    };
    let log = SharedVec::<u32>::new();
    let server = list_server(&log, limits).await;
    let (_hostile_conn, hostile) = client(&server).await;
    for _ in 0..4 {
        hostile.subscribe(on_push(|_, _: u32| {})).await.unwrap();
    }
    for _ in 0..3 {
        let err = hostile
            .subscribe(on_push(|_, _: u32| {}))
            .await
            .unwrap_err();
        assert_limit(&err, "max_subscriptions_per_connection");
    }
    assert_eq!(log.subscribers(), 4);

    // The limit is per connection: another client subscribes and is told
    // of every push.
    let (_conn, honest) = client(&server).await;
    let mut rx = pushes(&honest).await;
    assert_eq!(log.subscribers(), 5);
    for n in 0..5 {
        assert_eq!(honest.push(n).await.unwrap(), u64::from(n));
    }
    for n in 0..5u32 {
        assert_eq!(recv(&mut rx).await, (u64::from(n), n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connections_subscriptions_end_when_it_closes() {
    let log = SharedVec::<u32>::new();
    let server = list_server(&log, Limits::default()).await;
    let (leaving, list) = client(&server).await;
    for _ in 0..3 {
        list.subscribe(on_push(|_, _: u32| {})).await.unwrap();
    }
    let (_conn, staying) = client(&server).await;
    let mut rx = pushes(&staying).await;
    assert_eq!(log.subscribers(), 4);

    leaving.close();
    // No push happens: the subscriptions go with the connection itself.
    assert!(
        eventually(|| log.subscribers() == 1).await,
        "{} subscriptions left",
        log.subscribers()
    );
    staying.push(1).await.unwrap();
    assert_eq!(recv(&mut rx).await, (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_caps_subscriptions_and_drops_them_with_their_connection() {
    let limits = Limits {
        max_subscriptions_per_connection: 2,
        ..Limits::default()
    };
    let map = SharedMap::<u32, u32>::new();
    let served = map.clone();
    let server = Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| served.remote());
    let conn = Connection::connect(server.local_addr()).await.unwrap();
    let m = conn.root::<dyn RemoteMap<u32, u32>>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = on_change(move |k: u32, v: Option<u32>| {
        let _ = tx.send((k, v));
    });
    m.subscribe(listener.clone()).await.unwrap();
    m.subscribe(listener).await.unwrap(); // the same one: no-op
    m.subscribe(on_change(|_: u32, _: Option<u32>| {}))
        .await
        .unwrap();
    let err = m
        .subscribe(on_change(|_: u32, _: Option<u32>| {}))
        .await
        .unwrap_err();
    assert_limit(&err, "max_subscriptions_per_connection");
    assert_eq!(map.subscribers(), 2);
    m.insert(1, 10).await.unwrap();
    m.remove(1).await.unwrap();
    assert_eq!(recv(&mut rx).await, (1, Some(10)));
    assert_eq!(recv(&mut rx).await, (1, None));
    conn.close();
    assert!(eventually(|| map.subscribers() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_spamming_subscribe_does_not_disturb_another() {
    let log = SharedVec::<u32>::new();
    let server = list_server(&log, Limits::default()).await;
    let limit = Limits::default().max_subscriptions_per_connection;
    let (_hostile_conn, hostile) = client(&server).await;
    let (_conn, honest) = client(&server).await;
    let mut rx = pushes(&honest).await;

    let same = on_push(|_, _: u32| {});
    hostile.subscribe(same.clone()).await.unwrap();
    let abuse = tokio::spawn(async move {
        let mut refused = 0;
        for _ in 0..20 {
            let calls = (0..50).map(|n| {
                // Alternately the same listener and a fresh one.
                let l = if n % 2 == 0 {
                    same.clone()
                } else {
                    on_push(|_, _: u32| {})
                };
                hostile.subscribe(l)
            });
            for r in join_all(calls).await {
                if let Err(e) = r {
                    assert_limit(&e, "max_subscriptions_per_connection");
                    refused += 1;
                }
            }
        }
        refused
    });
    for n in 0..200u32 {
        assert_eq!(honest.push(n).await.unwrap(), u64::from(n));
    }
    for n in 0..200u32 {
        assert_eq!(recv(&mut rx).await, (u64::from(n), n));
    }
    let refused = abuse.await.unwrap();
    assert_eq!(refused, 20 * 25 - (limit - 1), "all over the limit refused");
    assert_eq!(log.subscribers(), limit + 1);
}

/// A map listener that waits for the gate before its first delivery.
struct Stalled {
    gate: tokio::sync::Semaphore,
    seen: std::sync::atomic::AtomicUsize,
}

#[remote_core::remote]
impl remote_core::collections::MapListener<u32, u32> for Stalled {
    async fn changed(&self, _: u32, _: Option<u32>) -> Result<(), Error> {
        let _pass = self.gate.acquire().await.map_err(|_| Error::Cancelled)?;
        self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_subscriber_too_far_behind_is_dropped_and_others_are_not() {
    use remote_core::collections::SUBSCRIBER_QUEUE;
    let map = SharedMap::<u32, u32>::new();
    let stalled = std::sync::Arc::new(Stalled {
        gate: tokio::sync::Semaphore::new(0),
        seen: Default::default(),
    });
    let listener: Remote<dyn remote_core::collections::MapListener<u32, u32>> =
        Remote::new(stalled.clone());
    map.remote().subscribe(listener).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    map.remote()
        .subscribe(on_change(move |k: u32, _: Option<u32>| {
            let _ = tx.send(k);
        }))
        .await
        .unwrap();
    let n = SUBSCRIBER_QUEUE as u32 + 10;
    for k in 0..n {
        map.remote().insert(k, k).await.unwrap();
        // This one keeps up.
        assert_eq!(recv(&mut rx).await, k);
    }
    stalled.gate.add_permits(n as usize);
    // Writers waited for it (for a local listener's patience, delivering
    // nothing) once the log was full, then gave up on it: its first change,
    // in flight, was abandoned (or, opened just then, delivered), and the
    // next it needs is forgotten.
    assert!(eventually(|| map.subscribers() == 1).await);
    assert!(stalled.seen.load(std::sync::atomic::Ordering::Relaxed) <= 1);
    map.remote().insert(0, 1).await.unwrap();
    assert_eq!(recv(&mut rx).await, 0);
}
