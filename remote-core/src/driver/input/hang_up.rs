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
//! while such a wait lasts the socket is also registered, for that
//! readiness only, with one poller the process shares (`Poller`, its
//! own thread, started as a server starts serving: [`start_watching`]),
//! and taken off when the wait ends. (A duplicate of the
//! descriptor registered with tokio instead cost a descriptor per waiting
//! connection: a peer made a server with 256 descriptors fail to accept
//! after 133 connections, below its `max_connections`, a red-team pass.)
//! The reader reaches the socket through the stream it reads ([`Socket`]):
//! TCP and Unix sockets, and the TLS and WebSocket streams over them
//! (split by `transport/split.rs`, whose halves still reach it). A close
//! that has not arrived (queued behind the peer's unsent bytes) cannot be
//! seen: `transport/keepalive.rs` bounds how long that lasts.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A socket, lent for a moment (nothing, where there are none to watch).
#[cfg(unix)]
pub(crate) type Fd<'a> = std::os::fd::BorrowedFd<'a>;
/// A socket, lent for a moment (nothing, where there are none to watch).
#[cfg(not(unix))]
pub(crate) type Fd<'a> = std::marker::PhantomData<&'a ()>;

/// A stream that may sit on a socket (module doc).
pub(crate) trait Socket {
    /// Calls `f` with the socket this stream reads, if it reads one (not
    /// yet, for a WebSocket before its upgrade).
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>));
}

/// What a connection reads: a byte stream, and the socket under it if any.
pub(crate) trait ConnRead: AsyncRead + Socket + Send + Unpin {}

impl<T: AsyncRead + Socket + Send + Unpin> ConnRead for T {}

#[cfg(not(target_arch = "wasm32"))]
impl Socket for tokio::net::TcpStream {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        #[cfg(unix)]
        f(std::os::fd::AsFd::as_fd(self));
        #[cfg(not(unix))]
        let _ = f;
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Socket for tokio::net::tcp::OwnedReadHalf {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        self.as_ref().with_socket(f);
    }
}

#[cfg(unix)]
impl Socket for tokio::net::unix::OwnedReadHalf {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        f(std::os::fd::AsFd::as_fd(self.as_ref()));
    }
}

/// A stream read as it is, with no socket to watch (a pipe, an in-memory
/// stream, or one a user hands in).
pub(crate) struct Plain<R>(pub(crate) R);

impl<R> Socket for Plain<R> {
    fn with_socket(&self, _: &mut dyn FnMut(Fd<'_>)) {}
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
/// doc). Declared before the reader it watches in what holds both, so it
/// is dropped first: the socket is taken off the poller while it is
/// still open.
#[derive(Default)]
pub(crate) struct Watch {
    #[cfg(unix)]
    registered: Option<poller::Registered>,
    /// The socket could not be registered (the poller could not start,
    /// out of descriptors, say): tried again when this fires, for as long
    /// as the wait lasts. (A wait that found the poller down went
    /// unwatched to its end, however soon the poller came back: a peer
    /// that used up the descriptors as its readers began to wait, then
    /// reset, kept the budget held to its calls' deadlines: a red-team
    /// pass.)
    #[cfg(unix)]
    retry: Option<Pin<Box<crate::rt::time::Sleep>>>,
    /// The reader is on no socket: nothing to watch.
    no_socket: bool,
}

impl Watch {
    /// `Ready` once the peer has closed or reset the connection whose
    /// reader sits on `s` (never, if it sits on no socket). The socket is
    /// registered at the first poll, and taken off at
    /// [`done`](Self::done).
    pub(crate) fn poll_closed<S: Socket + ?Sized>(
        &mut self,
        s: &S,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        #[cfg(unix)]
        loop {
            if let Some(r) = &self.registered {
                // (Asked after the waker is registered: a poller stopping
                // wakes every registration once it is marked stopped.)
                if r.poll_closed(cx).is_ready() {
                    return Poll::Ready(());
                }
                if !r.poller_stopped() {
                    return Poll::Pending;
                }
                // Its poller's thread is gone: registered again with the
                // one that replaces it.
                self.registered = None;
            }
            if self.no_socket {
                return Poll::Pending;
            }
            if let Some(retry) = &mut self.retry {
                if retry.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.retry = None;
            }
            let mut registered = None;
            s.with_socket(&mut |fd| registered = Some(poller::Registered::new(fd)));
            match registered {
                Some(Ok(r)) => self.registered = Some(r),
                Some(Err(e)) => {
                    // Until then the wait goes on as without this watch,
                    // noticing a close when it ends.
                    tracing::debug!("cannot watch the socket for a close yet: {e}");
                    self.retry = Some(Box::pin(crate::rt::time::sleep(poller::RETRY)));
                }
                None => self.no_socket = true,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (s, cx, &mut self.no_socket);
            Poll::Pending
        }
    }

    /// The wait is over: the socket is taken off the poller.
    pub(crate) fn done(&mut self) {
        #[cfg(unix)]
        {
            self.registered = None;
            self.retry = None;
        }
        self.no_socket = false;
    }
}

/// Starts the poller a process's waiting readers share, if it is not
/// running: a server does as it starts serving, while descriptors are
/// free, so that a peer cannot choose the moment of its first start (a
/// start that fails is tried again later, `Watch`).
pub(crate) fn start_watching() {
    #[cfg(unix)]
    poller::start();
}

#[cfg(unix)]
#[path = "hang_up_poller.rs"]
mod poller;
