//! Remote streams of large items: a batch fits in a reply frame whatever
//! the puller asks for (found by a red-team pass: a pull of 1,024 items of
//! 128 KiB made the server produce and encode 256 MiB before refusing the
//! reply, and an honest pull of 32 items of 64 KiB failed and lost them).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use remote_core::stream::RemoteStream;
use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote};

#[remote]
pub trait Blobs {
    /// `n` items of `size` bytes (item `i` filled with `i as u8`),
    /// produced as they are pulled.
    async fn blobs(&self, n: u32, size: u32) -> Result<RemoteStream<Bytes>, Error>;
}

#[derive(Default)]
struct Impl {
    produced: Arc<AtomicUsize>,
}

#[remote]
impl Blobs for Impl {
    async fn blobs(&self, n: u32, size: u32) -> Result<RemoteStream<Bytes>, Error> {
        let produced = self.produced.clone();
        Ok(RemoteStream::new(futures_util::stream::iter(0..n).map(
            move |i| {
                produced.fetch_add(1, Ordering::Relaxed);
                Bytes::from(vec![i as u8; size as usize])
            },
        )))
    }
}

async fn pair() -> (Connection, Connection, Arc<AtomicUsize>) {
    pair_with(Limits::default()).await
}

/// A client and a server with `limits` on both ends.
async fn pair_with(limits: Limits) -> (Connection, Connection, Arc<AtomicUsize>) {
    let imp = Impl::default();
    let produced = imp.produced.clone();
    let served: Remote<dyn Blobs> = Remote::new(Arc::new(imp));
    let (client, server) = Connection::pair(
        ConnectionBuilder::new().limits(limits.clone()),
        ConnectionBuilder::new().limits(limits).serve(served),
    )
    .await
    .unwrap();
    (client, server, produced)
}

#[tokio::test]
async fn items_of_64_kib_arrive_whole_in_the_default_batches() {
    let (client, _server, produced) = pair().await;
    let stream = client
        .root::<dyn Blobs>()
        .blobs(40, 64 << 10)
        .await
        .unwrap();
    // 32 of them used to make a 2 MiB reply: refused, the items lost.
    let items: Vec<Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(items.len(), 40);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.len(), 64 << 10);
        assert!(item.iter().all(|&b| b == i as u8), "item {i} in its place");
    }
    assert_eq!(produced.load(Ordering::Relaxed), 40);
}

#[tokio::test]
async fn a_puller_asking_for_1024_large_items_gets_what_fits_in_a_frame() {
    let (client, _server, produced) = pair().await;
    let mut stream = client
        .root::<dyn Blobs>()
        .blobs(1024, 128 << 10)
        .await
        .unwrap()
        .with_batch(1024);
    let first = stream.next().await.expect("an item").expect("not an error");
    assert_eq!(first.len(), 128 << 10);
    // Three items of 128 KiB fit in 512 KiB, and a fourth would not: it is
    // not produced yet. (All 1,024 were produced before.)
    assert_eq!(produced.load(Ordering::Relaxed), 3);
    let rest: Vec<Bytes> = stream.take(9).try_collect().await.unwrap();
    assert_eq!(rest.len(), 9);
    assert!(rest[8].iter().all(|&b| b == 9), "the tenth item is item 9");
    assert!(produced.load(Ordering::Relaxed) <= 16);
}

#[tokio::test]
async fn a_stream_pulled_once_keeps_no_item_it_could_not_send() {
    let (client, _server, produced) = pair().await;
    // Items of 300 KiB, pulled two at a time: one fits, and the next is not
    // produced to wait in the source (200 streams pulled once each kept
    // 59 MiB outside the budget that way).
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut s = client
            .root::<dyn Blobs>()
            .blobs(10, 300 << 10)
            .await
            .unwrap()
            .with_batch(2);
        assert_eq!(s.next().await.unwrap().unwrap().len(), 300 << 10);
        streams.push(s);
    }
    assert_eq!(produced.load(Ordering::Relaxed), 20, "one item per stream");
    // Each goes on where it stopped.
    let rest: Vec<Bytes> = streams.pop().unwrap().try_collect().await.unwrap();
    assert_eq!(rest.len(), 9);
    assert!(rest[0].iter().all(|&b| b == 1));
}

#[tokio::test]
async fn with_a_small_frame_limit_a_batch_fits_in_half_a_frame() {
    let (client, _server, produced) = pair_with(Limits {
        max_frame_len: 64 << 10,
        ..Limits::default()
    })
    .await;
    // 32 items of 8 KiB make 256 KiB: past a 64 KiB frame, refused (and
    // lost) when a batch could take 512 KiB whatever the frame limit.
    let stream = client.root::<dyn Blobs>().blobs(40, 8 << 10).await.unwrap();
    let items: Vec<Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(items.len(), 40);
    assert!(items.iter().enumerate().all(|(i, x)| x[0] == i as u8));
    assert_eq!(produced.load(Ordering::Relaxed), 40);
}

#[tokio::test]
async fn a_lists_iterator_fits_its_batches_in_a_small_frame_too() {
    use remote_core::collections::{RemoteList, SharedVec};
    let list = SharedVec::<Bytes>::new();
    for i in 0..40u8 {
        list.push(Bytes::from(vec![i; 8 << 10])).await.unwrap();
    }
    let limits = Limits {
        max_frame_len: 64 << 10,
        ..Limits::default()
    };
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new().limits(limits.clone()),
        ConnectionBuilder::new().limits(limits).serve(list.remote()),
    )
    .await
    .unwrap();
    let items: Vec<Bytes> = client
        .root::<dyn RemoteList<Bytes>>()
        .iter(0)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(items.len(), 40);
    assert!(items.iter().enumerate().all(|(i, x)| x[0] == i as u8));
    // Its pages too: three items of 8 KiB fit in half of a 64 KiB frame
    // (a page of 32 KiB made a reply over the frame, refused).
    let remote = client.root::<dyn RemoteList<Bytes>>();
    let page = remote.range(0, 40).await.unwrap();
    assert_eq!(page.len(), 3);
    let mut all = Vec::new();
    while all.len() < 40 {
        let page = remote.range(all.len() as u64, 40).await.unwrap();
        assert!(!page.is_empty());
        all.extend(page);
    }
    assert_eq!(all, items);
}
