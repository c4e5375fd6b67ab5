//! What exported streams hold between pulls stays within the memory
//! budget, summed over every stream of every connection. A batch polls the
//! application's stream for items ready now; an item it polled that does
//! not fit in the batch waits for the next pull. Held uncounted, streams of
//! a small item then larger ones, each pulled once, held 368 MB over one
//! `ws://` connection against a 64 MiB budget (red-team pass 24); counted
//! per connection at their encoded size, nine connections of one address
//! held the whole budget, and items of small numbers eight times it
//! (red-team pass 25). Now a held item counts at its decoded weight in the
//! pulling connection's budget, what all connections hold so is at most an
//! eighth of it, and an item that cannot be held ends its stream with
//! `memory_budget`.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use remote_core::stream::RemoteStream;
use remote_core::{remote, Connection, Error, Limits, Remote, Server, ServerHandle};

/// The server's items, tracked: bytes made and not yet dropped.
struct Tracked(Vec<u8>, Arc<AtomicUsize>);

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.fetch_sub(self.0.len(), Relaxed);
    }
}

#[remote]
pub trait Files {
    /// A file in eight chunks: `lead` of `small` bytes, then `big` ones,
    /// made as they are polled.
    async fn chunks(&self, lead: u32, small: u32, big: u32) -> Result<RemoteStream<Bytes>, Error>;
    /// Lists of small numbers: one of `small`, then ones of `big`.
    async fn numbers(&self, small: u32, big: u32) -> Result<RemoteStream<Vec<u64>>, Error>;
}

struct Impl(Arc<AtomicUsize>);

#[remote]
impl Files for Impl {
    async fn chunks(&self, lead: u32, small: u32, big: u32) -> Result<RemoteStream<Bytes>, Error> {
        let live = self.0.clone();
        Ok(RemoteStream::new(futures_util::stream::iter(0..8u32).map(
            move |i| {
                let size = if i < lead { small } else { big } as usize;
                live.fetch_add(size, Relaxed);
                Bytes::from_owner(Tracked(vec![7u8; size], live.clone()))
            },
        )))
    }
    async fn numbers(&self, small: u32, big: u32) -> Result<RemoteStream<Vec<u64>>, Error> {
        let sizes = [small, big, big];
        Ok(RemoteStream::new(
            futures_util::stream::iter(sizes).map(|n| vec![1u64; n as usize]),
        ))
    }
}

async fn serve(budget: usize, live: &Arc<AtomicUsize>) -> ServerHandle {
    let live = live.clone();
    Server::builder()
        .limits(Limits {
            memory_budget: budget,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .serve(move |_| Remote::new(Arc::new(Impl(live.clone())) as Arc<dyn Files>))
}

/// Waits (bounded) until `f` holds.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// Streams of a small chunk then 900 KiB ones (over half a frame), each
/// pulled once over four connections of one address: what the server holds
/// for them is at most that address's share (a quarter of the eighth of
/// the budget held items may take), counted; the streams past that end
/// with `memory_budget`; and everything goes back with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_items_are_counted_and_bounded_across_connections() {
    let live = Arc::new(AtomicUsize::new(0));
    let budget = 64 << 20;
    let big = 900 << 10;
    let server = serve(budget, &live).await;
    let mut conns = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..4 {
        let c = Connection::connect(server.local_addr())
            .await
            .expect("connect");
        let api = c.root::<dyn Files>();
        for _ in 0..8 {
            let mut s = api.chunks(1, 1 << 10, big).await.expect("stream");
            let first = s.next().await.expect("an item").expect("pulled");
            assert_eq!(first.len(), 1 << 10, "the big chunk does not fit beside it");
            kept.push(s);
        }
        conns.push(c);
    }
    // 32 chunks of 900 KiB were polled; of them, one address may hold
    // 2 MiB (before: all 32, 28.8 MB, counted nowhere).
    let held = live.load(Relaxed);
    assert!(
        held <= budget / 32,
        "{held} bytes held against a {budget}-byte budget"
    );
    assert!(held >= big as usize, "at least one chunk is held: {held}");
    assert!(
        server.buffered_bytes() >= held,
        "{held} bytes held, {} counted",
        server.buffered_bytes()
    );
    // Each stream's next pull: its held chunk, or the error that ends it.
    let (mut got, mut ended) = (0, 0);
    for s in &mut kept {
        match s.next().await.expect("a result") {
            Ok(b) => {
                assert_eq!(b.len(), big as usize);
                got += 1;
            }
            Err(e) => {
                assert_eq!(e.limit_name(), Some("memory_budget"), "{e}");
                assert!(s.next().await.is_none(), "the stream ends at the error");
                ended += 1;
            }
        }
    }
    assert_eq!(got + ended, 32);
    assert!(got >= 1 && ended >= 1, "{got} held, {ended} ended");
    drop(kept);
    for c in conns {
        c.close();
    }
    assert!(
        eventually(|| live.load(Relaxed) == 0 && server.buffered_bytes() == 0).await,
        "{} bytes held, {} counted after the streams and connections went",
        live.load(Relaxed),
        server.buffered_bytes()
    );
    server.shutdown(Duration::from_secs(5)).await;
}

/// A held item counts at its decoded weight, not its encoded bytes: a list
/// of 600,000 small numbers (600 KB on the wire, 4.8 MB held, weighed 29
/// MB as call arguments are) is more than an address may hold at the
/// default budget (2 MiB), so it is not held and its stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_item_counts_at_its_decoded_weight() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = serve(64 << 20, &live).await;
    let c = Connection::connect(server.local_addr())
        .await
        .expect("connect");
    let api = c.root::<dyn Files>();
    let mut s = api.numbers(1000, 600_000).await.expect("stream");
    assert_eq!(
        s.next().await.expect("an item").expect("pulled").len(),
        1000
    );
    let e = match s.next().await.expect("a result") {
        Ok(list) => panic!("a list of {} numbers was held", list.len()),
        Err(e) => e,
    };
    assert_eq!(e.limit_name(), Some("memory_budget"), "{e}");
    drop(s);
    c.close();
    assert!(eventually(|| server.buffered_bytes() == 0).await);
    server.shutdown(Duration::from_secs(5)).await;
}
