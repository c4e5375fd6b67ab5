//! How many writes a busy connection makes: callers that all get their
//! replies in one batch call again in one write, not the first alone and
//! the rest in a second one; and on a multi-thread runtime a long run of
//! calls is answered in parts, so the caller's end starts on the first
//! replies while the rest are handled. Counted on the writing end's
//! transport over an in-memory pipe, where the number of writes depends on
//! nothing but the code (no clock; the runs are whole in the pipe before
//! they are read).

#[path = "support/add.rs"]
mod add;
#[path = "support/raw.rs"]
mod raw;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};

use add::{Add, Impl};
use remote_core::{Connection, ConnectionBuilder, Remote};
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// A writing half that counts the writes that carried bytes.
struct Counted<W> {
    inner: W,
    writes: Arc<AtomicUsize>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, SeqCst);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, SeqCst);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A client connection whose writes are counted, to a server of `root`
/// over an in-memory pipe.
async fn counted_pair<T: ?Sized + remote_core::Interface>(
    root: Remote<T>,
) -> (Connection, Connection, Arc<AtomicUsize>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = Counted {
        inner: aw,
        writes: writes.clone(),
    };
    let served = ConnectionBuilder::new().serve(root).over(br, bw, "client");
    let (client, server) =
        tokio::join!(ConnectionBuilder::new().over(ar, counted, "server"), served);
    (client.unwrap(), server.unwrap(), writes)
}

/// The halves of a hand-played peer's end of an in-memory pipe (of
/// `capacity` bytes) that has said hello, to a server of [`Add`] whose
/// writes are counted.
async fn raw_peer_of_counted_server(
    capacity: usize,
) -> (
    ReadHalf<DuplexStream>,
    WriteHalf<DuplexStream>,
    Connection,
    Arc<AtomicUsize>,
) {
    let (a, b) = tokio::io::duplex(capacity);
    let (mut peer_r, mut peer_w) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = Counted {
        inner: bw,
        writes: writes.clone(),
    };
    let served = ConnectionBuilder::new()
        .serve(Remote::new(Arc::new(Impl) as Arc<dyn Add>))
        .over(br, counted, "peer");
    let said_hello = async {
        peer_w
            .write_all(&raw::hello(vec!["keepalive"]))
            .await
            .unwrap();
        let f = raw::frame(&mut peer_r).await.expect("the server's hello");
        assert_eq!(raw::kind(&f), raw::HELLO);
    };
    let (server, ()) = raw::bounded(async { tokio::join!(served, said_hello) }).await;
    (peer_r, peer_w, server.unwrap(), writes)
}

/// A server of [`Add`] whose writes are counted, over an in-memory pipe
/// to a hand-played peer; `rounds` times the peer writes 64 calls in one
/// write and reads their 64 replies. Returns the server's writes over the
/// last `rounds - WARM_UP` rounds (the first grow the server's read buffer
/// to a whole run of calls).
async fn writes_answering_runs_of_64_calls(rounds: usize) -> usize {
    const WARM_UP: usize = 8;
    const RUN: u32 = 64;
    let (mut peer_r, mut peer_w, _server, writes) = raw_peer_of_counted_server(1 << 20).await;
    let mut before = 0;
    for round in 0..rounds {
        if round == WARM_UP {
            before = writes.load(SeqCst);
        }
        let run: Vec<u8> = (1..=RUN)
            .flat_map(|id| raw::call(id, 0, "add", 60_000, &[0x92, 0x01, 0x02]))
            .collect();
        peer_w.write_all(&run).await.unwrap();
        for _ in 0..RUN {
            let f = raw::frame(&mut peer_r).await.expect("a reply");
            assert_eq!(raw::kind(&f), raw::RETURN, "{:?}", raw::error_of(&f));
        }
    }
    writes.load(SeqCst) - before
}

/// On a multi-thread runtime a run of 64 calls read at once is answered in
/// several writes (one per 16 calls handled), not one write at the end of
/// the run: the peer's end can start on the first replies while the rest
/// are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_of_calls_is_answered_in_parts_on_a_multi_thread_runtime() {
    const ROUNDS: usize = 40;
    let writes = writes_answering_runs_of_64_calls(8 + ROUNDS).await;
    // Four writes per run (after calls 16, 32 and 48, and at the end);
    // answered in one write at the end of each run, it would be ROUNDS.
    assert!(
        writes >= ROUNDS * 3,
        "{writes} writes answering {ROUNDS} runs of 64 calls"
    );
}

/// On one thread nobody could start on the replies sooner: a run of calls
/// is answered in one write (a write per part would only cost).
#[tokio::test(flavor = "current_thread")]
async fn a_long_run_of_calls_is_answered_in_one_write_on_one_thread() {
    const ROUNDS: usize = 40;
    let writes = writes_answering_runs_of_64_calls(8 + ROUNDS).await;
    assert!(writes >= ROUNDS, "{writes} writes for {ROUNDS} runs");
    assert!(
        writes <= ROUNDS * 3 / 2,
        "{writes} writes answering {ROUNDS} runs of 64 calls"
    );
}

/// A server of [`Add`] whose writes are counted; a hand-played peer
/// writes `flood` in one go, then one `add` call, and reads until that
/// call's reply (answered last). Returns the server's writes meanwhile.
async fn writes_answering_a_flood(flood: Vec<u8>) -> usize {
    let (mut peer_r, mut peer_w, _server, writes) = raw_peer_of_counted_server(16 << 20).await;
    let before = writes.load(SeqCst);
    let mut all = flood;
    all.extend_from_slice(&raw::call(999_999, 0, "add", 60_000, &[0x92, 0x01, 0x02]));
    peer_w.write_all(&all).await.unwrap();
    while raw::kind(&raw::frame(&mut peer_r).await.expect("closed")) != raw::RETURN {}
    writes.load(SeqCst) - before
}

/// The writes within a run are for a peer waiting on replies, and only
/// worth it when there is something to write: a flood of pings (each
/// answered by one pong while none is queued) does not buy a write every
/// 16 frames on a multi-thread runtime (498 writes for these 147 KB before
/// the fix), and a flood of calls gets at most three more per read, each
/// carrying at least 16 replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_small_frames_does_not_buy_a_write_every_16_frames() {
    const N: u32 = 16_384;
    let pings: Vec<u8> = (0..N).flat_map(remote_core::proto::encode_ping).collect();
    let writes = writes_answering_a_flood(pings).await;
    assert!(writes <= 64, "{writes} server writes answering {N} pings");
    let calls: Vec<u8> = (0..N)
        .flat_map(|i| raw::call(i + 1, 0, "x", 60_000, &[0x90]))
        .collect();
    let bytes = calls.len();
    let writes = writes_answering_a_flood(calls).await;
    // About 45: the reads of up to 16 KiB each, three writes within each
    // (639 before the cap, one per 16 replies).
    assert!(
        writes <= 128,
        "{writes} server writes answering {N} calls ({bytes} bytes)"
    );
}

/// 64 callers, each making `ROUNDS` calls one after the other: after the
/// first round every round's calls come back in one batch, and the calls
/// that follow should leave in about one write per round. With the first
/// caller of each round writing its frame alone, it took two.
#[tokio::test(flavor = "current_thread")]
async fn callers_answered_together_call_again_in_one_write() {
    const CALLERS: i64 = 64;
    const ROUNDS: i64 = 200;
    let (client, _server, writes) = counted_pair(Remote::new(Arc::new(Impl) as Arc<dyn Add>)).await;
    let add = client.root::<dyn Add>();
    let before = writes.load(SeqCst);
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let add = add.clone();
            tokio::spawn(async move {
                for r in 0..ROUNDS {
                    assert_eq!(add.add(c, r).await.unwrap(), c + r);
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let writes = writes.load(SeqCst) - before;
    // Every call reached the server, so at least one write carried it; a
    // round that took two writes would make this about 2 × ROUNDS.
    assert!(writes >= 1, "no write counted");
    assert!(
        writes <= ROUNDS as usize * 3 / 2,
        "{writes} writes for {ROUNDS} rounds of {CALLERS} calls"
    );
}

/// Makes an [`Add`] (a new capability per call).
#[remote_core::remote]
pub trait Maker {
    async fn make(&self) -> Result<Remote<dyn Add>, remote_core::Error>;
}

struct Factory;

#[remote_core::remote]
impl Maker for Factory {
    async fn make(&self) -> Result<Remote<dyn Add>, remote_core::Error> {
        Ok(Remote::new(Arc::new(Impl) as Arc<dyn Add>))
    }
}

/// A pipelined call and the call made on its promise at once leave in one
/// write: the kept-answer call is not written alone before it.
#[tokio::test(flavor = "current_thread")]
async fn a_pipelined_call_and_a_call_on_its_promise_leave_in_one_write() {
    const ROUNDS: i64 = 200;
    let (client, _server, writes) =
        counted_pair(Remote::new(Arc::new(Factory) as Arc<dyn Maker>)).await;
    let maker = client.root::<dyn Maker>();
    let before = writes.load(SeqCst);
    for r in 0..ROUNDS {
        let made: remote_core::Promise<dyn Add> = maker.handle().unwrap().pipeline("make", ());
        assert_eq!(made.add(1, r).await.unwrap(), 1 + r);
    }
    let writes = writes.load(SeqCst) - before;
    assert!(
        writes >= ROUNDS as usize,
        "{writes} writes for {ROUNDS} rounds"
    );
    // Per round: the two calls (with the release of the last round's
    // object), and the finish; the two calls written apart took one more.
    assert!(
        writes <= ROUNDS as usize * 5 / 2,
        "{writes} writes for {ROUNDS} rounds of a pipelined call and a call on its promise"
    );
}
