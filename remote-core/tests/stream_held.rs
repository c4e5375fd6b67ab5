//! What exported streams hold between pulls, summed over every stream of
//! every connection, stays within the memory budget. A batch polls the
//! application's stream for items ready now; an item it polled that the
//! reply cannot carry was held, uncounted, until the next pull (red-team
//! pass 24: streams of a small item then larger ones, each pulled once,
//! held 118 MB over four connections against a 16 MiB budget, and 368 MB
//! over one `ws://` connection at the defaults). Now an item polled goes
//! in the batch if the reply can carry it, and one that cannot go beside
//! the batch's items is held counted in the pulling connection's budget,
//! or, with no room there, dropped, the next pull failing with
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

/// A small chunk, then chunks larger than it that a reply still carries
/// beside it: the first pull takes both, and nothing is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pulled_once_hold_nothing_the_reply_could_carry() {
    let live = Arc::new(AtomicUsize::new(0));
    let budget = 16 << 20;
    let server = serve(budget, &live).await;
    let mut conns = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..2 {
        let c = Connection::connect(server.local_addr())
            .await
            .expect("connect");
        let api = c.root::<dyn Files>();
        for _ in 0..16 {
            let mut s = api.chunks(1, 1 << 10, 900 << 10).await.expect("stream");
            let first = s.next().await.expect("an item").expect("pulled");
            assert_eq!(first.len(), 1 << 10);
            kept.push(s);
        }
        conns.push(c);
    }
    // Each stream's second chunk came with its first (the client holds
    // it, in its batch): the server holds none of them. Before, 32 of
    // 900 KiB each, 28.8 MB, over the 16 MiB budget, counted nowhere.
    assert!(
        eventually(|| live.load(Relaxed) == 0).await,
        "the server holds {} bytes of items",
        live.load(Relaxed)
    );
    drop(kept);
    for c in conns {
        c.close();
    }
    server.shutdown(Duration::from_secs(5)).await;
}

/// A chunk the reply cannot carry beside the batch's items is held for the
/// next pull, counted in the budget; past the room (at most an eighth of
/// the budget for one connection) it is dropped and that pull fails naming
/// `memory_budget`; and what was held goes back with the streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_held_for_the_next_pull_is_counted_and_bounded_by_the_budget() {
    let live = Arc::new(AtomicUsize::new(0));
    let budget = 16 << 20;
    let (small, big) = (100 << 10, 1000 << 10);
    let server = serve(budget, &live).await;
    let c = Connection::connect(server.local_addr())
        .await
        .expect("connect");
    let api = c.root::<dyn Files>();
    let mut kept = Vec::new();
    for _ in 0..8 {
        let mut s = api.chunks(1, small, big).await.expect("stream");
        let first = s.next().await.expect("an item").expect("pulled");
        assert_eq!(
            first.len(),
            small as usize,
            "the big chunk did not fit beside it"
        );
        kept.push(s);
    }
    // What the server holds is counted, and within the connection's
    // eighth of the budget: two chunks of 1000 KiB in 2 MiB, not eight.
    let held = live.load(Relaxed);
    assert!(
        held <= budget / 8,
        "{held} bytes held against a {budget}-byte budget"
    );
    assert!(held >= big as usize, "at least one chunk is held: {held}");
    assert!(
        server.buffered_bytes() >= held,
        "{held} bytes held, {} counted",
        server.buffered_bytes()
    );
    // Each stream's next pull: its held chunk, or the error for the one
    // that could not be held.
    let (mut got, mut refused) = (0, 0);
    for s in &mut kept {
        match s.next().await.expect("a result") {
            Ok(b) => {
                assert_eq!(b.len(), big as usize);
                got += 1;
            }
            Err(e) => {
                assert_eq!(e.limit_name(), Some("memory_budget"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!(got + refused, 8);
    assert!(got >= 1 && refused >= 1, "{got} held, {refused} refused");
    drop(kept);
    c.close();
    assert!(
        eventually(|| live.load(Relaxed) == 0 && server.buffered_bytes() == 0).await,
        "{} bytes held, {} counted after the streams and the connection went",
        live.load(Relaxed),
        server.buffered_bytes()
    );
    server.shutdown(Duration::from_secs(5)).await;
}
