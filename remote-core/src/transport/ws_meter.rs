//! Bounds what tungstenite buffers of a WebSocket message before the
//! connection is open: tungstenite keeps a partial message (up to its
//! `max_message_size`, one full frame) outside the memory budget, so a
//! server stream is metered, and until the driver says the connection is
//! open (the handshake and authentication done, [`Meter::lift`]) at most
//! `max_handshake_frame_len` plus a WebSocket header is read past what was
//! delivered (PROTOCOL.md §1.1). Before the hello a message over that is
//! refused; after it, reading waits for the connection to open (a client
//! may send a large call right behind its hello). A red-team pass found
//! the bound lifted by the hello itself: a peer with no key sent a hello
//! offering credentials, then all but a byte of a 1 MiB message, held
//! until `handshake_timeout` outside the budget on every connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::task::AtomicWaker;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A WebSocket frame header: 2 bytes, 8 of extended length, 4 of mask.
const WS_HEADER: usize = 14;

/// What the HTTP upgrade request may take: a browser sends the site's
/// cookies with it (a request of a few KB was refused by the 4 KiB bound
/// of the first message, with a reset instead of an HTTP error: found by a
/// red-team pass). tungstenite reads it into a buffer of its own.
const UPGRADE_MAX: usize = 16 << 10;

/// Bytes read from the socket and delivered in messages, shared by the
/// metered stream and the WebSocket reader above it.
#[derive(Debug)]
pub(crate) struct Meter {
    read: AtomicUsize,
    /// Read before the upgrade completed (HTTP) is not a message.
    baseline: AtomicUsize,
    /// Whether the upgrade completed: until then the request is bounded
    /// by [`UPGRADE_MAX`].
    upgraded: AtomicBool,
    delivered: AtomicUsize,
    /// Whether the first message (the hello) has been delivered: reading
    /// past the bound waits from then on instead of failing.
    hello: AtomicBool,
    /// Whether the connection is open: no bound from then on
    /// (tungstenite's `max_message_size` applies).
    lifted: AtomicBool,
    /// The reader waiting for the bound to be lifted.
    waker: AtomicWaker,
    cap: usize,
}

impl Meter {
    pub(crate) fn new(max_handshake_frame_len: usize) -> Arc<Self> {
        Arc::new(Meter {
            read: AtomicUsize::new(0),
            baseline: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
            delivered: AtomicUsize::new(0),
            hello: AtomicBool::new(false),
            lifted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            cap: max_handshake_frame_len
                .saturating_add(4)
                .saturating_add(WS_HEADER),
        })
    }

    /// The upgrade completed: what was read so far was HTTP.
    pub(crate) fn opened(&self) {
        self.baseline
            .store(self.read.load(Ordering::Acquire), Ordering::Release);
        self.upgraded.store(true, Ordering::Release);
    }

    /// A message of `len` bytes was delivered.
    pub(crate) fn delivered(&self, len: usize) {
        self.delivered.fetch_add(len, Ordering::AcqRel);
        self.hello.store(true, Ordering::Release);
    }

    /// The connection is open: the bound is lifted.
    pub(crate) fn lift(&self) {
        self.lifted.store(true, Ordering::Release);
        self.waker.wake();
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
        let cap = if self.upgraded.load(Ordering::Acquire) {
            self.cap
        } else {
            UPGRADE_MAX
        };
        Some(cap.saturating_sub(held))
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

impl<S: AsyncRead + Unpin> Metered<S> {
    /// A read with no bound, counted.
    fn read_unbounded(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        self.meter.read.fetch_add(n, Ordering::AcqRel);
        Poll::Ready(Ok(()))
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
            return this.read_unbounded(cx, buf);
        };
        if room == 0 && this.meter.hello.load(Ordering::Acquire) {
            // After the hello: the rest waits for the connection to open.
            this.meter.waker.register(cx.waker());
            if this.meter.room().is_some() {
                return Poll::Pending;
            }
            return this.read_unbounded(cx, buf);
        }
        if room == 0 {
            let why = if this.meter.upgraded.load(Ordering::Acquire) {
                format!(
                    "limit exceeded: max_handshake_frame_len (a websocket message before the \
                     hello over {} bytes with its header)",
                    this.meter.cap
                )
            } else {
                format!("a websocket upgrade request over {UPGRADE_MAX} bytes")
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
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

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads from `m` until it waits, fails or ends: the bytes read and
    /// how it stopped (`None`: it waits).
    async fn read_until_it_stops<S: AsyncRead + Unpin>(
        m: &mut Metered<S>,
    ) -> (usize, Option<io::Result<()>>) {
        let mut total = 0;
        loop {
            let mut chunk = [0u8; 1000];
            let mut buf = ReadBuf::new(&mut chunk);
            let step = poll_fn(|cx| Poll::Ready(Pin::new(&mut *m).poll_read(cx, &mut buf))).await;
            match step {
                Poll::Pending => return (total, None),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return (total, Some(Ok(()))),
                Poll::Ready(Ok(())) => total += buf.filled().len(),
                Poll::Ready(Err(e)) => return (total, Some(Err(e))),
            }
        }
    }

    #[tokio::test]
    async fn past_the_bound_a_read_fails_before_the_hello_and_waits_after_it_until_open() {
        let cap = 100 + 4 + WS_HEADER;
        // Before the hello: a message over the bound is refused.
        let (ours, mut theirs) = tokio::io::duplex(4096);
        theirs.write_all(&[0u8; 1000]).await.unwrap();
        let meter = Meter::new(100);
        meter.opened();
        let mut m = Metered::new(ours, meter.clone());
        let (n, how) = read_until_it_stops(&mut m).await;
        assert_eq!(n, cap);
        let e = how.expect("refused, not waiting").unwrap_err();
        assert!(e.to_string().contains("max_handshake_frame_len"), "{e}");

        // After the hello (10 bytes delivered) and before the connection
        // is open: the read waits at the bound instead (a client may send
        // a large call right behind its hello).
        let (ours, mut theirs) = tokio::io::duplex(4096);
        theirs.write_all(&[0u8; 1000]).await.unwrap();
        let meter = Meter::new(100);
        meter.opened();
        let mut m = Metered::new(ours, meter.clone());
        let mut hello = [0u8; 10];
        m.read_exact(&mut hello).await.unwrap();
        meter.delivered(10);
        let (n, how) = read_until_it_stops(&mut m).await;
        assert_eq!(n, cap, "read up to the bound past what was delivered");
        assert!(how.is_none(), "waits: {how:?}");
        // Open: the rest is read, and the waiting reader was woken.
        let reader = tokio::spawn(async move {
            let mut rest = vec![0u8; 1000 - 10 - cap];
            m.read_exact(&mut rest).await.map(|_| rest.len())
        });
        // Let it reach the bound and wait before the connection opens.
        tokio::task::yield_now().await;
        meter.lift();
        let rest = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
            .await
            .expect("the lift wakes the waiting reader");
        assert_eq!(rest.unwrap().unwrap(), 1000 - 10 - cap);
    }
}
