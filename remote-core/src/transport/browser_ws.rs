//! `ws://` and `wss://` in a page (wasm32): the browser's `WebSocket`, one
//! binary message per protocol frame, length prefix included
//! (PROTOCOL.md §1.1), seen by the driver as the same byte streams as every
//! other transport.
//!
//! The `WebSocket` object cannot leave the page's thread, while the driver's
//! halves are `Send`; so the socket and its event handlers live in a local
//! task, and the halves talk to it through channels. A browser's WebSocket
//! cannot pause its peer: messages are taken as they come, each at most
//! `max_frame_len + 4` bytes, and those received but not yet read by the
//! driver at most `memory_budget` bytes together; over either the
//! connection fails with an error naming the limit. Sending waits while the
//! socket's `bufferedAmount` is over [`SEND_HIGH_WATER`].

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use crate::driver::io_types::{BoxRead, BoxWrite, Plain};
use crate::{Error, Limits};

/// Frames queued for the socket task before a write waits.
const SEND_QUEUE: usize = 16;
/// Bytes the browser may hold unsent before the socket task stops taking
/// frames (and so writers wait).
const SEND_HIGH_WATER: u32 = 1 << 20;

/// What the socket's handlers report to the reading half.
enum Inbound {
    Message(Bytes),
    Closed(String),
}

/// Connects to `url`, bounded by `handshake_timeout`.
pub(crate) async fn dial(url: &str, limits: &Limits) -> Result<(BoxRead, BoxWrite), Error> {
    let ws = WebSocket::new(url).map_err(|e| Error::Io(format!("connect to {url}: {e:?}")))?;
    ws.set_binary_type(BinaryType::Arraybuffer);

    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (open_tx, open_rx) = oneshot::channel::<Result<(), String>>();
    let open_tx = std::rc::Rc::new(std::cell::RefCell::new(Some(open_tx)));
    let max_msg = limits.max_frame_len.saturating_add(4);
    let budget = limits.memory_budget;
    let queued = Arc::new(AtomicUsize::new(0));

    let on_message = {
        let tx = in_tx.clone();
        let queued = queued.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let data = ev.data();
            let msg = match data.dyn_into::<js_sys::ArrayBuffer>() {
                Ok(buf) => {
                    let len = buf.byte_length() as usize;
                    let held = queued.load(Ordering::Relaxed);
                    if len > max_msg {
                        Inbound::Closed(format!(
                            "limit exceeded: max_frame_len = {} (a websocket message of {len} bytes)",
                            max_msg - 4
                        ))
                    } else if held.saturating_add(len) > budget {
                        Inbound::Closed(format!(
                            "limit exceeded: memory_budget = {budget} ({held} bytes received \
                             and not yet read, a browser cannot pause the sender)"
                        ))
                    } else {
                        queued.fetch_add(len, Ordering::Relaxed);
                        Inbound::Message(Bytes::from(js_sys::Uint8Array::new(&buf).to_vec()))
                    }
                }
                Err(_) => Inbound::Closed(
                    "protocol violation: a text websocket message (frames are binary)".into(),
                ),
            };
            let _ = tx.send(msg);
        })
    };
    let on_open = {
        let open_tx = open_tx.clone();
        Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(tx) = open_tx.borrow_mut().take() {
                let _ = tx.send(Ok(()));
            }
        })
    };
    let on_close = {
        let tx = in_tx.clone();
        let open_tx = open_tx.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            let why = format!("websocket closed (code {}, {:?})", ev.code(), ev.reason());
            if let Some(o) = open_tx.borrow_mut().take() {
                let _ = o.send(Err(why.clone()));
            }
            let _ = tx.send(Inbound::Closed(why));
        })
    };
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    drop(in_tx);

    let (out_tx, out_rx) = mpsc::channel::<Bytes>(SEND_QUEUE);
    let socket = Socket {
        ws: ws.clone(),
        _handlers: Handlers {
            _message: on_message,
            _open: on_open,
            _close: on_close,
        },
    };

    let opened = crate::rt::time::timeout(limits.handshake_timeout, open_rx).await;
    match opened {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(why))) => return Err(Error::Io(format!("connect to {url}: {why}"))),
        Ok(Err(_)) => return Err(Error::Io(format!("connect to {url}: socket dropped"))),
        Err(_) => {
            return Err(Error::Handshake(format!(
                "websocket to {url} did not open within handshake_timeout = {:?}",
                limits.handshake_timeout
            )))
        }
    }
    crate::rt::spawn(send_loop(socket, out_rx));
    let reader = WsRead {
        rx: in_rx,
        cur: Bytes::new(),
        queued,
    };
    let writer = WsWrite {
        tx: PollSender::new(out_tx),
        pending: BytesMut::new(),
        max_msg,
    };
    Ok((Box::new(Plain(reader)), Box::new(writer)))
}

/// The socket and its handlers, kept together: the handlers are unset
/// and the socket closed when it is dropped.
struct Socket {
    ws: WebSocket,
    _handlers: Handlers,
}

/// The socket's event handlers, alive as long as it is.
struct Handlers {
    _message: Closure<dyn FnMut(MessageEvent)>,
    _open: Closure<dyn FnMut(Event)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onopen(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// Sends each queued frame as one binary message; closes the socket when
/// the writing half is gone (the connection closed).
async fn send_loop(socket: Socket, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(frame) = rx.recv().await {
        if socket.ws.send_with_u8_array(&frame).is_err() {
            break;
        }
        while socket.ws.buffered_amount() > SEND_HIGH_WATER
            && socket.ws.ready_state() == WebSocket::OPEN
        {
            crate::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    drop(socket);
}

/// The reading half: the messages' bytes in order, each checked to hold
/// exactly one frame.
struct WsRead {
    rx: mpsc::UnboundedReceiver<Inbound>,
    cur: Bytes,
    /// Bytes of messages in `rx`, against `memory_budget`.
    queued: Arc<AtomicUsize>,
}

impl AsyncRead for WsRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.cur.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Inbound::Message(m)) => {
                    self.queued.fetch_sub(m.len(), Ordering::Relaxed);
                    let announced = m
                        .get(..4)
                        .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize);
                    if announced != Some(m.len().wrapping_sub(4)) {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "protocol violation: a websocket message that is not exactly one frame",
                        )));
                    }
                    self.cur = m;
                }
                Some(Inbound::Closed(why)) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, why)))
                }
                None => return Poll::Ready(Ok(())), // end of stream
            }
        }
        let n = self.cur.len().min(buf.remaining());
        buf.put_slice(&self.cur[..n]);
        self.cur.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// The writing half: bytes gathered until a whole frame is there, then
/// sent as one message.
struct WsWrite {
    tx: PollSender<Bytes>,
    pending: BytesMut,
    max_msg: usize,
}

impl WsWrite {
    /// The length of the first whole frame in `pending`, if any.
    fn whole_frame(&self) -> Option<usize> {
        let p = self.pending.get(..4)?;
        let len = 4 + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        (self.pending.len() >= len).then_some(len)
    }

    /// Hands every whole frame to the socket task.
    fn poll_send_frames(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(len) = self.whole_frame() {
            if len > self.max_msg {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "limit exceeded: max_frame_len = {} (an outgoing frame of {} bytes)",
                        self.max_msg - 4,
                        len - 4
                    ),
                )));
            }
            ready!(self.tx.poll_reserve(cx)).map_err(|_| closed())?;
            let frame = self.pending.split_to(len).freeze();
            self.tx.send_item(frame).map_err(|_| closed())?;
        }
        Poll::Ready(Ok(()))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed")
}

impl AsyncWrite for WsWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Whole frames queued first, so `pending` holds at most one
        // incomplete frame plus this write.
        ready!(self.poll_send_frames(cx))?;
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send_frames(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_frames(cx))?;
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}
