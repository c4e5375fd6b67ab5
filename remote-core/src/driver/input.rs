//! The reading side of a connection: length-prefixed frames read under the
//! memory budget (see [`budget`](super::budget)), and the bounded drain
//! that follows a close.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;

use super::budget::SMALL_FRAME;
use super::shared::Shared;
use crate::proto::{kind, FrameError, Reader};

/// The reading half of a connection's byte stream, boxed so one connection
/// type serves every transport.
pub(crate) type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// After closing a connection we say goodbye, shut our write side down and
/// read (and discard) what the peer still sends for at most this long...
/// (the writer also gives up on the last frames after this long).
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(5);
/// ...or this many bytes, before dropping the socket. Closing a TCP socket
/// with unread input makes the kernel answer with a reset, which discards
/// the goodbye if it is still waiting in our send buffer (a peer blocked
/// writing to us does not read until its writes complete).
pub(crate) const DRAIN_BYTES: usize = 32 << 20;

/// The read buffer's chunk: what one `read` asks for beyond the frame in
/// progress. It starts (and shrinks back to) [`MIN_READ`], so an idle
/// connection holds little; reads that fill it double it, up to
/// [`MAX_READ`], so a busy connection takes many frames per `read`.
pub(crate) const MIN_READ: usize = 512;
const MAX_READ: usize = 16 << 10;

/// Frames read from the peer, with the frame in progress counted in the
/// memory budget.
pub(crate) struct Input {
    r: BoxRead,
    buf: BytesMut,
    max_len: usize,
    shared: Arc<Shared>,
    /// Bytes of the frame in progress counted in the budget (its whole
    /// length, reserved when its prefix was read).
    reserved: usize,
    /// Waiting for room (output drained or budget space), not for the peer.
    paused: bool,
    /// Bytes to make room for when the buffer is full (see [`MIN_READ`]).
    chunk: usize,
}

impl Input {
    pub(crate) fn new(r: BoxRead, shared: Arc<Shared>, max_len: usize) -> Self {
        Input {
            r,
            buf: BytesMut::with_capacity(MIN_READ),
            max_len,
            shared,
            reserved: 0,
            paused: false,
            chunk: MIN_READ,
        }
    }

    /// Changes the frame limit (it is small during the handshake).
    pub(crate) fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// The current read chunk (see [`MIN_READ`]).
    #[cfg(test)]
    pub(crate) fn chunk(&self) -> usize {
        self.chunk
    }

    /// The read buffer's capacity (what is left of its allocation).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether part of a frame has been received.
    pub(crate) fn has_partial_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Whether reading is held back by this side's budgets (so a silent
    /// peer is not to blame for it).
    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether this connection may start its peer's next call: its queued
    /// output and its running handlers' replies are within its share of the
    /// budget (see [`share`](super::share)).
    fn output_room(shared: &Shared) -> bool {
        shared.output_share.may_start(
            shared.queued_output(),
            shared.limits.max_write_queue,
            &shared.budget,
        )
    }

    /// The next frame (`None` at end of stream). With `backpressure`, a call
    /// waits while this connection's output is over its budgets. Cancel-safe.
    pub(crate) async fn next(
        &mut self,
        backpressure: bool,
    ) -> Option<Result<BytesMut, FrameError>> {
        loop {
            self.paused = false;
            if self.buf.len() >= 4 {
                let b = &self.buf;
                let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if len > self.max_len {
                    return Some(Err(FrameError::TooLarge {
                        len: len as u64,
                        max: self.max_len,
                    }));
                }
                let total = 4 + len;
                if self.buf.len() >= total {
                    // A call starts a handler whose reply adds output: it
                    // waits (and nothing behind it is read) while this
                    // connection's output is over its budgets. Other
                    // messages (replies to our calls, releases) are
                    // handled, so two peers cannot hold each other up.
                    if backpressure
                        && is_call(&self.buf[4..total])
                        && !Self::output_room(&self.shared)
                    {
                        self.paused = true;
                        let shared = self.shared.clone();
                        shared
                            .budget
                            .wait_until(|| Self::output_room(&shared))
                            .await;
                        continue;
                    }
                    self.buf.advance(4);
                    let frame = self.buf.split_to(len);
                    if total > SMALL_FRAME {
                        // The large allocation leaves with the frame (and
                        // is freed with it); what was read past the frame
                        // moves to a small buffer. Otherwise the buffer
                        // reclaims it on its next read, and an idle
                        // connection keeps up to `max_frame_len` outside
                        // the budget.
                        let rest = std::mem::take(&mut self.buf);
                        self.buf = BytesMut::with_capacity(rest.len().max(MIN_READ));
                        self.buf.extend_from_slice(&rest);
                    }
                    return Some(Ok(frame));
                }
                if self.reserved < total {
                    self.reserve(total).await;
                }
                // Room for the rest of the frame (its announced, bounded,
                // reserved size) and, for a small one, a chunk beyond it,
                // so the frames behind it come in the same read.
                let rest = total - self.buf.len();
                if self.buf.capacity() - self.buf.len() < rest {
                    self.buf.reserve(rest.max(self.chunk));
                }
            }
            let spare = self.make_room();
            match self.r.read_buf(&mut self.buf).await {
                Ok(0) => return None,
                Ok(n) => {
                    self.shared.meter.read(n);
                    self.adapt(n, spare)
                }
                Err(e) => return Some(Err(FrameError::Io(e))),
            }
        }
    }

    /// Makes room to read into, returning how much there is: what is left
    /// of the buffer, or a new chunk once it is full. A buffer left large
    /// by a burst is dropped when empty, once reads have become small.
    fn make_room(&mut self) -> usize {
        if self.buf.is_empty() && self.buf.capacity() > 4 * self.chunk.max(self.reserved) {
            self.buf = BytesMut::new();
        }
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(self.chunk);
        }
        self.buf.capacity() - self.buf.len()
    }

    /// Sizes the next chunk after a read of `n` bytes into `spare`: a read
    /// that filled a chunk-sized space means more was waiting.
    fn adapt(&mut self, n: usize, spare: usize) {
        if n == spare && n >= self.chunk / 2 {
            self.chunk = (self.chunk * 2).min(MAX_READ);
        } else if n < self.chunk / 8 {
            self.chunk = (self.chunk / 2).max(MIN_READ);
        }
    }

    /// Counts the frame in progress (`total` bytes) in the budget, waiting
    /// for room unless it is small and this connection holds nothing else.
    async fn reserve(&mut self, total: usize) {
        let need = total - self.reserved;
        let shared = self.shared.clone();
        let held = self.reserved;
        let fits = || {
            shared.budget.try_charge(need)
                || (total <= SMALL_FRAME && held == 0 && shared.queued_output() == 0 && {
                    shared.budget.charge(need);
                    true
                })
        };
        if !fits() {
            self.paused = true;
            shared.budget.wait_until(fits).await;
            self.paused = false;
        }
        // Nothing is awaited from here on: the charge is recorded at once.
        self.reserved = total;
        shared.buffered_input.fetch_add(need, Ordering::AcqRel);
    }

    /// The frame last returned has been handled: give back its reservation.
    pub(crate) fn frame_done(&mut self) {
        self.unreserve();
    }

    fn unreserve(&mut self) {
        let n = std::mem::take(&mut self.reserved);
        if n > 0 {
            self.shared.buffered_input.fetch_sub(n, Ordering::AcqRel);
            self.shared.budget.release(n);
        }
    }

    /// Reads and discards what the peer still sends, for at most
    /// [`DRAIN_TIME`] or [`DRAIN_BYTES`], or until it closes its side.
    pub(crate) async fn drain(mut self) {
        self.unreserve();
        self.buf = BytesMut::new();
        let mut scratch = vec![0u8; 4096];
        let r = &mut self.r;
        let _ = crate::rt::time::timeout(DRAIN_TIME, async {
            let mut total = 0;
            while total < DRAIN_BYTES {
                match r.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
    }
}

/// Whether a frame's payload is a call (message kind 1).
fn is_call(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    r.array_len().is_ok() && r.uint().is_ok_and(|k| k == u64::from(kind::CALL))
}

impl Drop for Input {
    fn drop(&mut self) {
        self.unreserve();
    }
}
