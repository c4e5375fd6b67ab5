//! Calls, references, callbacks, cancellation, deadlines and disconnects,
//! over every transport that needs no child process.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use remote_core::{
    Connection, ConnectionBuilder, Error, Remote, Server, ServerHandle, TlsClientConfig,
    TlsServerConfig,
};
use support::{eventually, Calc, CalcError, Counter, Stats};

#[derive(Clone, Copy, Debug)]
enum Transport {
    Memory,
    Tcp,
    Unix,
    Ws,
    Tls,
    Wss,
}

const ALL: [Transport; 6] = [
    Transport::Memory,
    Transport::Tcp,
    Transport::Unix,
    Transport::Ws,
    Transport::Tls,
    Transport::Wss,
];

struct Fixture {
    client: Connection,
    root: Remote<dyn Calc>,
    server_stats: Arc<Stats>,
    server_side: Option<Connection>,
    server: Option<ServerHandle>,
    _dir: Option<tempfile::TempDir>,
}

async fn setup(t: Transport) -> Fixture {
    support::quiet_panics::install();
    let server_stats = Arc::new(Stats::default());
    let stats = server_stats.clone();
    let factory = move || Counter::remote(0, stats.clone());
    match t {
        Transport::Memory => {
            let (server_side, client) = Connection::pair(
                ConnectionBuilder::new().serve(factory()),
                ConnectionBuilder::new(),
            )
            .await
            .unwrap();
            let root = client.root::<dyn Calc>();
            Fixture {
                client,
                root,
                server_stats,
                server_side: Some(server_side),
                server: None,
                _dir: None,
            }
        }
        _ => {
            let (addr, dir) = match t {
                Transport::Tcp => ("tcp://127.0.0.1:0".to_owned(), None),
                Transport::Ws => ("ws://127.0.0.1:0/calc".to_owned(), None),
                Transport::Tls => ("tls://127.0.0.1:0".to_owned(), None),
                Transport::Wss => ("wss://127.0.0.1:0/calc".to_owned(), None),
                _ => {
                    let dir = tempfile::tempdir().unwrap();
                    (
                        format!("unix://{}", dir.path().join("calc.sock").display()),
                        Some(dir),
                    )
                }
            };
            // TLS: a CA made for this fixture; other transports ignore it.
            let ca = pki::Ca::new("rpc test CA");
            let cert = ca.server();
            let server_tls =
                TlsServerConfig::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
                    .unwrap();
            let client_tls = TlsClientConfig::new()
                .with_root_pem(ca.pem().as_bytes())
                .unwrap();
            let server = Server::builder()
                .tls(server_tls)
                .bind(&addr)
                .await
                .unwrap()
                .serve(move |_| factory());
            let client = ConnectionBuilder::new()
                .tls(client_tls)
                .connect(server.local_addr())
                .await
                .unwrap();
            let root = client.root::<dyn Calc>();
            Fixture {
                client,
                root,
                server_stats,
                server_side: None,
                server: Some(server),
                _dir: dir,
            }
        }
    }
}

/// Runs `f` on every transport, each bounded in time.
macro_rules! on_every_transport {
    ($name:ident, |$fx:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for t in ALL {
                let $fx = setup(t).await;
                tokio::time::timeout(Duration::from_secs(120), async move { $body })
                    .await
                    .unwrap_or_else(|_| panic!("{} timed out on {t:?}", stringify!($name)));
            }
        }
    };
}

on_every_transport!(call_returns_result, |fx| {
    assert_eq!(fx.root.add(2, 3).await.unwrap(), 5);
    assert!(fx.root.is_remote());
});

on_every_transport!(pass_reference_and_callback_while_call_in_flight, |fx| {
    // A calls B, B calls back into A while A's call is in flight, A answers, B returns.
    let stats = Arc::new(Stats::default());
    let mine = Counter::remote(10, stats.clone());
    assert_eq!(fx.root.call_back(mine.clone(), 5).await.unwrap(), 16);
    // The server dropped its proxy: our export is released.
    assert!(eventually(60, || fx.client.exported_objects() == 0).await);
    assert_eq!(stats.live.load(SeqCst), 1, "still alive here: we hold it");
});

on_every_transport!(hundred_concurrent_calls_on_one_connection, |fx| {
    let calls = (0..100i64).map(|i| {
        let root = fx.root.clone();
        tokio::spawn(async move { (i, root.add(i, i).await) })
    });
    for c in futures_util::future::join_all(calls).await {
        let (i, r) = c.unwrap();
        assert_eq!(r.unwrap(), 2 * i);
    }
});

on_every_transport!(
    panic_in_method_is_a_remote_error_and_server_keeps_serving,
    |fx| {
        let err = fx.root.boom().await.unwrap_err();
        match &err {
            Error::Remote(r) => {
                assert_eq!(r.kind, "panic");
                assert!(r.message.contains("boom at counter 0"), "{r}");
            }
            other => panic!("expected a remote panic, got {other:?}"),
        }
        assert!(err.to_string().starts_with("remote error (panic)"), "{err}");
        assert_eq!(fx.root.add(1, 1).await.unwrap(), 2);
    }
);

on_every_transport!(typed_application_errors_travel_as_data, |fx| {
    assert_eq!(fx.root.checked(-3).await, Err(CalcError::Negative(-3)));
    assert_eq!(fx.root.checked(4).await, Ok(4));
});

on_every_transport!(dropping_a_call_cancels_it_at_the_server, |fx| {
    let slow = tokio::time::timeout(Duration::from_millis(100), fx.root.sleep(20_000)).await;
    assert!(slow.is_err(), "the call was still running");
    assert!(
        eventually(60, || fx.server_stats.sleeping.load(SeqCst) == 0).await,
        "handler was aborted"
    );
    assert_eq!(fx.root.add(1, 2).await.unwrap(), 3);
});

on_every_transport!(deadline_expires_for_caller_and_server, |fx| {
    let r = remote_core::with_timeout(Duration::from_millis(100), fx.root.sleep(20_000)).await;
    assert!(matches!(r, Err(Error::DeadlineExceeded(_))), "{r:?}");
    assert!(eventually(60, || fx.server_stats.sleeping.load(SeqCst) == 0).await);
    // The server-side deadline stops work even if the caller keeps waiting:
    // a 300 ms deadline and a 20 s handler.
    let r = remote_core::with_timeout(Duration::from_millis(300), async {
        let fut = fx.root.sleep(20_000);
        fut.await
    })
    .await;
    assert!(r.is_err());
});

on_every_transport!(nested_calls_inherit_what_is_left_of_the_deadline, |fx| {
    let mine = Counter::remote(0, Arc::new(Stats::default()));
    // Default deadline (10 s) when nothing is set.
    let seen = fx.root.relay_time_left(mine.clone()).await.unwrap();
    assert!(seen > 5_000 && seen <= 10_000, "{seen}");
    // A 2 s deadline: the server's outgoing call gets what is left of it.
    let seen = remote_core::with_timeout(Duration::from_secs(2), fx.root.relay_time_left(mine))
        .await
        .unwrap();
    assert!(seen > 0 && seen < 2_000, "nested call saw {seen} ms");
});

on_every_transport!(returned_objects_live_until_the_proxy_is_dropped, |fx| {
    let made = fx.root.make().await.unwrap();
    assert!(made.is_remote());
    assert_eq!(fx.server_stats.live.load(SeqCst), 2);
    let n = made.add(0, 0).await.unwrap();
    assert!(n >= 1000, "{n}");
    let copy = made.clone();
    drop(made);
    assert_eq!(
        copy.add(1, 0).await.unwrap(),
        n + 1,
        "a clone keeps it alive"
    );
    drop(copy);
    assert!(
        eventually(60, || fx.server_stats.live.load(SeqCst) == 1).await,
        "released and dropped"
    );
});

on_every_transport!(own_object_handed_back_resolves_to_the_original, |fx| {
    // Ours, sent and returned: the very same Arc, not a proxy of a proxy.
    let stats = Arc::new(Stats::default());
    let mine = Counter::remote(7, stats.clone());
    let back = fx.root.same(mine.clone()).await.unwrap();
    assert!(!back.is_remote());
    assert!(Arc::ptr_eq(back.as_arc(), mine.as_arc()));
    // Theirs, sent to them: they get their original and return it.
    let theirs = fx.root.make().await.unwrap();
    let again = fx.root.same(theirs.clone()).await.unwrap();
    assert!(again.same_object(&theirs));
    assert_eq!(
        fx.server_stats.live.load(SeqCst),
        2,
        "no second object was made"
    );
});

on_every_transport!(objects_held_by_a_peer_stay_alive_until_released, |fx| {
    let stats = Arc::new(Stats::default());
    fx.root
        .keep(Counter::remote(3, stats.clone()))
        .await
        .unwrap();
    assert_eq!(
        stats.live.load(SeqCst),
        1,
        "the server's proxy keeps our object alive"
    );
    assert_eq!(fx.root.call_kept(4).await.unwrap(), 7);
    assert_eq!(fx.client.exported_objects(), 1);
});

on_every_transport!(
    blocking_proxy_call_refuses_async_thread_and_works_elsewhere,
    |fx| {
        let err = fx.root.blocking_add(1, 2).unwrap_err();
        assert!(matches!(err, Error::BlockingInAsync), "{err:?}");
        assert!(err.to_string().contains("spawn_blocking"));
        let root = fx.root.clone();
        let from_thread = std::thread::spawn(move || root.blocking_add(20, 22))
            .join()
            .unwrap();
        assert_eq!(from_thread.unwrap(), 42);
        let root = fx.root.clone();
        let in_pool = tokio::task::spawn_blocking(move || {
            remote_core::blocking::allow_blocking(|| root.blocking_add(1, 1))
        })
        .await
        .unwrap();
        assert_eq!(in_pool.unwrap(), 2);
    }
);

on_every_transport!(
    client_disconnect_mid_call_fails_pending_and_frees_objects,
    |fx| {
        let stats = Arc::new(Stats::default());
        fx.root
            .keep(Counter::remote(1, stats.clone()))
            .await
            .unwrap();
        let root = fx.root.clone();
        let pending = tokio::spawn(async move { root.sleep(20_000).await });
        assert!(eventually(60, || fx.server_stats.sleeping.load(SeqCst) == 1).await);
        fx.client.close();
        let r = pending.await.unwrap();
        assert!(matches!(&r, Err(Error::ConnectionLost(_))), "{r:?}");
        // Our object exported to that connection is dropped at once.
        assert!(eventually(60, || stats.live.load(SeqCst) == 0).await);
        // The server's side: handler aborted, its root dropped.
        assert!(eventually(60, || fx.server_stats.sleeping.load(SeqCst) == 0).await);
        assert!(eventually(60, || fx.server_stats.live.load(SeqCst) == 0).await);
        assert!(matches!(
            fx.root.add(1, 1).await,
            Err(Error::ConnectionLost(_))
        ));
    }
);

on_every_transport!(server_disconnect_mid_call_fails_pending_calls, |fx| {
    let root = fx.root.clone();
    let pending = tokio::spawn(async move { root.sleep(20_000).await });
    assert!(eventually(60, || fx.server_stats.sleeping.load(SeqCst) == 1).await);
    let Fixture {
        server_side,
        server,
        client,
        ..
    } = fx;
    if let Some(s) = server_side {
        s.close();
    }
    // The grace is short: the call sleeps for 20 s, far past it, so the
    // shutdown cuts the connection under it on any machine (5 s of grace
    // took 25 s of the suite, once a transport).
    if let Some(s) = server {
        s.shutdown(Duration::from_millis(200)).await;
    }
    let r = pending.await.unwrap();
    assert!(matches!(&r, Err(Error::ConnectionLost(_))), "{r:?}");
    let reason = client.closed().await;
    assert!(reason.to_string().contains("closed"), "{reason}");
});

on_every_transport!(streams_are_pulled_lazily_in_batches, |fx| {
    use futures_util::StreamExt;
    // The receiver picks its window: at most 4 items per round trip.
    let mut s = fx.root.numbers(1000, 4).await.unwrap().with_batch(4);
    assert!(s.is_remote());
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(s.next().await.unwrap().unwrap());
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    // Two batches of 4 were pulled; the producer was not polled any further.
    assert_eq!(fx.server_stats.produced.load(SeqCst), 8);
    // Drain a short stream completely.
    let all: Vec<u32> = fx
        .root
        .numbers(10, 3)
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    drop(s);
    // The abandoned stream's source is released.
    assert!(eventually(60, || fx.client.imported_objects() == 0).await);
});

#[tokio::test]
async fn sending_a_reference_outside_a_call_is_an_error() {
    let stats = Arc::new(Stats::default());
    let r = Counter::remote(1, stats);
    let err = rmp_serde::to_vec(&r).unwrap_err();
    assert!(
        err.to_string()
            .contains("only be sent as part of a remote call"),
        "{err}"
    );
}

#[tokio::test]
async fn call_too_large_for_the_frame_limit_fails_locally_naming_the_limit() {
    let fx = setup(Transport::Memory).await;
    let err = fx.root.echo(vec![7u8; 2 << 20]).await.unwrap_err();
    match err {
        Error::LimitExceeded { limit, value, .. } => {
            assert_eq!((limit, value), ("max_frame_len", 1 << 20))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.root.echo(vec![1, 2, 3]).await.unwrap(), vec![1, 2, 3]);
}

#[test]
fn handles_and_connections_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Remote<dyn Calc>>();
    assert_send_sync::<Connection>();
    assert_send_sync::<remote_core::Handle>();
    assert_send_sync::<support::CalcClient>();
    fn assert_send<T: Send>() {}
    assert_send::<remote_core::stream::RemoteStream<u32>>();
}

#[tokio::test]
async fn references_in_a_message_that_is_never_sent_are_not_leaked() {
    let server_stats = Arc::new(Stats::default());
    let tiny = remote_core::Limits {
        max_frame_len: 16,
        ..remote_core::Limits::default()
    };
    let (_server, client) = Connection::pair(
        ConnectionBuilder::new().serve(Counter::remote(0, server_stats)),
        ConnectionBuilder::new().limits(tiny),
    )
    .await
    .unwrap();
    let root = client.root::<dyn Calc>();
    let stats = Arc::new(Stats::default());
    let mine = Counter::remote(1, stats.clone());
    // `keep` with a reference encodes to 19 bytes, over 16: refused locally.
    let err = root.keep(mine.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "max_frame_len",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        client.exported_objects(),
        0,
        "the counted send was given back"
    );
    drop(mine);
    assert_eq!(stats.live.load(SeqCst), 0, "nothing keeps our object alive");
}
