//! Operator counters (`Connection::stats`, `ServerHandle::stats`): exact
//! counts after known traffic.

#[path = "support/serving.rs"]
mod serving;
mod support;

use std::sync::Arc;
use std::time::Duration;

use remote_core::{Connection, ConnectionBuilder, Error, Limits, Stats as Counts};
use support::{eventually, Calc, Counter, Stats};

fn calc() -> remote_core::Remote<dyn Calc> {
    Counter::remote(0, Arc::new(Stats::default()))
}

#[tokio::test]
async fn calls_errors_and_bytes_are_counted_exactly_on_both_sides() {
    let (client, server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(calc()),
    )
    .await
    .unwrap();
    let root = client.root::<dyn Calc>();
    for i in 0..3 {
        assert_eq!(root.add(i, 1).await.unwrap(), i + 1);
    }
    let s = server.stats();
    assert_eq!((s.calls_started, s.calls_finished), (3, 3));
    assert_eq!(s.errors_total(), 0);
    // The client served nothing.
    assert_eq!(client.stats().calls_started, 0);

    // An application error and an unknown method, counted by kind.
    assert!(root.checked(-1).await.is_err());
    let unknown: Result<(), Error> = root
        .handle()
        .expect("a proxy")
        .call("no_such_method", ())
        .await;
    assert!(unknown.is_err());
    let s = server.stats();
    assert_eq!((s.calls_started, s.calls_finished), (5, 5));
    assert_eq!(s.errors["application"], 1);
    assert_eq!(s.errors["unknown_method"], 1);
    assert_eq!(s.errors_total(), 2);

    // Every byte one side wrote, the other read (the in-memory pair loses
    // nothing); the handshake counts too.
    let balanced = |a: &Counts, b: &Counts| a.bytes_out == b.bytes_in && a.bytes_in == b.bytes_out;
    assert!(
        eventually(60, || balanced(&client.stats(), &server.stats())).await,
        "client {:?} server {:?}",
        client.stats(),
        server.stats()
    );
    assert!(client.stats().bytes_out > 0 && client.stats().bytes_in > 0);

    // Objects exported now: the client hands the server one.
    assert_eq!(client.stats().exports, 0);
    root.keep(calc()).await.unwrap();
    assert_eq!(client.stats().exports, 1);
}

#[tokio::test]
async fn a_call_refused_for_a_limit_counts_under_limit_exceeded() {
    let limits = Limits {
        max_calls_in_flight: 1,
        ..Limits::default()
    };
    let (client, server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().limits(limits).serve(calc()),
    )
    .await
    .unwrap();
    let root = client.root::<dyn Calc>();
    // One call holds the only slot (until it is cancelled below).
    let slow = tokio::spawn({
        let root = root.clone();
        async move { root.sleep(120_000).await }
    });
    assert!(eventually(60, || server.calls_in_flight() == 1).await);
    let err = root.add(1, 2).await.unwrap_err();
    assert!(err.to_string().contains("max_calls_in_flight = 1"), "{err}");
    let s = server.stats();
    assert_eq!(s.calls_started, 2);
    assert_eq!(s.errors["limit_exceeded"], 1);
    assert_eq!(s.errors_total(), 1);
    // Cancelling the slow call answers it `cancelled`: both calls finished.
    slow.abort();
    assert!(eventually(60, || server.stats().calls_finished == 2).await);
    let s = server.stats();
    assert_eq!(s.errors["cancelled"], 1);
    assert_eq!(s.errors["limit_exceeded"], 1);
}

#[tokio::test]
async fn a_server_sums_its_connections_and_counts_them() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let server = serving::tcp(limits, |_| calc()).await;
    let a = Connection::connect(server.local_addr()).await.unwrap();
    let b = Connection::connect(server.local_addr()).await.unwrap();
    a.root::<dyn Calc>().add(1, 1).await.unwrap();
    b.root::<dyn Calc>().add(1, 1).await.unwrap();
    assert!(b.root::<dyn Calc>().checked(-5).await.is_err());
    b.root::<dyn Calc>().keep(calc()).await.unwrap();
    // A third connection is over max_connections.
    assert!(Connection::connect(server.local_addr()).await.is_err());

    let s = server.stats();
    assert_eq!(s.connections_open, 2);
    assert_eq!(s.connections_total, 2);
    assert_eq!(s.connections_refused, 1);
    assert_eq!((s.calls.calls_started, s.calls.calls_finished), (4, 4));
    assert_eq!(s.calls.errors["application"], 1);
    // The server holds a proxy of b's object; it exports none itself.
    assert_eq!(s.calls.exports, 0);
    assert_eq!(b.stats().exports, 1);
    // TCP loses nothing either: what the clients wrote, the server read.
    let clients_out = || a.stats().bytes_out + b.stats().bytes_out;
    assert!(eventually(60, || server.stats().calls.bytes_in == clients_out()).await);

    // A closed connection leaves the open count; its calls stay counted.
    a.close();
    assert!(eventually(60, || server.stats().connections_open == 1).await);
    let s = server.stats();
    assert_eq!(s.connections_total, 2);
    assert_eq!(s.calls.calls_started, 4);
    server.shutdown(Duration::from_secs(5)).await;
}
