//! What rustls holds of a server connection's output counts in the memory
//! budget until a flush has it in the socket.
//!
//! A write into a TLS stream returns once rustls took the bytes; they wait
//! in its buffer, encrypted, while the socket is full. Uncounted, a peer
//! that read nothing held about 55 KiB there per connection, outside the
//! budget (a red-team pass): over `max_connections` = 1024, nearly the
//! budget again. rustls's buffer is held to [`OUT_LIMIT`] here (its
//! default, set explicitly), and what a write hands it counts until a
//! flush has emptied it, never more than it can hold ([`COUNT_MAX`]: the
//! writer flushes only once its queue is empty, so a count kept to the
//! flush alone would pile up under a busy client, as a WebSocket's did).
//!
//! The input side ([`RawCount`] below rustls, [`Input`] between the two):
//! once the TLS handshake is done, the socket gives rustls at most
//! [`IN_MAX`] (a whole record, its header and 4 KiB) past the last time
//! rustls handed data on, and what it gave counts in the budget until
//! then; if rustls has no data to hand on when the bound is reached, the
//! read fails and the connection closes. An honest peer sends only data
//! after the handshake (a TLS 1.3 key update is a few bytes). A hostile
//! one had rustls join a handshake message of up to 64 KiB (a key update
//! claiming 0xffff bytes), outside the budget for as long as it stayed, or
//! hold part of a record (a red-team pass). A read that hands data on
//! keeps counted what rustls was given beyond that data and a record's
//! overhead. Left: rustls's read buffer grows in steps, so a peer can
//! hold up to about 12 KiB of its capacity beyond the count (a red-team
//! pass's measure) until its idle timeout; and a peer may not send more
//! than [`IN_MAX`] of records with no data in them in a row (TLS allows
//! records of padding alone; no client we know sends them).

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::driver::io_types::OnOpen;
use crate::driver::Budget;

/// What the socket may give rustls past the handshake before rustls hands
/// data on: a whole record (16 KiB and 256 bytes of overhead at most),
/// its header, and 4 KiB more (a key update, an alert). rustls is given
/// no more until it hands data on; if it has none then, the connection
/// fails.
pub(crate) const IN_MAX: usize = 16 * 1024 + 256 + 5 + 4096;

/// The least a TLS 1.3 record adds to its data: a 5-byte header, the
/// content type and a 16-byte tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

/// The bytes read from the socket since rustls last handed data on,
/// shared by the socket below rustls ([`RawCount`]) and the stream above
/// it ([`Counted`]), which counts them in the budget.
#[derive(Debug, Default)]
pub(crate) struct Input {
    since_data: AtomicUsize,
    /// Every byte given to rustls past the handshake (a read's share is
    /// the difference across it).
    total: AtomicUsize,
    /// [`IN_MAX`] was reached: rustls was given nothing more.
    capped: AtomicBool,
    /// Set once the TLS handshake is done (its own messages, a client's
    /// certificate chain among them, are bounded by rustls and the
    /// handshake's deadline).
    armed: AtomicBool,
}

impl Input {
    /// The TLS handshake is done: from now on, what rustls is given counts.
    pub(crate) fn arm(&self) {
        self.since_data.store(0, Relaxed);
        self.armed.store(true, Relaxed);
    }
}

/// The socket below rustls: counts what it gives rustls into [`Input`],
/// and gives it no more than [`IN_MAX`] until rustls hands data on.
pub(crate) struct RawCount<S> {
    inner: S,
    input: Arc<Input>,
}

impl<S> RawCount<S> {
    pub(crate) fn new(inner: S, input: Arc<Input>) -> Self {
        RawCount { inner, input }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RawCount<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.input.armed.load(Relaxed) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let room = IN_MAX.saturating_sub(this.input.since_data.load(Relaxed));
        if room == 0 {
            // rustls hands on what it has, and the stream above fails
            // the read if that is nothing (`Counted::poll_read`).
            this.input.capped.store(true, Relaxed);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let want = room.min(buf.remaining());
        let mut part = ReadBuf::new(buf.initialize_unfilled_to(want));
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        buf.advance(n);
        this.input.since_data.fetch_add(n, Relaxed);
        this.input.total.fetch_add(n, Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RawCount<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    // rustls writes its records vectored (a refusal's alert among them).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What rustls may hold of the output (`set_buffer_limit`).
pub(crate) const OUT_LIMIT: usize = 64 << 10;

/// What the count never exceeds: [`OUT_LIMIT`] and the records' overhead
/// (a header and a tag per record of at most 16 KiB, some 22 bytes each).
const COUNT_MAX: usize = OUT_LIMIT + 1024;

/// A server's TLS stream whose output held by rustls counts in the budget
/// once the connection is open (before, only the handshake's frames go
/// out).
pub(crate) struct Counted<S> {
    inner: S,
    /// Set by the driver when the connection opens ([`opened`](Self::opened)).
    budget: Arc<OnceLock<Arc<Budget>>>,
    /// Counted now.
    counted: usize,
    /// What the socket gave rustls that it has not handed on.
    input: Arc<Input>,
    /// Of that, counted now.
    in_counted: usize,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, input: Arc<Input>) -> Self {
        Counted {
            inner,
            budget: Arc::default(),
            counted: 0,
            input,
            in_counted: 0,
        }
    }

    /// What the driver calls when the connection opens: from then on the
    /// output counts in its budget.
    pub(crate) fn opened(&self) -> OnOpen {
        let slot = self.budget.clone();
        Arc::new(move |budget, _credit| {
            let _ = slot.set(budget.clone());
            None
        })
    }

    /// A read handed on `n` bytes of data, rustls having been given
    /// `given` bytes during it: what rustls may still hold counts, and
    /// counts towards [`IN_MAX`]. Handing data on, rustls used at least
    /// `n` bytes and a record's overhead of what it was given during the
    /// read; the rest may be held, so it stays counted (rustls reads on
    /// past a record of data while the socket has more: forgetting the
    /// rest let a peer send data and a handshake message in one burst,
    /// a red-team pass). `Err` if rustls was given all it may be and has
    /// no data.
    fn read(&mut self, n: usize, given: usize) -> io::Result<()> {
        let held = if n > 0 {
            let held = given.saturating_sub(n + RECORD_OVERHEAD);
            self.input.since_data.store(held, Relaxed);
            self.input.capped.store(false, Relaxed);
            held
        } else if self.input.capped.load(Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the TLS peer sent more than {IN_MAX} bytes of records with no data in \
                     them past the handshake"
                ),
            ));
        } else {
            self.input.since_data.load(Relaxed)
        };
        if let Some(budget) = self.budget.get() {
            if held > self.in_counted {
                budget.charge(held - self.in_counted);
            } else {
                budget.release(self.in_counted - held);
            }
            self.in_counted = held;
        }
        Ok(())
    }

    /// `n` more bytes handed to rustls.
    fn wrote(&mut self, n: usize) {
        let Some(budget) = self.budget.get() else {
            return;
        };
        let counted = (self.counted + n).min(COUNT_MAX);
        budget.charge(counted - self.counted);
        self.counted = counted;
    }

    /// rustls's buffer is in the socket.
    fn flushed(&mut self) {
        if let Some(budget) = self.budget.get() {
            budget.release(std::mem::take(&mut self.counted));
        }
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.flushed();
        if let Some(budget) = self.budget.get() {
            budget.release(self.in_counted);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let given = this.input.total.load(Relaxed);
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.remaining() > 0 || buf.filled().len() > before {
            let given = this.input.total.load(Relaxed) - given;
            this.read(buf.filled().len() - before, given)?;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.wrote(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        this.flushed();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A writer that takes every byte and whose flush waits until told.
    struct Socket {
        flushes: bool,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            if self.flushes {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(c: &mut Counted<Socket>, n: usize) {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let r = Pin::new(c).poll_write(&mut cx, &vec![0; n]);
        assert!(matches!(r, Poll::Ready(Ok(m)) if m == n));
    }

    fn flush(c: &mut Counted<Socket>) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        Pin::new(c).poll_flush(&mut cx).is_ready()
    }

    #[test]
    fn output_counts_from_the_opening_until_a_flush_never_more_than_rustls_holds() {
        let budget = Arc::new(Budget::new(1 << 30));
        let mut c = Counted::new(Socket { flushes: false }, Arc::default());
        // Before the opening: the handshake's frames, not counted.
        write(&mut c, 100);
        assert_eq!(budget.used(), 0);
        (c.opened())(&budget, &Arc::new(AtomicUsize::new(0)));
        write(&mut c, 40 << 10);
        assert_eq!(budget.used(), 40 << 10);
        assert!(!flush(&mut c));
        assert_eq!(
            budget.used(),
            40 << 10,
            "a flush that waits releases nothing"
        );
        for _ in 0..10 {
            write(&mut c, 40 << 10);
        }
        assert_eq!(budget.used(), COUNT_MAX, "capped at what rustls can hold");
        c.inner.flushes = true;
        assert!(flush(&mut c));
        assert_eq!(budget.used(), 0);
        write(&mut c, 1000);
        assert_eq!(budget.used(), 1000);
        drop(c);
        assert_eq!(budget.used(), 0, "given back when the connection goes");
    }
}
