//! The reading half of [`WsIo`]: the binary messages' bytes handed on as
//! the connection's input, one frame per message; everything else read
//! is answered, counted or refused.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::Message;

use super::{Half, WsIo};
use crate::driver::io_types::{is_refusal, refusal};

/// Checks that a binary message holds exactly one frame.
fn check_message(b: &Bytes) -> io::Result<()> {
    let said = (b.len() >= 4).then(|| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if said != Some(b.len().wrapping_sub(4)) {
        return Err(refusal(format!(
            "protocol violation: a websocket message of {} bytes must hold exactly one frame (its length prefix says {said:?})",
            b.len()
        )));
    }
    Ok(())
}

impl<S> AsyncRead for WsIo<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refused {
            return this.discard(cx);
        }
        let r = this.read_messages(cx, buf);
        if matches!(&r, Poll::Ready(Err(e)) if is_refusal(e)) {
            this.refused = true;
            this.read = Bytes::new();
            // What the peer sends from now on goes unread by the meter.
            if let Some(m) = &this.meter {
                m.refuse();
            }
        }
        r
    }
}

impl<S> WsIo<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    /// Reads into `buf` what the binary messages carry.
    fn read_messages(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self;
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                if this.read.is_empty() {
                    // An empty slice still holds the message's buffer.
                    this.read = Bytes::new();
                    if let Some(m) = &this.meter {
                        m.drained();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            this.shed(cx, false)?;
            let ws = ready!(this.poll_open(cx, Half::Read))?;
            let next = ready!(Pin::new(ws).poll_next(cx));
            if let Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) = &next {
                this.events += 1;
            }
            match next {
                None => {
                    this.done = true;
                    return Poll::Ready(Ok(()));
                }
                Some(Ok(Message::Close(_))) => {
                    this.done = true;
                    this.closed_by_peer = true;
                    return Poll::Ready(Ok(()));
                }
                Some(Ok(Message::Binary(b))) => {
                    check_message(&b)?;
                    if let Some(m) = &this.meter {
                        m.delivered(b.len());
                    }
                    this.read = b;
                }
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(refusal(
                        "protocol violation: a text websocket message (frames are binary messages)",
                    )))
                }
                // Pings are answered by tungstenite (the pong is queued
                // unflushed); a control frame is no partial message (the
                // meter counted it off as read).
                Some(Ok(Message::Ping(_))) => this.pinged = true,
                Some(Ok(Message::Pong(_))) => {}
                Some(Ok(_)) => {} // raw frames are not delivered when reading
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                    // Refused from its header, nothing buffered. Handed to
                    // the frame codec as the length prefix it carries, so
                    // the usual goodbye naming `max_frame_len` goes out.
                    let len = u32::try_from(size.saturating_sub(4)).unwrap_or(u32::MAX);
                    this.read = Bytes::copy_from_slice(&len.to_be_bytes());
                }
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    this.done = true;
                    return Poll::Ready(Ok(()));
                }
                // The stream's own errors go on as they are: the meter's
                // refusals are told to the peer, and so are the frames
                // tungstenite finds against the protocol.
                Some(Err(WsError::Io(e))) => return Poll::Ready(Err(e)),
                // A reset is the end of the stream, not a violation.
                Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                    this.done = true;
                    return Poll::Ready(Ok(()));
                }
                Some(Err(WsError::Protocol(e))) => {
                    return Poll::Ready(Err(refusal(format!("protocol violation: websocket: {e}"))))
                }
                // Text that is not UTF-8 (a text fragment, a close
                // reason) is against the protocol too (RFC 6455 §8.1).
                Some(Err(WsError::Utf8(e))) => {
                    return Poll::Ready(Err(refusal(format!(
                        "protocol violation: websocket: text that is not UTF-8 ({e})"
                    ))))
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}
