//! The writer task: drains the connection's outgoing queue, coalescing
//! queued frames into one write.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::conn::Shared;

/// Boxed byte streams, so one connection type serves every transport.
pub(crate) type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Writes are coalesced up to this many bytes.
const COALESCE: usize = 64 << 10;
/// A write buffer grown past this is freed after use, so idle connections
/// hold little memory.
const KEEP_CAPACITY: usize = 8 << 10;

pub(crate) async fn write_loop(
    mut w: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let cancelled = shared.closed_token().cancelled();
    tokio::pin!(cancelled);
    loop {
        let first = tokio::select! {
            biased;
            f = rx.recv() => f,
            _ = &mut cancelled => None,
        };
        let Some(first) = first else { break };
        shared.queued.fetch_sub(first.len(), Ordering::AcqRel);
        buf.extend_from_slice(&first);
        while buf.len() < COALESCE {
            match rx.try_recv() {
                Ok(more) => {
                    shared.queued.fetch_sub(more.len(), Ordering::AcqRel);
                    buf.extend_from_slice(&more);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = w.write_all(&buf).await {
            shared.close(crate::Error::ConnectionLost(format!("write failed: {e}")));
            return;
        }
        if rx.is_empty() {
            if let Err(e) = w.flush().await {
                shared.close(crate::Error::ConnectionLost(format!("flush failed: {e}")));
                return;
            }
        }
        buf.clear();
        if buf.capacity() > KEEP_CAPACITY {
            buf = Vec::new();
        }
    }
    // Closing: write what is already queued (e.g. a goodbye), then shut down.
    while let Ok(more) = rx.try_recv() {
        buf.extend_from_slice(&more);
    }
    if !buf.is_empty() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.write_all(&buf)).await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.shutdown()).await;
}
