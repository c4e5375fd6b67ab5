//! Room lent by calls to the peer (`driver/share.rs`, PROTOCOL.md §9):
//! each call a handler makes to its own caller lends that connection's
//! share the room of one running handler, so that a call nesting through
//! a callback can start. A call the server makes to the peer from a task
//! of its own (a pub/sub server notifying a subscriber's callback) used
//! to lend too, so a peer that subscribed and never answered the
//! notifications had its other calls start outside its share: four
//! clients with 100 unanswered notifications each held 119 MB against a
//! 16 MiB budget (found by a red-team pass).

#[path = "support/raw.rs"]
mod raw;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::UnixStream;

#[remote]
pub trait Sink {
    async fn event(&self, n: u32) -> Result<(), Error>;
}

#[remote]
pub trait Hub {
    /// Returns at once; the server then notifies `cb` from a task of its
    /// own.
    async fn subscribe(&self, cb: Remote<dyn Sink>) -> Result<(), Error>;
    /// `len` bytes, after `ms` milliseconds of (async) work.
    async fn blob(&self, len: u32, ms: u64) -> Result<Bytes, Error>;
}

struct HubImpl;

#[remote]
impl Hub for HubImpl {
    async fn subscribe(&self, cb: Remote<dyn Sink>) -> Result<(), Error> {
        tokio::spawn(async move {
            let _ = cb.event(1).await;
        });
        Ok(())
    }
    async fn blob(&self, len: u32, ms: u64) -> Result<Bytes, Error> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Bytes::from(vec![7u8; len as usize]))
    }
}

/// A subscriber that counts the notifications it got and never answers
/// them.
struct Deaf(Arc<AtomicUsize>);

#[remote]
impl Sink for Deaf {
    async fn event(&self, _n: u32) -> Result<(), Error> {
        self.0.fetch_add(1, Ordering::AcqRel);
        std::future::pending().await
    }
}

/// A reader that reads nothing more once `stop` is set.
struct Gated<R> {
    inner: R,
    stop: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Gated<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.stop.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Samples `server.buffered_bytes()` until `done()` or 60 s; the peak.
async fn peak_until(server: &ServerHandle, mut done: impl FnMut() -> bool) -> usize {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut peak = 0;
    while tokio::time::Instant::now() < end && !done() {
        peak = peak.max(server.buffered_bytes());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    peak.max(server.buffered_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_a_subscriber_leaves_unanswered_lend_no_room() {
    const BUDGET: usize = 16 << 20; // shares of 2 MiB
    const CLIENTS: usize = 4;
    const SUBS: usize = 100;
    const REPLY: u32 = 256 << 10;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sock");
    let server = Server::builder()
        .limits(Limits {
            memory_budget: BUDGET,
            write_stall_timeout: Duration::from_secs(3600),
            ..Limits::default()
        })
        .bind(&format!("unix://{}", path.display()))
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(HubImpl) as Arc<dyn Hub>));
    let notified = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (r, w) = UnixStream::connect(&path).await.unwrap().into_split();
        let stop = Arc::new(AtomicBool::new(false));
        let gated = Gated {
            inner: r,
            stop: stop.clone(),
        };
        // Room for 100 notifications running at once on the client (its
        // share of a budget of 1 GiB holds 128 handlers before its first
        // reply).
        let conn = ConnectionBuilder::new()
            .limits(Limits {
                memory_budget: 1 << 30,
                ..Limits::default()
            })
            .over(gated, w, "unix")
            .await
            .unwrap();
        let hub = conn.root::<dyn Hub>();
        for _ in 0..SUBS {
            let cb = Remote::new(Arc::new(Deaf(notified.clone())) as Arc<dyn Sink>);
            hub.subscribe(cb).await.unwrap();
        }
        // Then a large reply: each handler's reply is estimated at 256
        // KiB, eight to a share (small replies would lower the estimate,
        // and what it misses is another gap, SECURITY.md).
        assert_eq!(hub.blob(REPLY, 0).await.unwrap().len(), REPLY as usize);
        clients.push((conn, hub, stop));
    }
    // Every notification reached its subscriber: the server awaits 400
    // calls its peers will never answer.
    assert!(raw::eventually(|| notified.load(Ordering::Acquire) == CLIENTS * SUBS).await);
    let base = server.stats().calls.calls_started;
    // Now they read nothing, and each pipelines 100 calls of 256 KiB.
    let mut pending = Vec::new();
    for (_, hub, stop) in &clients {
        stop.store(true, Ordering::Release);
        for _ in 0..SUBS {
            let hub = hub.clone();
            pending.push(tokio::spawn(async move { hub.blob(REPLY, 300).await }));
        }
    }
    // Until handlers started and every one that started has replied.
    let quiet = || {
        let calls = server.stats().calls;
        calls.calls_started >= base + CLIENTS as u64 && calls.calls_started == calls.calls_finished
    };
    let peak = peak_until(&server, quiet).await;
    assert!(quiet(), "the handlers that started all replied");
    let started = server.stats().calls.calls_started - base;
    println!("{CLIENTS} deaf subscribers: {started} calls started, peak counted {peak} bytes (budget {BUDGET})");
    // Each connection's share and a reply over it, not 100 replies each.
    assert!(
        peak <= BUDGET + CLIENTS * 2 * REPLY as usize,
        "{peak} bytes counted for {CLIENTS} deaf subscribers, budget {BUDGET}"
    );
    for p in &pending {
        p.abort();
    }
    // Closed (the server holds their subscribers, which would keep them
    // open), they hold nothing.
    for (conn, ..) in &clients {
        conn.close();
    }
    assert!(
        raw::eventually(|| server.buffered_bytes() < 64 << 10 && server.connections() == 0).await,
        "{} bytes still counted, {} connections",
        server.buffered_bytes(),
        server.connections()
    );
}
