//! The stream a [`Meter`] counts: it hands tungstenite the bytes the
//! peer sends, holding a frame's header back (its last byte) until the
//! meter admits the frame, and reads on meanwhile so that a peer that
//! closes is noticed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Admit, Meter, READ_AHEAD};
use crate::driver::io_types::{is_refusal, Fd, Socket, Watch, DRAIN_BYTES};
use crate::transport::ws_scan::Scan;

/// A stream whose reads are counted in a [`Meter`] and bounded by it.
pub(crate) struct Metered<S> {
    /// The socket under `inner`, watched for a close while the stream is
    /// held back (`driver/input/hang_up.rs`). Before `inner`: dropped
    /// first.
    hang_up: Watch,
    inner: S,
    meter: Arc<Meter>,
    scan: Scan,
    /// Bytes read from a header held back on (at most [`READ_AHEAD`] and
    /// one byte more); freed once handed on. Taken from the front without
    /// moving the rest (`advance`): handed on a frame at a time, a `Vec`'s
    /// `drain` moved up to 8 KiB per frame, doubling the CPU of a flood of
    /// pongs (a red-team pass).
    ahead: BytesMut,
    /// A header held back waiting for room in the budget.
    room: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// What was dropped since a refusal ([`discard`]).
    discarded: usize,
}

/// What [`discard`] drops in one poll before it lets other tasks run.
const DISCARD_PER_POLL: usize = 64 << 10;

#[path = "ws_fuzz.rs"]
pub(crate) mod fuzz;

/// Reads what `inner` gives and drops it, counting it in `dropped`:
/// `Pending` until it ends, or [`DRAIN_BYTES`] were dropped (then `Ok`, the
/// end of the stream, as the close of a TCP connection reads no more),
/// letting other tasks run after [`DISCARD_PER_POLL`] bytes.
pub(crate) fn discard<S: AsyncRead + Unpin>(
    inner: &mut S,
    dropped: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    let most = dropped.saturating_add(DISCARD_PER_POLL);
    while *dropped < most {
        if *dropped >= DRAIN_BYTES {
            return Poll::Ready(Ok(()));
        }
        let mut chunk = [0u8; 4096];
        let mut part = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut *inner).poll_read(cx, &mut part))?;
        if part.filled().is_empty() {
            return Poll::Ready(Ok(()));
        }
        *dropped += part.filled().len();
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, meter: Arc<Meter>) -> Self {
        Metered {
            hang_up: Watch::default(),
            inner,
            meter,
            scan: Scan::new(),
            ahead: BytesMut::new(),
            room: None,
            discarded: 0,
        }
    }

    /// Scans `bytes`, the next ones for tungstenite, of which `limit` fit
    /// in its buffer: how many may be handed on, and if not all, why the
    /// header after them is held.
    fn feed(scan: &mut Scan, meter: &Meter, bytes: &[u8], limit: usize) -> (usize, Option<Admit>) {
        let mut why = None;
        scan.stop_at_ends = meter.shed_wanted();
        let fed = scan.feed_up_to(bytes, limit, |head| match meter.admit(head) {
            Admit::Yes => true,
            other => {
                why = Some(other);
                false
            }
        });
        if fed.more {
            why = Some(Admit::More);
        }
        if scan.stop_at_ends {
            meter.want_shed(true);
        }
        meter
            .rest
            .store(scan.rest().unwrap_or(u64::MAX), Ordering::Release);
        (fed.used, why)
    }

    /// While a header (or the bound before the opening) holds the stream
    /// back, what the peer sends is read on into `ahead`, up to
    /// [`READ_AHEAD`] and one byte more, so that a peer that closes is
    /// noticed: the end of its stream is handed on (tungstenite fails the
    /// frame, and the connection closes). Without it, a peer that
    /// announced a large frame while the budget was full and closed kept
    /// its connection until an idle timeout (a red-team pass: 40 of them
    /// still open 30 s on, where over TCP the frame reader's wait watches
    /// the socket). Past that, the socket itself is watched for a close
    /// (`driver/input/hang_up.rs`): a peer that sent more, whose handlers
    /// held the room it waited for, went unnoticed until their deadlines.
    fn watch(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        S: AsyncRead + Socket + Unpin,
    {
        while self.ahead.len() <= READ_AHEAD {
            let mut chunk = [0u8; 1024];
            let want = (READ_AHEAD + 1 - self.ahead.len()).min(chunk.len());
            let mut part = ReadBuf::new(&mut chunk[..want]);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut part))?;
            let n = part.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            self.meter.read.fetch_add(n, Ordering::AcqRel);
            self.ahead.extend_from_slice(part.filled());
        }
        if self.hang_up.poll_closed(&self.inner, cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// Reads what the peer sent next into `ahead` (the scan needs it to
    /// ask for the header held back): whether anything came (not the end
    /// of the stream).
    fn read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>>
    where
        S: AsyncRead + Unpin,
    {
        let mut chunk = [0u8; 1024];
        let want = (READ_AHEAD + 1).saturating_sub(self.ahead.len());
        let mut part = ReadBuf::new(&mut chunk[..want.clamp(1, 1024)]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        self.meter.read.fetch_add(n, Ordering::AcqRel);
        self.ahead.extend_from_slice(part.filled());
        Poll::Ready(Ok(n > 0))
    }

    /// A header is held back for `why`: `Ok` to look again (once the
    /// reader has room to wait for, or the connection opened meanwhile).
    fn hold(&mut self, why: Admit, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match why {
            Admit::Yes | Admit::More => Poll::Ready(Ok(())),
            Admit::Refused(e) => Poll::Ready(Err(e)),
            Admit::AfterOpening => {
                self.meter.waker.register(cx.waker());
                if self.meter.lifted.load(Ordering::Acquire) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            Admit::AfterRoom(need) => {
                let Some(budget) = self.meter.budget.get().cloned() else {
                    return Poll::Ready(Ok(()));
                };
                let meter = self.meter.clone();
                self.meter.waits.store(true, Ordering::Release);
                self.room = Some(Box::pin(async move {
                    // The budget is short meanwhile (`pressure_stall_timeout`).
                    let starving = budget.starving();
                    starving.set(true);
                    budget
                        .wait_until(&meter.own, || budget.has_room(need))
                        .await;
                }));
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: Socket> Socket for Metered<S> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        self.inner.with_socket(f)
    }
}

impl<S: AsyncRead + Socket + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.meter.refused.load(Ordering::Acquire) {
            // After a refusal (the meter's or the WebSocket layer's), what
            // the peer sends is dropped, nothing scanned, counted or
            // handed on, until it ends its stream (see `WsIo::discard`).
            this.room = None;
            this.meter.waits.store(false, Ordering::Release);
            this.ahead = BytesMut::new();
            return discard(&mut this.inner, &mut this.discarded, cx);
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let r = this.read_metered(cx, buf);
        if r.is_ready() {
            // Not held back (any more).
            this.hang_up.done();
        }
        if matches!(&r, Poll::Ready(Err(e)) if is_refusal(e)) {
            this.meter.refuse();
        }
        r
    }
}

impl<S: AsyncRead + Socket + Unpin> Metered<S> {
    /// Reads into `buf` what the meter admits.
    fn read_metered(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(room) = &mut self.room {
                if room.as_mut().poll(cx).is_pending() {
                    return self.watch(cx);
                }
                self.room = None;
                self.meter.waits.store(false, Ordering::Release);
            }
            if !self.ahead.is_empty() {
                // What was read past a header held back goes first.
                let n = self.ahead.len().min(buf.remaining());
                let (used, why) = Self::feed(&mut self.scan, &self.meter, &self.ahead, n);
                buf.put_slice(&self.ahead[..used]);
                self.ahead.advance(used);
                if self.ahead.is_empty() {
                    self.ahead = BytesMut::new();
                }
                if used > 0 {
                    return Poll::Ready(Ok(()));
                }
                if let Some(Admit::More) = why {
                    // The header's last byte and less than a prefix past
                    // it are here: at most a few bytes.
                    if ready!(self.read_more(cx))? {
                        continue;
                    }
                    // The peer ended its stream: tungstenite is told so.
                    return Poll::Ready(Ok(()));
                }
                match self.hold(why.unwrap_or(Admit::Yes), cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return self.watch(cx),
                }
            }
            let most = match self.meter.room() {
                None => usize::MAX,
                Some(0) if self.meter.hello.load(Ordering::Acquire) => {
                    // After the hello: the rest waits for the opening.
                    if self.hold(Admit::AfterOpening, cx).is_pending() {
                        return self.watch(cx);
                    }
                    continue;
                }
                Some(0) => return Poll::Ready(Err(self.meter.over_handshake())),
                Some(room) => room,
            };
            let most = most
                .min(self.scan.read_limit(READ_AHEAD))
                .min(buf.remaining());
            let before = buf.filled().len();
            let n = {
                let mut part = ReadBuf::new(buf.initialize_unfilled_to(most));
                ready!(Pin::new(&mut self.inner).poll_read(cx, &mut part))?;
                part.filled().len()
            };
            buf.advance(n);
            self.meter.read.fetch_add(n, Ordering::AcqRel);
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            let fresh = &buf.filled()[before..];
            let (used, why) = Self::feed(&mut self.scan, &self.meter, fresh, fresh.len());
            if used < n {
                self.ahead.extend_from_slice(&buf.filled()[before + used..]);
                buf.set_filled(before + used);
            }
            if used > 0 {
                return Poll::Ready(Ok(()));
            }
            match self.hold(why.unwrap_or(Admit::Yes), cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.watch(cx),
            }
        }
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
