//! The writer task: drains the connection's outgoing buffer, writing every
//! frame queued since the last write in one go.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::conn::Shared;

/// Boxed byte streams, so one connection type serves every transport.
pub(crate) type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A write buffer grown past this is freed after use, so idle connections
/// hold little memory.
const KEEP_CAPACITY: usize = 8 << 10;

pub(crate) async fn write_loop(mut w: BoxWrite, shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // `Shared::close` also raises the flag, so one wake-up source serves.
        ready(&shared).await;
        if shared.is_closed() {
            break;
        }
        // Take everything queued (frames are whole: senders append complete
        // frames under the lock), write it in one go, repeat until empty.
        loop {
            {
                let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
                if out.is_empty() {
                    break;
                }
                std::mem::swap(&mut *out, &mut buf);
            }
            match until_closed(&shared, w.write_all(&buf)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    shared.close(crate::Error::ConnectionLost(format!("write failed: {e}")));
                    return;
                }
                // Closed while a peer that does not read blocks the write:
                // give up on it after the grace period below.
                None => break,
            }
            buf.clear();
            if buf.capacity() > KEEP_CAPACITY {
                buf = Vec::new();
            }
        }
        match until_closed(&shared, w.flush()).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                shared.close(crate::Error::ConnectionLost(format!("flush failed: {e}")));
                return;
            }
            None => break,
        }
    }
    // Closing: write what is already queued (e.g. a goodbye) within a grace
    // period, then shut down; the socket is dropped either way.
    let rest = std::mem::take(&mut *shared.out.lock().unwrap_or_else(|p| p.into_inner()));
    if !rest.is_empty() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.write_all(&rest)).await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.shutdown()).await;
}

/// Resolves when a sender has queued frames since the last time.
fn ready(shared: &Shared) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        if shared.out_ready.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        shared.out_waker.register(cx.waker());
        // Checked again after registering: a sender may have set the flag
        // (and woken nobody) in between.
        if shared.out_ready.swap(false, Ordering::AcqRel) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}

/// Runs `io` unless the connection closes first (`None`). The close signal
/// is only polled while the write is blocked, not on the hot path.
async fn until_closed<F: std::future::Future>(shared: &Shared, io: F) -> Option<F::Output> {
    use futures_util::FutureExt;
    let mut io = std::pin::pin!(io);
    // Most writes complete at once: no select machinery for them.
    if let Some(r) = (&mut io).now_or_never() {
        return Some(r);
    }
    tokio::select! {
        biased;
        r = io => Some(r),
        _ = shared.closed_token().cancelled() => None,
    }
}
