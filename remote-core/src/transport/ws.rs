//! The WebSocket transport (`ws://host:port/path`): one protocol frame per
//! binary WebSocket message, the 4-byte length prefix kept inside the
//! message (PROTOCOL.md §1).
//!
//! [`WsIo`] turns a WebSocket into the byte stream the driver reads and
//! writes, so every other part of a connection (codec, limits, handshake)
//! is the same as over TCP. tungstenite's message and frame size limits are
//! set from [`Limits::max_frame_len`], so an oversized message is refused
//! from its header, before its payload is buffered.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Sink};
use tokio::io::AsyncWrite;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ws_meter::Meter;
use crate::driver::io_types::{Fd, Socket};
use crate::Limits;

/// The most a protocol frame sent as one WebSocket frame holds, and what
/// a write takes at a time beyond that (see `poll_write`): a larger
/// protocol frame is sent as a message in fragments of this size, each as
/// soon as it is here, so neither `pending` nor tungstenite's write buffer
/// ever holds a whole large frame (tungstenite's buffer kept the capacity
/// of the largest message sent for the connection's life, outside the
/// budget: a red-team pass measured 1 MiB per connection, and 2 MiB with
/// the gathered frame, that a peer kept by holding back the end of a
/// frame it sent, which stops `shed`).
const WRITE_TAKE: usize = 64 << 10;

/// What `pending` may hold: a fragment (or a frame of at most
/// [`WRITE_TAKE`] bytes) gathering, and a write's [`WRITE_TAKE`].
const PENDING_MAX: usize = 2 * WRITE_TAKE;

/// tungstenite's read buffer: its default (128 KiB) is allocated at the
/// upgrade and kept for the connection's life, idle or not, outside the
/// memory budget; a message larger than it is read in several turns.
const READ_BUFFER: usize = 8 << 10;

/// After more than this is written since the WebSocket layer was last
/// replaced, in one message or in several, tungstenite's write buffer may
/// keep the capacity of the batch it gathered before writing out (up to
/// about twice [`WRITE_TAKE`]): a server connection then replaces its
/// buffers (`shed`). (Asked for only after a message over 64 KiB, a burst
/// of replies of 64 KiB or less left about 100 KB per idle connection
/// outside the budget: a red-team pass.)
const WRITE_SHED: usize = 16 << 10;

/// Room in tungstenite's write buffer beyond one message and its write
/// threshold: for the pongs (at most 131 bytes each) and close frames it
/// queues by itself while reading.
const CONTROL_ROOM: usize = 64 << 10;

/// The most tungstenite's write buffer holds (its `max_write_buffer_size`):
/// one whole message or fragment (plus its WebSocket header) on top of
/// what it keeps before writing out, and [`CONTROL_ROOM`].
const WRITE_MAX: usize = WRITE_TAKE + WRITE_TAKE + 14 + CONTROL_ROOM;

/// tungstenite's configuration for a connection with these limits: no
/// message or frame larger than one protocol frame (prefix included), and
/// a bounded write buffer, written out past [`WRITE_TAKE`] (at its
/// default, 128 KiB, a busy connection kept that much more). tungstenite
/// answers every WebSocket ping itself, appending the pong to its write
/// buffer even when the peer reads nothing, and the default bound is
/// `usize::MAX`: a peer flooding pings grew the buffer by a pong per ping.
/// Bounded, a pong that does not fit waits as the one pending control
/// frame (later pongs replace it).
pub(crate) fn config(limits: &Limits) -> WebSocketConfig {
    let max = limits.max_frame_len.saturating_add(4);
    // One whole message or fragment always fits in `WRITE_MAX` once the
    // pongs queued while reading are out (`poll_drain` flushes them first).
    WebSocketConfig::default()
        .write_buffer_size(WRITE_TAKE)
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .max_write_buffer_size(WRITE_MAX)
}

type Accepting<S> = Pin<Box<dyn Future<Output = Result<WebSocketStream<S>, WsError>> + Send>>;

pub(super) enum Phase<S> {
    /// Server side: the HTTP upgrade runs on first use, in the
    /// connection's own task (so a slow client never blocks the accept
    /// loop; the connection's handshake timeout bounds it). Both halves may
    /// wait on it: the wakers of each are kept (reader, writer) and all are
    /// woken when it ends, since the future itself keeps only the last.
    Accepting(Box<(Accepting<S>, [Option<Waker>; 2])>),
    Open(Box<WebSocketStream<S>>),
    Failed,
}

/// Which half of the stream is polling.
#[derive(Clone, Copy)]
enum Half {
    Read = 0,
    Write = 1,
}

/// A WebSocket as a byte stream of protocol frames.
pub(crate) struct WsIo<S> {
    phase: Phase<S>,
    /// The rest of the binary message being read.
    read: Bytes,
    /// Written bytes not yet sent as messages or fragments.
    pending: BytesMut,
    /// Whether `pending` held more than [`READ_BUFFER`] bytes since it was
    /// last replaced.
    pending_grew: bool,
    /// The most `pending` held since it was last replaced: its buffer,
    /// shared with the messages split off it, stays whole while any of it
    /// is left (see [`recount`](Self::recount)).
    pending_peak: usize,
    /// The bytes of the protocol frame under way (sent in fragments) not
    /// yet sent.
    sending: usize,
    /// Bytes handed to tungstenite since it was last replaced (`shed`).
    written: usize,
    /// Written bytes counted in the memory budget (a server connection,
    /// once open): those in `pending` and in tungstenite's write buffer,
    /// until a flush has them in the socket (see [`recount`](Self::recount)).
    out_counted: usize,
    /// Bytes handed to tungstenite since the last flush, WebSocket
    /// headers included (some may be in the socket already).
    handed: usize,
    /// A server stream's reads, bounded before the hello.
    meter: Option<Arc<Meter>>,
    /// The messages (data or control) tungstenite reported.
    events: u64,
    /// Whether a ping was read (tungstenite queued its pong) since the
    /// last flush.
    pinged: bool,
    /// Whether the writer's last call returned `Pending` (it waits on the
    /// socket, its waker registered with tungstenite).
    writer_waits: bool,
    /// Whether the stream ended or is being shut down.
    done: bool,
    /// Whether the peer's Close was read: tungstenite has queued the Close
    /// in answer and refuses data from then on (RFC 6455 §5.5.1: no data
    /// frame follows a Close), so what is written is dropped and flushes
    /// send the answer (see [`poll_drain`](Self::poll_drain)).
    closed_by_peer: bool,
    /// Whether a message was refused (see [`discard`](Self::discard)),
    /// and what was dropped since.
    refused: bool,
    discarded: usize,
}

impl<S> WsIo<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    pub(super) fn open(ws: WebSocketStream<S>) -> Self {
        Self::new(Phase::Open(Box::new(ws)), None)
    }

    pub(super) fn new(phase: Phase<S>, meter: Option<Arc<Meter>>) -> Self {
        WsIo {
            phase,
            read: Bytes::new(),
            pending: BytesMut::new(),
            pending_grew: false,
            pending_peak: 0,
            sending: 0,
            written: 0,
            out_counted: 0,
            handed: 0,
            meter,
            events: 0,
            pinged: false,
            writer_waits: false,
            done: false,
            closed_by_peer: false,
            refused: false,
            discarded: 0,
        }
    }

    /// After a message was refused (a refusal, `driver/refusal.rs`: over a
    /// limit or against the protocol), what the peer still sends is read from the socket
    /// under tungstenite (which ended its stream at the error) and dropped
    /// until the peer ends it. The connection's close reads on for a
    /// bounded time (`Input::drain`) so that the goodbye naming the
    /// refusal reaches a peer still writing the refused message: closed at
    /// once, its bytes unread, the socket was reset and the peer saw only
    /// a broken pipe (a red-team pass).
    fn discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut dropped = self.discarded;
        let ws = ready!(self.poll_open(cx, Half::Read))?;
        let r = super::ws_meter::discard(ws.get_mut(), &mut dropped, cx);
        self.discarded = dropped;
        r
    }

    /// On a server connection, replaces tungstenite's stream by a new one
    /// over the same socket once it holds nothing: no byte read and not
    /// parsed (`Meter::rest`), no message or pong unwritten. Its read
    /// buffer keeps the capacity of the largest frame read, its write
    /// buffer that of the largest batch written, for the connection's
    /// life and outside the memory budget (a red-team pass measured 16
    /// idle connections that had each sent one 1 MiB call holding
    /// +17.4 MB); this is asked for after a data frame over 16 KiB read
    /// or more than [`WRITE_SHED`] written. Everything is flushed
    /// first, twice (a pong that did not fit in tungstenite's write buffer
    /// waits aside, and only the next flush queues it); from the reader
    /// (`writer` false), not while the writer waits on the socket
    /// (flushing there would take its wake-ups).
    fn shed(&mut self, cx: &mut Context<'_>, writer: bool) -> io::Result<()> {
        let Some(meter) = self.meter.as_ref().filter(|m| m.shed_wanted()) else {
            return Ok(());
        };
        if self.done || !matches!(self.phase, Phase::Open(_)) || meter.rest() != Some(self.events) {
            return Ok(());
        }
        if !writer && self.writer_waits {
            return Ok(());
        }
        let meter = meter.clone();
        for _ in 0..2 {
            let Phase::Open(ws) = &mut self.phase else {
                return Ok(());
            };
            match Pin::new(&mut **ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.pinged = false,
                Poll::Ready(Err(e)) => return Err(io::Error::other(e)),
                Poll::Pending => return Ok(()),
            }
        }
        let Phase::Open(ws) = std::mem::replace(&mut self.phase, Phase::Failed) else {
            return Ok(());
        };
        let config = *ws.get_config();
        let stream = ws.into_inner();
        // Ready at once: it only takes the waker of the poll.
        let fresh = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config))
            .now_or_never()
            .ok_or_else(|| io::Error::other("websocket stream not rebuilt at once"))?;
        self.phase = Phase::Open(Box::new(fresh));
        self.written = 0;
        meter.want_shed(false);
        Ok(())
    }

    fn poll_open(
        &mut self,
        cx: &mut Context<'_>,
        half: Half,
    ) -> Poll<io::Result<&mut WebSocketStream<S>>> {
        if let Phase::Accepting(acc) = &mut self.phase {
            let (fut, wakers) = &mut **acc;
            let done = match fut.as_mut().poll(cx) {
                Poll::Pending => {
                    wakers[half as usize] = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Poll::Ready(done) => done,
            };
            for w in wakers.iter_mut().filter_map(Option::take) {
                w.wake();
            }
            match done {
                Ok(ws) => {
                    if let Some(m) = &self.meter {
                        m.opened();
                    }
                    self.phase = Phase::Open(Box::new(ws));
                }
                Err(e) => {
                    self.phase = Phase::Failed;
                    return Poll::Ready(Err(io::Error::other(format!(
                        "websocket handshake failed: {e}"
                    ))));
                }
            }
        }
        match &mut self.phase {
            Phase::Open(ws) => Poll::Ready(Ok(ws)),
            _ => Poll::Ready(Err(io::Error::other("websocket handshake failed"))),
        }
    }

    /// Sends what `pending` holds of protocol frames: a frame of at most
    /// [`WRITE_TAKE`] bytes (prefix included) as one binary message once
    /// it is all here, a larger one as a message in fragments of
    /// [`WRITE_TAKE`] bytes, each as soon as it is here.
    ///
    /// Once the peer's Close was read, what is written is dropped: replies
    /// to its last calls cannot follow the Close answer tungstenite has
    /// queued. (Sent, tungstenite refused the first of them and the
    /// writer's error ended the connection before the answer went out, so
    /// a peer that closed after calls got no Close back: red-team pass 24.)
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed_by_peer {
            self.pending = BytesMut::new();
            self.pending_grew = false;
            self.pending_peak = 0;
            self.sending = 0;
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pending.is_empty() && self.pending_grew {
                // Not kept for the connection's life: an empty slice of a
                // large buffer still holds all of it (a red-team pass
                // measured 1 MiB per connection that had sent one frame).
                self.pending = BytesMut::new();
                self.pending_grew = false;
                self.pending_peak = 0;
            }
            let first = self.sending == 0;
            let (n, rest) = if first {
                if self.pending.len() < 4 {
                    return Poll::Ready(Ok(()));
                }
                let p = &self.pending;
                let len = 4 + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                (len.min(WRITE_TAKE), len.saturating_sub(WRITE_TAKE))
            } else {
                let n = self.sending.min(WRITE_TAKE);
                (n, self.sending - n)
            };
            if self.pending.len() < n {
                return Poll::Ready(Ok(()));
            }
            let pinged = self.pinged;
            let ws = ready!(self.poll_open(cx, Half::Write))?;
            ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(io::Error::other)?;
            if pinged {
                // The pongs tungstenite queued while reading may fill its
                // write buffer to its bound: out with them first, or this
                // message would not fit (`WriteBufferFull`, the connection
                // failed: a red-team pass flooded pings, reading nothing).
                ready!(Pin::new(&mut *ws).poll_flush(cx)).map_err(io::Error::other)?;
                self.pinged = false;
                self.flushed();
            }
            let part = self.pending.split_to(n).freeze();
            let message = match (first, rest) {
                (true, 0) => Message::Binary(part),
                (true, _) => {
                    Message::Frame(Frame::message(part, OpCode::Data(Data::Binary), false))
                }
                (false, rest) => Message::Frame(Frame::message(
                    part,
                    OpCode::Data(Data::Continue),
                    rest == 0,
                )),
            };
            let ws = ready!(self.poll_open(cx, Half::Write))?;
            Pin::new(ws).start_send(message).map_err(io::Error::other)?;
            self.sending = rest;
            self.written = self.written.saturating_add(n);
            // The WebSocket header tungstenite puts before it (a server's:
            // unmasked).
            let header = if n < 126 {
                2
            } else if n < 1 << 16 {
                4
            } else {
                10
            };
            self.handed = self.handed.saturating_add(n + header);
            if self.written > WRITE_SHED {
                if let Some(m) = &self.meter {
                    m.want_shed(true);
                }
            }
        }
    }
}

impl<S> AsyncWrite for WsIo<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.write(cx, buf);
        this.writer_waits = r.is_pending();
        // What went on from `pending` to tungstenite: once per poll, not
        // per message.
        this.recount();
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = this.flush(cx);
        this.writer_waits = r.is_pending();
        this.recount();
        if let Poll::Ready(Ok(())) = r {
            this.pinged = false;
            this.shed(cx, true)?;
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.done = true;
        let r = this.shutdown(cx);
        this.writer_waits = r.is_pending();
        r
    }
}

impl<S> WsIo<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self;
        // Earlier frames go out first (back-pressure), then these bytes are
        // taken, only as many as `pending` has room for (`PENDING_MAX`: a
        // fragment and `WRITE_TAKE` more): the rest stays in the
        // connection's queue, counted in its memory budget and seen by its
        // backpressure. (Taking all of it, a peer reading just fast enough
        // for `write_stall_timeout` had each whole batch moved out of the
        // count while the queue, seen empty, filled again: 16 such peers
        // held 153 MiB outside the budget, found by a red-team pass.)
        // Complete frames and fragments among them are sent as far as
        // possible.
        ready!(this.poll_drain(cx))?;
        // Drained, `pending` holds less than a fragment: at least
        // `WRITE_TAKE` bytes are taken.
        let n = buf
            .len()
            .min(PENDING_MAX.saturating_sub(this.pending.len()));
        this.pending.extend_from_slice(&buf[..n]);
        this.pending_grew |= this.pending.len() > READ_BUFFER;
        this.pending_peak = this.pending_peak.max(this.pending.len());
        this.recount();
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self;
        ready!(this.poll_drain(cx))?;
        let peer_closed = this.closed_by_peer;
        let ws = ready!(this.poll_open(cx, Half::Write))?;
        match ready!(Pin::new(ws).poll_flush(cx)) {
            Ok(()) => {}
            // The Close in answer to the peer's is out: tungstenite ends
            // the stream there (a server's side).
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) if peer_closed => {}
            Err(e) => return Poll::Ready(Err(io::Error::other(e))),
        }
        this.flushed();
        Poll::Ready(Ok(()))
    }

    /// Counts in the memory budget what `pending` holds (its buffer
    /// whole, once grown) and, until the next flush, what tungstenite's
    /// write buffer may hold: what it was given since the last flush
    /// (WebSocket headers included), at most [`WRITE_MAX`], and its
    /// capacity beyond that, up to [`WRITE_TAKE`] more. That buffer grows
    /// by doubling and keeps its capacity; a peer that reads nothing
    /// keeps the flush (and `shed`) from ever coming.
    ///
    /// Uncounted, `pending` and tungstenite's write buffer held about
    /// 260 KiB per connection that read nothing outside the budget,
    /// unbounded in sum (200 such peers: +59.5 MiB, 1.9 MiB counted, found
    /// by a red-team pass), and the budget never looked short, so
    /// `pressure_stall_timeout` never closed them. Counted as the bytes
    /// given since the last flush, a peer that flooded small calls and
    /// read nothing left about 100 KiB per connection outside it: the
    /// rest of `pending`'s buffer and the buffer's capacity
    /// (`tests/flood_memory.rs`). The count never exceeds what a grown
    /// `pending` held, [`WRITE_MAX`] and [`WRITE_TAKE`] (a steady stream
    /// of replies once counted 47.5 MB for one client's 16 concurrent
    /// 100 KiB reads, a red-team pass). Once flushed, tungstenite's
    /// buffer is not counted (its capacity goes at the next `shed`):
    /// counted until then, a large call behind a large reply waited for
    /// room it held itself (`ws_message_budget.rs`).
    fn recount(&mut self) {
        let handed = self.handed.min(WRITE_MAX);
        // A grown `pending` holds its buffer whole until replaced (once
        // empty), however little is left of it: a peer that reads
        // nothing left about 60 KiB per connection of it uncounted.
        let pending = if self.pending_grew && !self.pending.is_empty() {
            self.pending_peak
        } else {
            self.pending.len()
        };
        // Its capacity, less than twice the most it held: that is at most
        // `WRITE_TAKE` and a message (it writes out past `WRITE_TAKE`, and
        // takes nothing more while that waits), less than what it was
        // given (which may be in the socket already).
        let theirs = handed + handed.min(WRITE_TAKE);
        let counted = pending + theirs;
        if counted == self.out_counted {
            return;
        }
        let Some(budget) = self.meter.as_ref().and_then(|m| m.budget()) else {
            return;
        };
        if counted > self.out_counted {
            budget.charge(counted - self.out_counted);
        } else {
            budget.release(self.out_counted - counted);
        }
        self.out_counted = counted;
    }

    /// tungstenite's write buffer is in the socket: only what `pending`
    /// still holds stays counted.
    fn flushed(&mut self) {
        self.handed = 0;
        self.recount();
    }

    fn shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self;
        ready!(this.poll_drain(cx))?;
        let ws = ready!(this.poll_open(cx, Half::Write))?;
        match ready!(Pin::new(ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io::Error::other(e))),
        }
    }
}

impl<S> Socket for WsIo<S>
where
    S: tokio::io::AsyncRead + AsyncWrite + Socket + Unpin,
{
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        match &self.phase {
            Phase::Open(ws) => ws.get_ref().with_socket(f),
            // Before the upgrade ends, the stream is in its future.
            Phase::Accepting(_) | Phase::Failed => {}
        }
    }
}

impl<S> Drop for WsIo<S> {
    fn drop(&mut self) {
        if let Some(budget) = self.meter.as_ref().and_then(|m| m.budget()) {
            budget.release(self.out_counted);
        }
    }
}

#[path = "ws_read.rs"]
mod read;

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
