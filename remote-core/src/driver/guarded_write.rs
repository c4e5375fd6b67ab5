//! The socket's writing half behind a guard against a transport that
//! panics in a write, flush or shutdown.
//!
//! Writes happen in whichever task holds the write token (`direct.rs`):
//! a caller's, the reader's or the writer task's. A panic escaping there
//! would unwind through the token holder without giving the token back,
//! so nothing would write again and the close sequence (which needs the
//! token) would never run. Caught here instead, the panic becomes an I/O
//! error the writer task meets and reports: the connection closes with it
//! and every caller gets `Err`. The transport is not used again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use super::io::BoxWrite;

/// A transport's writing half that turns a panic into an error, and fails
/// every use after one.
pub(crate) struct GuardedWrite {
    w: BoxWrite,
    /// What the transport panicked with, once it has.
    broken: Option<String>,
}

impl GuardedWrite {
    pub(crate) fn new(w: BoxWrite) -> Self {
        GuardedWrite { w, broken: None }
    }

    /// Runs one poll of the transport, unless it already panicked.
    fn guard<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(Pin<&mut BoxWrite>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if let Some(why) = &self.broken {
            return Poll::Ready(Err(std::io::Error::other(why.clone())));
        }
        match catch_unwind(AssertUnwindSafe(|| f(Pin::new(&mut self.w)))) {
            Ok(p) => p,
            Err(panic) => {
                let msg = super::panics::panic_error(panic).message;
                let why = format!("the transport panicked in {what}: {msg}");
                self.broken = Some(why.clone());
                Poll::Ready(Err(std::io::Error::other(why)))
            }
        }
    }
}

impl AsyncWrite for GuardedWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut()
            .guard("poll_write", |w| w.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().guard("poll_flush", |w| w.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut()
            .guard("poll_shutdown", |w| w.poll_shutdown(cx))
    }
}
