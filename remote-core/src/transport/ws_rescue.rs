//! An HTTP answer to an upgrade request the server cannot take.
//!
//! tungstenite answers a request for a path the server does not serve (our
//! callback's 404), but drops the stream without a word when the request
//! itself is wrong: not a GET, not HTTP/1.1, a missing
//! `Sec-WebSocket-Key`, bytes that do not parse, or a request over the
//! meter's bound (`ws_meter.rs`). A peer then saw its connection closed
//! and could not tell why. [`Rescue`] wraps the accepted stream; dropped
//! before anything was written to it (the upgrade failed before an
//! answer), it hands the stream to its [`Slot`] instead of closing it, and
//! the accept's future writes [`answer`] there: a `400 Bad Request` (or
//! `431` for a request too large) naming the fault, then closes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::Error as WsError;

use crate::driver::io_types::{is_refusal, Fd, Socket};

/// Where a [`Rescue`] leaves its stream when dropped unanswered.
pub(crate) type Slot<S> = Arc<Mutex<Option<S>>>;

/// The most the answer and the drain after it may take (less if the
/// handshake deadline comes first): a fresh socket's send buffer takes
/// its few hundred bytes at once, so only a peer that reads nothing and
/// has filled the buffer meanwhile, or goes on sending, waits this out.
const ANSWER_TIME: Duration = Duration::from_secs(1);

/// An accepted stream that, dropped before anything was written to it,
/// goes to its [`Slot`] instead of closing (module doc).
pub(crate) struct Rescue<S> {
    /// `None` only once dropped.
    inner: Option<S>,
    /// Taken at the first write: from then on the stream closes as usual.
    slot: Option<Slot<S>>,
}

impl<S> Rescue<S> {
    pub(crate) fn new(inner: S, slot: Slot<S>) -> Self {
        Rescue {
            inner: Some(inner),
            slot: Some(slot),
        }
    }

    fn inner(&mut self) -> io::Result<Pin<&mut S>>
    where
        S: Unpin,
    {
        match &mut self.inner {
            Some(s) => Ok(Pin::new(s)),
            None => Err(io::Error::other("the stream was handed on")),
        }
    }
}

impl<S> Drop for Rescue<S> {
    fn drop(&mut self) {
        if let (Some(slot), Some(inner)) = (self.slot.take(), self.inner.take()) {
            // The accept's future takes it at once (or drops it with the
            // slot): nothing else holds this lock.
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(inner);
        }
    }
}

impl<S: Socket> Socket for Rescue<S> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        if let Some(s) = &self.inner {
            s.with_socket(f);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rescue<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().inner()?.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rescue<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Something is being answered: the stream is tungstenite's to close.
        this.slot = None;
        this.inner()?.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner()?.poll_shutdown(cx)
    }
}

/// The HTTP answer to an upgrade that failed with `e`, if the request is
/// at fault: its whole text, to write as is. A peer that went away or was
/// too slow (an I/O error other than the meter's refusal, or the
/// handshake deadline) gets none.
pub(crate) fn answer(e: &WsError) -> Option<String> {
    let (status, why) = match e {
        WsError::Io(io) if is_refusal(io) => {
            ("431 Request Header Fields Too Large", io.to_string())
        }
        WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed => return None,
        // `Http` is an answer tungstenite wrote itself (and then the
        // stream is not rescued); the rest is the request's fault.
        other => ("400 Bad Request", other.to_string()),
    };
    let body = format!("websocket upgrade refused: {why}\n");
    Some(format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// What is read and dropped after the answer, so that the close does not
/// reset the connection (which would discard the answer) while the rest
/// of a request too large is still arriving.
const DRAIN_MAX: usize = 64 << 10;

/// Writes `answer` to the stream left in `slot`, if any, shuts its
/// writing side, and reads what the peer still sends until it closes,
/// within [`ANSWER_TIME`] and [`DRAIN_MAX`] bytes, and never past
/// `deadline` (the connection's handshake deadline: its slot is given
/// back then, and an answer running on held its socket open up to 1 s
/// longer, about twice `max_connections` sockets for a peer that made its
/// request fail just before it, red-team pass 30).
pub(crate) async fn write_answer<S: AsyncRead + AsyncWrite + Unpin>(
    slot: &Slot<S>,
    answer: &str,
    deadline: Instant,
) {
    let stream = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(mut s) = stream {
        let end = deadline.min(Instant::now() + ANSWER_TIME);
        let _ = tokio::time::timeout_at(end, async {
            s.write_all(answer.as_bytes()).await?;
            s.shutdown().await?;
            // On the heap: in the future, it would grow every accepting
            // connection's boxed upgrade by its size.
            let mut chunk = vec![0u8; 4096];
            let mut dropped = 0;
            while dropped < DRAIN_MAX {
                match s.read(&mut chunk).await? {
                    0 => break,
                    n => dropped += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::ProtocolError;

    #[test]
    fn a_malformed_request_is_a_bad_request_naming_its_fault() {
        let a = answer(&WsError::Protocol(ProtocolError::MissingSecWebSocketKey)).unwrap();
        assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
        let (head, body) = a.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{a}"
        );
        assert!(body.contains("Sec-WebSocket-Key"), "{body}");
    }

    #[test]
    fn a_refused_request_is_too_large_and_a_lost_peer_gets_nothing() {
        let big = WsError::Io(crate::driver::io_types::refusal(
            "a request over 16384 bytes",
        ));
        let a = answer(&big).unwrap();
        assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
        assert!(a.ends_with("16384 bytes\n"), "{a}");
        let reset = WsError::Io(io::ErrorKind::ConnectionReset.into());
        assert!(answer(&reset).is_none());
        assert!(answer(&WsError::ConnectionClosed).is_none());
    }

    #[tokio::test]
    async fn a_stream_dropped_unwritten_is_rescued_and_a_written_one_is_not() {
        let slot: Slot<tokio::io::DuplexStream> = Arc::default();
        let (a, _b) = tokio::io::duplex(64);
        drop(Rescue::new(a, slot.clone()));
        assert!(slot.lock().unwrap().take().is_some());

        let (a, mut b) = tokio::io::duplex(64);
        let mut r = Rescue::new(a, slot.clone());
        r.write_all(b"x").await.unwrap();
        drop(r);
        assert!(slot.lock().unwrap().is_none());
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"x", "a written stream closes as usual");
    }
}
