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
//!
//! The input side ([`RawCount`] below rustls, [`Input`] between the two):
//! once the TLS handshake is done, what the socket gave rustls and rustls
//! has not handed on as data counts in the budget, never more than rustls
//! can hold ([`IN_HELD_MAX`]: a handshake message being joined, up to
//! 64 KiB, and part of a record). A hostile peer had rustls join a post-
//! handshake message of up to 64 KiB (a key update claiming 0xffff bytes,
//! in valid records) outside the budget for as long as it stayed, or hold
//! part of a record (a red-team pass). A read that hands data on keeps
//! counted what rustls was given beyond that data and a record's overhead
//! (rustls reads on past a record of data while the socket has more: a
//! second pass sent data and such a message in one burst). Such peers are
//! not cut off: an earlier bound on what rustls may be given between data
//! cut honest clients off too (many small records in one read count more
//! overhead than one record's; padding looks like held bytes: a third
//! pass), so they are held to the budget as a TCP peer's partial frame
//! is: counted, and to a pace while the budget is short (at least 32 KiB
//! more from the socket per `pressure_stall_timeout`, [`Input`]'s
//! `Gathering`). rustls's read buffer doubles as it fills, so what it
//! holds counts twice, and a read's worth more.

use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::driver::io_types::{Fd, Gathering, OnOpen, Socket};
use crate::driver::Budget;

/// The most rustls holds of the input, as its read buffer's capacity: a
/// handshake message being joined (at most 0xffff bytes and its 4-byte
/// header) and a record read in part (16 KiB and 256 bytes of overhead,
/// and its header), rounded up to the buffer's doubling.
pub(crate) const IN_HELD_MAX: usize = 128 << 10;

/// The least a TLS 1.3 record adds to its data: a 5-byte header, the
/// content type and a 16-byte tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

/// Every byte the socket gave rustls, counted by the socket below rustls
/// ([`RawCount`]); the stream above it ([`Counted`]) takes what is new at
/// each of its reads.
#[derive(Debug, Default)]
pub(crate) struct Input {
    total: AtomicUsize,
    /// What [`Counted`] counts in the budget of what rustls holds: the
    /// reader holds its rest to a pace, as a frame's (`driver/stall.rs`).
    held: AtomicUsize,
}

/// What the count of rustls's input may stay at for an honest peer that
/// sends nothing more: the count is an estimate (a read's records are
/// taken to add one record's overhead; a read of many small records adds
/// more, which then looks held), and rustls reads 4 KiB at a time, so
/// what a read handing data on leaves counted is under 4 KiB, counted as
/// at most 12 KiB (twice, and a read's worth).
const IDLE_HELD_MAX: usize = 16 << 10;

/// What rustls holds of the input keeps a pace while the budget is short,
/// once its count is more than an idle honest peer's can be
/// ([`IDLE_HELD_MAX`]): at least 32 KiB more must come from the socket per
/// `pressure_stall_timeout`, or the reader closes the connection. (Counted
/// even with the budget used up and paced by nothing, 40 peers having
/// rustls join a 64 KiB handshake message held a 4 MiB budget, and 520 a
/// default one, until their idle timeout: red-team pass 26.) Below that,
/// a peer holds at most [`IDLE_HELD_MAX`] counted, unpaced.
impl Gathering for Input {
    fn held(&self) -> usize {
        match self.held.load(Relaxed) {
            held if held > IDLE_HELD_MAX => held,
            _ => 0,
        }
    }

    fn progress(&self) -> usize {
        self.total.load(Relaxed)
    }

    fn waits_for_room(&self) -> bool {
        false
    }
}

/// What the TLS handshake may give rustls beyond `max_handshake_frame_len`
/// (whose 4 KiB by default make it 24 KiB): a client's hello (under 2 KiB,
/// under 8 KiB with post-quantum key shares and many extensions), a second
/// one after a retry request, and a client certificate's chain. Past it the
/// handshake fails: rustls joined a hello claiming 64 KiB, sent in
/// fragments, outside the budget until `handshake_timeout` (61 KB per
/// connection, a red-team pass).
pub(crate) const HANDSHAKE_IN_MORE: usize = 20 << 10;

/// The socket below rustls: counts what it gives rustls into [`Input`],
/// and gives it at most `room` bytes until the handshake is done.
pub(crate) struct RawCount<S> {
    inner: S,
    input: Arc<Input>,
    room: usize,
}

impl<S> RawCount<S> {
    /// A server's socket, which may give rustls `handshake_room` bytes
    /// before [`handshake_done`](Self::handshake_done).
    pub(crate) fn new(inner: S, input: Arc<Input>, handshake_room: usize) -> Self {
        RawCount {
            inner,
            input,
            room: handshake_room,
        }
    }

    /// The handshake is done: no bound on what it gives rustls from now
    /// on but the budget's (`Counted`).
    pub(crate) fn handshake_done(&mut self) {
        self.room = usize::MAX;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RawCount<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.room == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client sent more than a TLS handshake may (max_handshake_frame_len \
                 and 20 KiB) before it ended",
            )));
        }
        let n = if buf.remaining() <= this.room {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            buf.filled().len() - before
        } else {
            // During the handshake only: at most `room` bytes.
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(this.room));
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
            let n = part.filled().len();
            buf.advance(n);
            n
        };
        if this.room != usize::MAX {
            this.room -= n;
        }
        this.input.total.fetch_add(n, Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RawCount<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    // rustls writes its records vectored (a refusal's alert among them).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

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
    /// What the socket gave rustls ([`RawCount`]), and of it, what
    /// [`read`](Self::read) has seen (the TLS handshake's bytes, read
    /// before this stream was made, count as seen).
    input: Arc<Input>,
    seen: usize,
    /// What rustls was given since it last handed data on (less that
    /// data and a record's overhead).
    since_data: usize,
    /// Of that, counted now.
    in_counted: usize,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, input: Arc<Input>) -> Self {
        let seen = input.total.load(Relaxed);
        Counted {
            inner,
            seen,
            budget: Arc::default(),
            counted: 0,
            input,
            since_data: 0,
            in_counted: 0,
        }
    }

    /// What the driver calls when the connection opens: from then on the
    /// output and what rustls holds of the input count in its budget, and
    /// the reader holds the latter to a pace ([`Input`]).
    pub(crate) fn opened(&self) -> OnOpen {
        let slot = self.budget.clone();
        let input = self.input.clone();
        Arc::new(move |budget, _credit| {
            let _ = slot.set(budget.clone());
            Some(input.clone() as Arc<dyn Gathering>)
        })
    }

    /// A read handed on `n` bytes of data, rustls having been given
    /// `given` bytes since the last one: what rustls may still hold counts, never
    /// more than it can hold. Handing data on, rustls used at least `n`
    /// bytes and a record's overhead of what it was given during the read;
    /// the rest may be held, so it stays counted (rustls reads on past a
    /// record of data while the socket has more).
    fn read(&mut self, n: usize, given: usize) {
        self.since_data = if n > 0 {
            given.saturating_sub(n + RECORD_OVERHEAD)
        } else {
            self.since_data.saturating_add(given)
        };
        // rustls's read buffer doubles as it fills: up to twice what it
        // holds, and a read's worth (a red-team pass measured 64 KiB of
        // capacity for a 29 KiB message being joined).
        let held = match self.since_data {
            0 => 0,
            s => s.saturating_mul(2).saturating_add(4096).min(IN_HELD_MAX),
        };
        if let Some(budget) = self.budget.get() {
            if held > self.in_counted {
                budget.charge(held - self.in_counted);
            } else {
                budget.release(self.in_counted - held);
            }
            self.in_counted = held;
            self.input.held.store(held, Relaxed);
        }
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

impl<S: Socket> Socket for Counted<S> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        self.inner.with_socket(f)
    }
}

impl<S: Socket> Socket for RawCount<S> {
    fn with_socket(&self, f: &mut dyn FnMut(Fd<'_>)) {
        self.inner.with_socket(f)
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.flushed();
        if let Some(budget) = self.budget.get() {
            budget.release(self.in_counted);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.remaining() > 0 || buf.filled().len() > before {
            let total = this.input.total.load(Relaxed);
            let given = total - std::mem::replace(&mut this.seen, total);
            this.read(buf.filled().len() - before, given);
        }
        r
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
        let mut c = Counted::new(Socket { flushes: false }, Arc::default());
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

    #[test]
    fn what_rustls_holds_is_paced_past_what_an_idle_peer_leaves() {
        let budget = Arc::new(Budget::new(1 << 30));
        let input = Arc::new(Input::default());
        let mut c = Counted::new(Socket { flushes: true }, input.clone());
        let gathering = (c.opened())(&budget, &Arc::new(AtomicUsize::new(0))).unwrap();
        // A read handing on a call from a record padded by 3,000 bytes:
        // what it leaves counted (about 10 KB) is not judged.
        input.total.fetch_add(3_100, Relaxed);
        c.read(78, 3_100);
        assert!(budget.used() > 8_000);
        assert_eq!(gathering.partial(), None);
        // 20 KB given with nothing handed on (a handshake message being
        // joined): judged, by what came from the socket.
        input.total.fetch_add(20_000, Relaxed);
        c.read(0, 20_000);
        let held = budget.used();
        assert!(held > IDLE_HELD_MAX);
        assert_eq!(gathering.partial(), Some((held, input.total.load(Relaxed))));
        // Data handed on: nothing held any more.
        c.read(16_000, 16_100);
        assert_eq!(gathering.partial(), None);
    }
}
