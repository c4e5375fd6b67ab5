//! The write token's hand-over: a frame queued while another task holds
//! the token (it is in the middle of a direct write) is left to that task,
//! which must wake the writer task for it when it gives the token back.
//! Nothing else would write it here: no other call is made, and the peer
//! answers nothing until that frame arrives.

#[path = "support/raw.rs"]
mod raw;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use raw::{bounded, eventually};
use remote_core::{remote, ConnectionBuilder, Error, Remote};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

#[remote]
trait Pair {
    /// Returns once `second` has arrived.
    async fn first(&self) -> Result<(), Error>;
    async fn second(&self) -> Result<(), Error>;
}

#[derive(Default)]
struct Both {
    arrived: Notify,
}

#[remote]
impl Pair for Both {
    async fn first(&self) -> Result<(), Error> {
        self.arrived.notified().await;
        Ok(())
    }
    async fn second(&self) -> Result<(), Error> {
        self.arrived.notify_one();
        Ok(())
    }
}

/// A writing half that, the first time it is given a frame naming
/// `first`, says so and blocks its thread until released: the task
/// writing it holds the write token meanwhile.
struct Gate<W> {
    inner: W,
    entered: Arc<AtomicBool>,
    release: Option<Mutex<Receiver<()>>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Gate<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.release.is_some() && buf.windows(5).any(|w| w == b"first") {
            let release = self.release.take().expect("checked");
            self.entered.store(true, SeqCst);
            // Bounded: a test that never releases fails instead of hanging.
            let _ = release
                .lock()
                .expect("gate")
                .recv_timeout(Duration::from_secs(60));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_queued_during_a_direct_write_is_written_after_it() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let entered = Arc::new(AtomicBool::new(false));
    let (release, gate): (Sender<()>, _) = std::sync::mpsc::channel();
    let gated = Gate {
        inner: aw,
        entered: entered.clone(),
        release: Some(Mutex::new(gate)),
    };
    let served = ConnectionBuilder::new()
        .serve(Remote::new(Arc::new(Both::default()) as Arc<dyn Pair>))
        .over(br, bw, "client");
    let (client, server) = tokio::join!(ConnectionBuilder::new().over(ar, gated, "server"), served);
    let (client, _server) = (client.unwrap(), server.unwrap());
    let pair = client.root::<dyn Pair>();

    // The only call waiting: its task writes it directly, taking the
    // token, and stops in the transport (one worker held there).
    let first = tokio::spawn({
        let pair = pair.clone();
        async move { pair.first().await }
    });
    assert!(eventually(|| entered.load(SeqCst)).await);
    let before = client.queued_output_bytes();
    // Made among others, on the other worker: queued behind the token.
    let second = tokio::spawn({
        let pair = pair.clone();
        async move { pair.second().await }
    });
    assert!(eventually(|| client.queued_output_bytes() > before).await);
    release.send(()).unwrap();
    // `first` is answered only once `second` has reached the server.
    bounded(first).await.unwrap().unwrap();
    bounded(second).await.unwrap().unwrap();
}
