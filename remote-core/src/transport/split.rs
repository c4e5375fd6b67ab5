//! A stream split into the connection's reading and writing halves, as
//! `tokio::io::split` splits one, except that the reading half still
//! reaches the socket under the stream (a TLS or WebSocket stream's TCP
//! socket), so that a close can be noticed while the connection does not
//! read (`driver/input/hang_up.rs`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::driver::io_types::{BoxRead, BoxWrite, Fd, Socket};

/// Splits `s` into a reading and a writing half, each taking a lock on it
/// for each poll (uncontended but for the moments both poll at once).
pub(crate) fn split<S>(s: S) -> (BoxRead, BoxWrite)
where
    S: AsyncRead + AsyncWrite + Socket + Send + Unpin + 'static,
{
    let s = Arc::new(Mutex::new(s));
    (Box::new(Half(s.clone())), Box::new(Half(s)))
}

/// Either half: the reading one is boxed as a reader, the writing one as
/// a writer.
struct Half<S>(Arc<Mutex<S>>);

impl<S> Half<S> {
    fn lock(&self) -> MutexGuard<'_, S> {
        // A poll that panicked left the stream as it was: the connection
        // ends on the panic anyway.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Socket> Socket for Half<S> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        self.lock().with_socket(f)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Half<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Half<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_shutdown(cx)
    }
}

#[cfg(feature = "tls")]
impl<S: Socket> Socket for tokio_rustls::server::TlsStream<S> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        self.get_ref().0.with_socket(f)
    }
}

#[cfg(feature = "tls")]
impl<S: Socket> Socket for tokio_rustls::client::TlsStream<S> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        self.get_ref().0.with_socket(f)
    }
}

#[cfg(all(feature = "websocket", not(target_arch = "wasm32")))]
impl Socket for tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        // Other variants come with features not enabled here.
        if let tokio_tungstenite::MaybeTlsStream::Plain(s) = self {
            s.with_socket(f);
        }
    }
}
