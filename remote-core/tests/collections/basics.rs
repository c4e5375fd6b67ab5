//! What the shared list and map do for well-behaved peers.

use futures_util::StreamExt;
use remote_core::collections::{
    on_change, on_push, RemoteList, RemoteMap, SharedMap, SharedVec, MAX_PAGE,
};
use remote_core::{Connection, Server};
use tokio::sync::mpsc;

use super::recv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_share_a_list_and_see_every_push_in_order() {
    let log = SharedVec::<String>::new();
    let log2 = log.clone();
    let server = Server::bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| log2.remote());
    let a = Connection::connect(server.local_addr())
        .await
        .unwrap()
        .root::<dyn RemoteList<String>>();
    let b = Connection::connect(server.local_addr())
        .await
        .unwrap()
        .root::<dyn RemoteList<String>>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    b.subscribe(on_push(move |i, s: String| {
        let _ = tx.send((i, s));
    }))
    .await
    .unwrap();
    for n in 0..20 {
        let who = if n % 2 == 0 { &a } else { &b };
        assert_eq!(who.push(format!("m{n}")).await.unwrap(), n);
    }
    for n in 0..20u64 {
        assert_eq!(recv(&mut rx).await, (n, format!("m{n}")));
    }
    assert_eq!(a.len().await.unwrap(), 20);
    assert_eq!(a.get(3).await.unwrap().as_deref(), Some("m3"));
    assert_eq!(a.get(99).await.unwrap(), None);
    assert_eq!(
        b.range(18, 100).await.unwrap(),
        vec!["m18".to_owned(), "m19".to_owned()]
    );
    assert_eq!(b.range(5, 2).await.unwrap(), Vec::<String>::new());
    let all: Vec<String> = a
        .iter(15)
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), 5);
    assert_eq!(log.snapshot().len(), 20);
}

#[tokio::test]
async fn range_pages_are_bounded() {
    let log = SharedVec::<u32>::new();
    for i in 0..(MAX_PAGE as u32 + 10) {
        log.push(i).await.unwrap();
    }
    let (_s, c) = Connection::pair(
        remote_core::ConnectionBuilder::new().serve(log.remote()),
        remote_core::ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let list = c.root::<dyn RemoteList<u32>>();
    assert_eq!(
        list.range(0, u64::MAX).await.unwrap().len() as u64,
        MAX_PAGE
    );
}

#[tokio::test]
async fn shared_map_reads_writes_and_notifies() {
    let map = SharedMap::<String, u64>::new();
    let (_s, c) = Connection::pair(
        remote_core::ConnectionBuilder::new().serve(map.remote()),
        remote_core::ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let m = c.root::<dyn RemoteMap<String, u64>>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    m.subscribe(on_change(move |k: String, v: Option<u64>| {
        let _ = tx.send((k, v));
    }))
    .await
    .unwrap();
    assert_eq!(m.insert("a".into(), 1).await.unwrap(), None);
    assert_eq!(m.insert("a".into(), 2).await.unwrap(), Some(1));
    assert_eq!(m.insert("b".into(), 3).await.unwrap(), None);
    assert_eq!(m.get("a".into()).await.unwrap(), Some(2));
    assert_eq!(m.remove("b".into()).await.unwrap(), Some(3));
    assert_eq!(m.len().await.unwrap(), 1);
    assert_eq!(m.entries(None).await.unwrap(), vec![("a".to_owned(), 2)]);
    assert_eq!(m.entries(Some("a".into())).await.unwrap(), vec![]);
    let expect = [("a", Some(1)), ("a", Some(2)), ("b", Some(3)), ("b", None)];
    for (k, v) in expect {
        assert_eq!(recv(&mut rx).await, (k.to_owned(), v));
    }
    assert_eq!(map.snapshot().len(), 1);
}
