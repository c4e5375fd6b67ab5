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

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::driver::io_types::OnOpen;
use crate::driver::Budget;

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
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S) -> Self {
        Counted {
            inner,
            budget: Arc::default(),
            counted: 0,
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
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
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
        let mut c = Counted::new(Socket { flushes: false });
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
