//! `RemoteList::iter`: a cursor over the shared list, not a copy of it.

use futures_util::StreamExt;
use remote_core::collections::{RemoteList, SharedVec};
use remote_core::{Connection, ConnectionBuilder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iterator_sees_the_list_as_it_was_when_made() {
    let log = SharedVec::<u32>::new();
    for i in 0..100 {
        log.push(i).await.unwrap();
    }
    let (_s, c) = Connection::pair(
        ConnectionBuilder::new().serve(log.remote()),
        ConnectionBuilder::new(),
    )
    .await
    .unwrap();
    let list = c.root::<dyn RemoteList<u32>>();
    let from_10 = list.iter(10).await.unwrap().with_batch(7);
    let past_end = list.iter(1000).await.unwrap();
    // Pushed after the iterators were made: not part of them.
    for i in 100..150 {
        list.push(i).await.unwrap();
    }
    let got: Vec<u32> = from_10.map(|r| r.unwrap()).collect().await;
    assert_eq!(got, (10..100).collect::<Vec<_>>());
    assert_eq!(past_end.count().await, 0);
    let all: Vec<u32> = list
        .iter(0)
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(all, (0..150).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_open_iterators_interleave_and_another_client_is_served() {
    let log = SharedVec::<String>::new();
    for i in 0..300 {
        log.push(format!("item {i}")).await.unwrap();
    }
    let served = log.clone();
    let server = remote_core::Server::bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| served.remote());
    let hostile = Connection::connect(server.local_addr())
        .await
        .unwrap()
        .root::<dyn RemoteList<String>>();
    let honest = Connection::connect(server.local_addr())
        .await
        .unwrap()
        .root::<dyn RemoteList<String>>();
    let mut streams = Vec::new();
    for _ in 0..40 {
        streams.push(hostile.iter(0).await.unwrap().with_batch(3));
    }
    // Each stream keeps its own place.
    for (n, s) in streams.iter_mut().enumerate() {
        for _ in 0..n % 5 {
            s.next().await.unwrap().unwrap();
        }
    }
    for (n, s) in streams.iter_mut().enumerate() {
        let x = s.next().await.unwrap().unwrap();
        assert_eq!(x, format!("item {}", n % 5));
    }
    assert_eq!(honest.len().await.unwrap(), 300);
    assert_eq!(honest.push("more".into()).await.unwrap(), 300);
    let all: Vec<String> = honest
        .iter(295)
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), 6);
    assert_eq!(all[5], "more");
}
