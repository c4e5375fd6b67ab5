//! What the write path does at the end of a connection: the goodbye is
//! the last frame written (a frame queued by another sender between the
//! goodbye and the close is refused, not written after it), and a
//! transport that panics inside a write ends its connection with an error
//! (callers get `Err`, `closed()` resolves) instead of leaving the write
//! token taken for good.

#[path = "support/raw.rs"]
mod raw;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use raw::{bounded, frame, kind, opened, GOODBYE, RETURN};
use remote_core::{remote, ConnectionBuilder, Error, Remote, Server};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing_subscriber::layer::SubscriberExt;

#[remote]
pub trait Keeper {
    /// Nothing.
    async fn nop(&self) -> Result<(), Error>;
    /// Holds `other` in [`KEPT`] (a proxy of the caller's object).
    async fn keep(&self, other: Remote<dyn Keeper>) -> Result<(), Error>;
}

/// The proxy `keep` holds, dropped by [`DropOnClose`].
static KEPT: Mutex<Option<Remote<dyn Keeper>>> = Mutex::new(None);

struct Impl;

#[remote]
impl Keeper for Impl {
    async fn nop(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn keep(&self, other: Remote<dyn Keeper>) -> Result<(), Error> {
        *KEPT.lock().unwrap() = Some(other);
        Ok(())
    }
}

/// Drops the proxy in [`KEPT`] when a connection reports it closed: that
/// is on the reader task, after it queued its goodbye and before the
/// connection is marked closed, the window in which any other sender (a
/// handler on another worker, a dropped proxy) may still queue a frame.
/// The proxy's release is such a frame.
struct DropOnClose;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DropOnClose {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().name() == "remote.connection.closed" {
            let kept = KEPT.lock().unwrap().take();
            drop(kept);
        }
    }
}

/// A peer breaks the protocol; the server queues its goodbye and, before
/// it marks the connection closed, a release is queued (a proxy dropped).
/// The goodbye must be the last frame the peer receives.
#[tokio::test]
async fn nothing_is_written_after_the_goodbye() {
    let subscriber = tracing_subscriber::registry().with(DropOnClose);
    let _default = tracing::subscriber::set_default(subscriber);
    let server = Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Keeper>));
    let mut s = opened(&server).await;
    // keep(object 5 of ours): [ext 1 (sender's export), id 5].
    let args = [0x91, 0xd6, 0x01, 0, 0, 0, 5];
    s.write_all(&raw::call(1, 0, "keep", 60_000, &args))
        .await
        .unwrap();
    let f = bounded(frame(&mut s)).await.expect("keep's reply");
    assert_eq!(kind(&f), RETURN, "{:?}", raw::error_of(&f));
    assert!(KEPT.lock().unwrap().is_some());
    // Marker 0xc1 is never valid msgpack: a protocol violation.
    s.write_all(&[0, 0, 0, 1, 0xc1]).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(f) = bounded(frame(&mut s)).await {
        kinds.push(kind(&f));
    }
    // The hook runs as the reader reports the close, which may come after
    // the writer closed the socket on a loaded machine.
    assert!(
        raw::eventually(|| KEPT.lock().unwrap().is_none()).await,
        "the hook ran"
    );
    assert_eq!(
        kinds.last(),
        Some(&GOODBYE),
        "frames after the protocol violation (kinds): {kinds:?}"
    );
}

/// The writing half of a duplex stream that panics in `poll_write` once
/// `broken` is set (a buggy transport).
struct Panicky {
    inner: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    broken: Arc<AtomicBool>,
}

impl AsyncWrite for Panicky {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        assert!(!self.broken.load(SeqCst), "the transport broke in a write");
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A lone caller writes its own call frame (in its own task); the
/// transport panics there. The call fails with an error naming the
/// transport, the connection closes, and later calls fail at once: no
/// task panics and nothing waits for a write token never given back.
#[tokio::test]
async fn a_transport_that_panics_in_a_write_ends_the_connection() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let broken = Arc::new(AtomicBool::new(false));
    let writer = Panicky {
        inner: aw,
        broken: broken.clone(),
    };
    let served = ConnectionBuilder::new()
        .serve(Remote::new(Arc::new(Impl) as Arc<dyn Keeper>))
        .over(br, bw, "client");
    let (client, server) =
        tokio::join!(ConnectionBuilder::new().over(ar, writer, "server"), served);
    let (client, _server) = (client.unwrap(), server.unwrap());
    let root = client.root::<dyn Keeper>();
    bounded(root.nop()).await.unwrap();
    broken.store(true, SeqCst);
    let call = {
        let root = root.clone();
        tokio::spawn(async move { root.nop().await })
    };
    let r = bounded(call)
        .await
        .expect("the caller's task did not panic");
    let e = r.expect_err("the call fails");
    assert!(e.to_string().contains("panicked"), "{e}");
    let reason = bounded(client.closed()).await;
    assert!(reason.to_string().contains("panicked"), "{reason}");
    let again = bounded(root.nop()).await;
    assert!(again.is_err());
}
