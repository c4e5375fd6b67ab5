//! Bounds what tungstenite buffers of a WebSocket message before the
//! protocol's hello: tungstenite keeps a partial message (up to its
//! `max_message_size`, one full frame) outside the memory budget, so a
//! server stream is metered, and until the first message is delivered at
//! most `max_handshake_frame_len` plus a WebSocket header is read past what
//! was delivered (PROTOCOL.md §1.2).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A WebSocket frame header: 2 bytes, 8 of extended length, 4 of mask.
const WS_HEADER: usize = 14;

/// Bytes read from the socket and delivered in messages, shared by the
/// metered stream and the WebSocket reader above it.
#[derive(Debug)]
pub(crate) struct Meter {
    read: AtomicUsize,
    /// Read before the upgrade completed (HTTP) is not a message.
    baseline: AtomicUsize,
    delivered: AtomicUsize,
    /// Whether the first message (the hello) has been delivered: the
    /// bound is lifted then (tungstenite's `max_message_size` applies).
    lifted: AtomicBool,
    cap: usize,
}

impl Meter {
    pub(crate) fn new(max_handshake_frame_len: usize) -> Arc<Self> {
        Arc::new(Meter {
            read: AtomicUsize::new(0),
            baseline: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
            lifted: AtomicBool::new(false),
            cap: max_handshake_frame_len
                .saturating_add(4)
                .saturating_add(WS_HEADER),
        })
    }

    /// The upgrade completed: what was read so far was HTTP.
    pub(crate) fn opened(&self) {
        self.baseline
            .store(self.read.load(Ordering::Acquire), Ordering::Release);
    }

    /// A message of `len` bytes was delivered; the first lifts the bound.
    pub(crate) fn delivered(&self, len: usize) {
        self.delivered.fetch_add(len, Ordering::AcqRel);
        self.lifted.store(true, Ordering::Release);
    }

    /// A control frame (ping, pong) with `payload` bytes was read: it is
    /// not buffered, so it does not count (its masked header is 6 bytes).
    pub(crate) fn control(&self, payload: usize) {
        self.delivered.fetch_add(payload + 6, Ordering::AcqRel);
    }

    /// Bytes that may still be read before the hello, or `None` if no
    /// bound applies any more.
    fn room(&self) -> Option<usize> {
        if self.lifted.load(Ordering::Acquire) {
            return None;
        }
        let held = self
            .read
            .load(Ordering::Acquire)
            .saturating_sub(self.baseline.load(Ordering::Acquire))
            .saturating_sub(self.delivered.load(Ordering::Acquire));
        Some(self.cap.saturating_sub(held))
    }
}

/// A stream whose reads are counted in a [`Meter`] and bounded by it.
pub(crate) struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, meter: Arc<Meter>) -> Self {
        Metered { inner, meter }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(room) = this.meter.room() else {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let n = buf.filled().len() - before;
            this.meter.read.fetch_add(n, Ordering::AcqRel);
            return Poll::Ready(Ok(()));
        };
        if room == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "limit exceeded: max_handshake_frame_len (a websocket message before the \
                     hello over {} bytes with its header)",
                    this.meter.cap
                ),
            )));
        }
        // Before the hello: read no more than the bound allows.
        let mut chunk = [0u8; 4096];
        let want = room.min(chunk.len()).min(buf.remaining());
        let mut small = ReadBuf::new(&mut chunk[..want]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut small))?;
        let n = small.filled().len();
        buf.put_slice(small.filled());
        this.meter.read.fetch_add(n, Ordering::AcqRel);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
