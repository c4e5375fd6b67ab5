//! Noticing that a peer closed or reset its connection while its bytes
//! are not read.
//!
//! A reader waiting for room (`room.rs`) reads its socket only into the
//! read buffer's spare room and one byte more, so that a peer cannot make
//! it buffer without bound. A peer that sent more than that and then
//! closed its socket used to go unnoticed until the wait ended; when the
//! wait was for room that the connection's own handlers held, waiting on
//! callbacks the peer would never answer, it ended only at their
//! deadlines (up to `max_deadline`), with the whole memory budget and the
//! connection slots held and no socket on the peer's side (a red-team
//! pass).
//!
//! The kernel knows at once: a reset or a close sets the socket's
//! read-closed (and, for a reset, error) readiness whatever the unread
//! data before it. The connection's own registration cannot be asked for
//! it, as its readiness says readable while that data waits, and clearing
//! it would leave the reader waiting for an edge that never comes. So
//! while such a wait lasts, a duplicate of the socket's descriptor is
//! registered on its own ([`Watch::poll_closed`]), and dropped when the
//! wait ends: one descriptor more only for a connection waiting so. The
//! reader reaches the socket through the stream it reads ([`Socket`]):
//! TCP and Unix sockets, and the TLS and WebSocket streams over them
//! (split by `transport/split.rs`, whose halves still reach it). A close
//! that has not arrived (queued behind the peer's unsent bytes) cannot be
//! seen: `transport/keepalive.rs` bounds how long that lasts.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A duplicate of a socket's descriptor (none where there are no
/// descriptors to watch).
#[cfg(unix)]
pub(crate) enum Dup {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}
/// A duplicate of a socket's descriptor (none where there are no
/// descriptors to watch).
#[cfg(not(unix))]
pub(crate) enum Dup {}

/// A stream that may sit on a socket (module doc).
pub(crate) trait Socket {
    /// A duplicate of the socket this stream reads (`None` if it reads no
    /// socket, or not yet one: a WebSocket before its upgrade).
    fn dup_socket(&self) -> Option<io::Result<Dup>>;
}

/// What a connection reads: a byte stream, and the socket under it if any.
pub(crate) trait ConnRead: AsyncRead + Socket + Send + Unpin {}

impl<T: AsyncRead + Socket + Send + Unpin> ConnRead for T {}

/// A duplicate of `s`'s descriptor.
#[cfg(unix)]
fn dup<S: std::os::fd::AsFd>(
    s: &S,
    kind: fn(std::os::fd::OwnedFd) -> Dup,
) -> Option<io::Result<Dup>> {
    Some(s.as_fd().try_clone_to_owned().map(kind))
}

#[cfg(not(target_arch = "wasm32"))]
impl Socket for tokio::net::TcpStream {
    fn dup_socket(&self) -> Option<io::Result<Dup>> {
        #[cfg(unix)]
        return dup(self, |fd| Dup::Tcp(fd.into()));
        #[cfg(not(unix))]
        None
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Socket for tokio::net::tcp::OwnedReadHalf {
    fn dup_socket(&self) -> Option<io::Result<Dup>> {
        self.as_ref().dup_socket()
    }
}

#[cfg(unix)]
impl Socket for tokio::net::unix::OwnedReadHalf {
    fn dup_socket(&self) -> Option<io::Result<Dup>> {
        dup(self.as_ref(), |fd| Dup::Unix(fd.into()))
    }
}

/// A duplicate registered on its own.
#[cfg(unix)]
enum Watched {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

#[cfg(unix)]
impl Watched {
    /// Registers `dup` (in non-blocking mode already: the mode belongs to
    /// the socket, which the duplicate shares).
    fn new(dup: Dup) -> io::Result<Self> {
        match dup {
            Dup::Tcp(s) => tokio::net::TcpStream::from_std(s).map(Watched::Tcp),
            Dup::Unix(s) => tokio::net::UnixStream::from_std(s).map(Watched::Unix),
        }
    }

    /// Waits until the peer closed or reset the connection. Closed
    /// readiness is final: clearing the readable one leaves it set.
    async fn closed(&self) -> io::Result<()> {
        use tokio::io::Interest;
        let more = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        loop {
            let ready = match self {
                Watched::Tcp(s) => s.ready(Interest::READABLE).await?,
                Watched::Unix(s) => s.ready(Interest::READABLE).await?,
            };
            if ready.is_read_closed() || ready.is_error() {
                return Ok(());
            }
            // Only more bytes, not read here: wait for the next change of
            // the socket's state.
            let _ = match self {
                Watched::Tcp(s) => s.try_io(Interest::READABLE, more),
                Watched::Unix(s) => s.try_io(Interest::READABLE, more),
            };
        }
    }
}

/// A stream read as it is, with no socket to watch (a pipe, an in-memory
/// stream, or one a user hands in).
pub(crate) struct Plain<R>(pub(crate) R);

impl<R> Socket for Plain<R> {
    fn dup_socket(&self) -> Option<io::Result<Dup>> {
        None
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Plain<R> {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// The socket under a reader, watched while the reader waits (module
/// doc).
#[derive(Default)]
pub(crate) struct Watch {
    /// Its duplicate's wait for a close, while a wait lasts.
    #[cfg(unix)]
    closing: Option<Pin<Box<dyn std::future::Future<Output = io::Result<()>> + Send>>>,
    /// The reader is on no socket, or it could not be watched.
    blind: bool,
}

impl Watch {
    /// `Ready` once the peer has closed or reset the connection whose
    /// reader sits on `s` (never, if it sits on no socket). A duplicate of
    /// the socket is registered at the first poll, and kept until
    /// [`done`](Self::done).
    pub(crate) fn poll_closed<S: Socket + ?Sized>(
        &mut self,
        s: &S,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        #[cfg(unix)]
        {
            if !self.blind && self.closing.is_none() {
                let registered = match s.dup_socket() {
                    None => Err(None),
                    Some(dup) => dup.and_then(Watched::new).map_err(Some),
                };
                match registered {
                    Ok(watched) => {
                        self.closing = Some(Box::pin(async move { watched.closed().await }));
                    }
                    Err(e) => {
                        // Out of descriptors, say: the wait goes on as
                        // without this watch, noticing a close when it
                        // ends.
                        if let Some(e) = e {
                            tracing::debug!("cannot watch the socket for a close: {e}");
                        }
                        self.blind = true;
                    }
                }
            }
            if let Some(closing) = &mut self.closing {
                match closing.as_mut().poll(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(()),
                    Poll::Ready(Err(e)) => {
                        tracing::debug!("cannot watch the socket for a close: {e}");
                        self.closing = None;
                        self.blind = true;
                    }
                    Poll::Pending => {}
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (s, cx, &mut self.blind);
        Poll::Pending
    }

    /// The wait is over: the duplicate is dropped.
    pub(crate) fn done(&mut self) {
        #[cfg(unix)]
        {
            self.closing = None;
        }
        self.blind = false;
    }
}
