//! The reading side of a connection: length-prefixed frames read under the
//! memory budget (see [`budget`](super::budget)), and the bounded drain
//! that follows a close.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::budget::{Ticket, Turn, SMALL_FRAME};
use super::deadline::Arrival;
use super::kept::SHED_AFTER;
use super::share::{ArgsCharge, LIGHT_LEN};
use super::shared::Shared;
use crate::proto::{is_call, ArgsWalk, FrameError};

pub(crate) use hang_up::{start_watching, Fd, Plain, Socket, Watch};

mod alloc;
mod defer;
mod hang_up;
mod keep;
mod reserve;
mod room;

/// The reading half of a connection's byte stream, boxed so one connection
/// type serves every transport.
pub(crate) type BoxRead = Box<dyn hang_up::ConnRead>;

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
/// The most an empty read buffer keeps while its read waits (see `next`):
/// the largest chunk a read takes, so a buffer only a burst grew past it
/// is given back (at 4 KiB, a caller of 4 KiB calls one at a time had its
/// buffer freed and made again for every call: two allocations more per
/// call, a red-team pass).
const IDLE_READ: usize = MAX_READ;
/// The reader writes what handling frames queued when its read would wait,
/// and before it reads on into a frame in progress (`direct.rs`); a peer
/// whose frames never stop coming never makes it wait, so after this many
/// reads in a row it writes anyway. Each read
/// takes at most `MAX_READ` beyond the frame in progress, so between two
/// writes come at most this many chunks and large frames' rests (what the
/// reader queued meanwhile stays bounded by the connection's output share).
const WRITE_EVERY_READS: u32 = 16;
/// On a multi-thread runtime the reader also writes after every this many
/// frames of one run, not only when the run ends. Otherwise a batch of
/// calls is answered by one batch of replies, the caller's answer to those
/// is again one batch, and the two ends take turns: one worker works while
/// the other sleeps, and each turn costs a wake-up of the sleeping one.
/// Written in parts, the peer starts on the first replies while the rest
/// are handled, and both workers stay busy (64 calls in flight over TCP on
/// two workers: about 1.5× the calls/s, BENCHMARKS.md §31). Not on one
/// thread, where nobody could start on them sooner and each write costs.
const FLUSH_EVERY_FRAMES: u32 = 16;
/// ...and only when at least this much is queued: frames that queue next
/// to nothing (a flood of pings, each answered by one pong while none is
/// queued) do not buy a write every 16 frames (a red-team pass measured
/// 498 writes for 147 KB of pings without it)...
const FLUSH_MIN_BYTES: usize = 128;
/// ...and at most this many times per read: a peer whose reads are full of
/// frames (a flood of calls) gets at most this many writes more per read
/// of up to [`MAX_READ`], each of at least [`FLUSH_MIN_BYTES`], than on one
/// thread. A run of 64 calls in one read still leaves in four parts.
const MID_FLUSHES_PER_READ: u8 = 3;

/// `Input::head_weight` of a frame that is not a heavy call.
const LIGHT: usize = usize::MAX;

/// What the reader knows of the frame [`Input::next`] returned
/// ([`Input::received`]).
pub(crate) struct Received<'a> {
    pub(crate) arrival: &'a mut Arrival,
    pub(crate) charged: &'a mut ArgsCharge,
    pub(crate) walk: Option<&'a ArgsWalk>,
    /// The bytes of its allocation (from its start, where the frame is) if
    /// a large `Bytes` value decoded from it may share its memory, else 0:
    /// a handler holding that value holds all of it, and is counted so.
    pub(crate) lends: usize,
}

/// Frames read from the peer, with the frame in progress counted in the
/// memory budget.
pub(crate) struct Input {
    /// The socket under `r`, if any, watched for a close while the reader
    /// waits for room (`hang_up.rs`). Before `r`: dropped first.
    hang_up: hang_up::Watch,
    r: BoxRead,
    buf: BytesMut,
    /// The read buffer, set aside while `buf` is a buffer of a medium
    /// frame's own size (`keep.rs`, [`Input::frame_buffer`]).
    aside: Option<BytesMut>,
    max_len: usize,
    shared: Arc<Shared>,
    /// Bytes of the frame in progress counted in the budget (its whole
    /// length, reserved when its prefix was read).
    reserved: usize,
    /// The pace of its rest (`stall.rs`).
    pace: super::stall::BodyPace,
    /// Waiting for room (output drained or budget space), not for the peer.
    paused: bool,
    /// ...and that wait is for the reservation of a frame in progress.
    reserving: bool,
    /// Bytes to make room for when the buffer is full (see [`MIN_READ`]).
    chunk: usize,
    /// [`Received::lends`] of the frame last returned
    /// (`codec/shared_bytes.rs`): a frame over a read chunk, at the start
    /// of an allocation the reader made, at most twice its length.
    lends: usize,
    /// Where the allocation `buf` is in starts, if the reader made it and
    /// it still is (0: not known). See `alloc.rs`.
    base: usize,
    /// Bytes counted in the budget for a large read buffer kept, after its
    /// frame, for the next large frame (0: none kept). See [`Input::keep`].
    kept: usize,
    /// Frames read since the last large one.
    since_large: u32,
    /// Reads in a row that did not wait (see [`WRITE_EVERY_READS`]).
    unwaited: u32,
    /// Frames returned since the reader last wrote what it queued, and how
    /// many make it write within a run ([`FLUSH_EVERY_FRAMES`]; never on a
    /// current-thread runtime).
    unflushed: u32,
    flush_every: u32,
    /// Those writes made since the last read ([`MID_FLUSHES_PER_READ`]).
    mid_flushes: u8,
    /// What is counted in the budget for the arguments of the call frame
    /// at the head of the buffer (or last returned), if it is heavy
    /// ([`heavy_call_weight`]): its handler takes it over if it runs on
    /// ([`received`](Self::received)); otherwise [`frame_done`](Self::frame_done)
    /// gives it back.
    charged: ArgsCharge,
    /// That call's place in the line for room, while it waits.
    ticket: Option<Ticket>,
    /// That call's weight once walked (0: not yet; [`LIGHT`]: not a heavy
    /// call), so a wait for room
    /// that is cancelled and resumed does not walk the frame again.
    head_weight: usize,
    /// What that walk found, handed on with the frame (`walk`)
    /// so the parse that handles it does not walk it again.
    head_walk: Option<ArgsWalk>,
    /// The walk of the frame last returned (until the next is split off).
    walk: Option<ArgsWalk>,
    /// The head call's deadline as its caller sent it, once walked.
    head_timeout_ms: u32,
    /// When a heavy call waiting for room gives up (`room.rs`), from its
    /// first wait until it starts or is refused.
    give_up: Option<crate::rt::time::Instant>,
    /// Bytes the last read took.
    last_read: usize,
    /// When the frames in the buffer arrived (read lazily, once per read).
    arrival: Arrival,
    /// A byte read past a full buffer while the reader waited for room
    /// (`room.rs`: to start a call, or to reserve a frame), to notice a
    /// close: it follows what the buffer holds, and goes back in behind it
    /// when the wait is over (the frame reserved, or the call's frame
    /// split off), before anything more is read.
    probe: Option<u8>,
    /// Frames set aside behind a call waiting for room (`defer.rs`).
    deferred: defer::Deferred,
}

impl Input {
    pub(crate) fn new(r: BoxRead, shared: Arc<Shared>, max_len: usize) -> Self {
        let flush_every = if crate::rt::is_multi_thread(&shared.runtime) {
            FLUSH_EVERY_FRAMES
        } else {
            u32::MAX
        };
        Input {
            hang_up: hang_up::Watch::default(),
            r,
            buf: BytesMut::with_capacity(MIN_READ),
            aside: None,
            max_len,
            shared,
            reserved: 0,
            lends: 0,
            base: 0,
            pace: Default::default(),
            paused: false,
            reserving: false,
            chunk: MIN_READ,
            kept: 0,
            since_large: u32::MAX,
            unwaited: 0,
            unflushed: 0,
            flush_every,
            mid_flushes: 0,
            charged: ArgsCharge::default(),
            ticket: None,
            head_weight: 0,
            head_walk: None,
            walk: None,
            head_timeout_ms: 0,
            give_up: None,
            last_read: 0,
            arrival: Arrival::default(),
            probe: None,
            deferred: defer::Deferred::default(),
        }
    }

    /// What the reader knows of the frame [`next`](Self::next) returned:
    /// when it arrived (that of the read that completed it, or of the end
    /// of a wait for room), the bytes counted in the budget for its
    /// arguments if it is a heavy call, which a handler that runs on takes
    /// (leaving 0), the walk of its arguments if the reader walked
    /// them (a long call's, to weigh them), and how much of an allocation
    /// it may lend a `Bytes` value decoded from it.
    #[inline]
    pub(crate) fn received(&mut self) -> Received<'_> {
        // A frame set aside has a count of its own (`defer.rs`).
        let charged = if self.deferred.popped {
            &mut self.deferred.charged
        } else {
            &mut self.charged
        };
        Received {
            arrival: &mut self.arrival,
            charged,
            walk: self.walk.as_ref(),
            lends: self.lends,
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

    /// Whether it is held back waiting for room in the memory budget to
    /// read the rest of a frame.
    pub(crate) fn is_reserving(&self) -> bool {
        // Set and cleared with `paused`.
        self.reserving
    }

    /// Whether this connection may start its peer's next call: its queued
    /// output and its running handlers' replies are within its share of the
    /// budget (see [`share`](super::share)).
    fn output_room(shared: &Shared) -> bool {
        shared.output_share.may_start(
            shared.queued_output(),
            shared.limits.max_write_queue,
            &shared.budget,
            || shared.core().calls_awaited(),
        )
    }

    /// The next frame (`None` at end of stream). With `backpressure`, a call
    /// waits while this connection's output is over its budgets. Cancel-safe.
    pub(crate) async fn next(&mut self, backpressure: bool) -> Option<Result<Bytes, FrameError>> {
        self.lends = 0;
        loop {
            self.paused = false;
            self.reserving = false;
            if !self.deferred.is_empty() {
                if let Some(frame) = self.deferred_ready(backpressure) {
                    return Some(Ok(frame));
                }
            }
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
                    if self.behind_deferred(total) {
                        // Behind the frames set aside, in order.
                        if self.defer_head(total) {
                            continue;
                        }
                        match self.wait_for_deferred().await {
                            ControlFlow::Continue(()) => continue,
                            ControlFlow::Break(end) => return end,
                        }
                    }
                    // A call starts a handler whose reply adds output: it
                    // waits while this connection's output is over its
                    // budgets, set aside if it is light so that the frames
                    // behind it are read on (`defer.rs`: the handlers
                    // holding the room may wait for replies behind it).
                    // (A short call with room, the usual one, is not
                    // looked at further.)
                    if backpressure
                        && is_call(&self.buf[4..total])
                        && (total - 4 > LIGHT_LEN || !Self::output_room(&self.shared))
                    {
                        // A heavy call also waits for room in the budget
                        // for its arguments, whatever this connection
                        // holds: one runs per connection, so only light
                        // calls may come on top of the budget (PROTOCOL.md
                        // §9).
                        let heavy = self.heavy_need(total);
                        let turn = Self::may_start(&self.shared, heavy, self.ticket.as_ref());
                        if turn != Turn::Wait {
                            // Nothing is awaited from the count to here.
                            self.took(turn, heavy);
                        } else if heavy.is_none() && self.defer_head(total) {
                            // Set aside: the frames behind it are read on.
                            continue;
                        } else {
                            match self.wait_for_room(heavy).await {
                                ControlFlow::Continue(()) => continue,
                                ControlFlow::Break(end) => return end,
                            }
                        }
                    }
                    // What the frames returned so far queued (they are
                    // handled: the reader asks for the next one after).
                    if self.unflushed >= self.flush_every
                        && self.mid_flushes < MID_FLUSHES_PER_READ
                        && self.shared.queued_output() >= FLUSH_MIN_BYTES
                    {
                        self.mid_flushes += 1;
                        self.write_queued();
                    }
                    self.unflushed = self.unflushed.saturating_add(1);
                    self.head_weight = 0;
                    // A frame at the start of an allocation the reader
                    // made, at most twice its length, may lend it to a
                    // large `Bytes` value decoded from it (`alloc.rs`).
                    let at_base = self.at_base();
                    let whole = self.buf.capacity();
                    if at_base && total > MAX_READ && whole <= 2 * total {
                        self.lends = whole;
                    }
                    // Split off with its prefix, which the view then
                    // skips: one move of the buffer's start, not two.
                    let mut frame = if self.aside.is_some() {
                        self.own_frame(total)
                    } else {
                        self.buf.split_to(total).freeze()
                    };
                    frame.advance(4);
                    if total > SMALL_FRAME {
                        // Kept in a run of large frames only: a single one
                        // leaves with its allocation, so a connection idle
                        // after it holds nothing. And only one that started
                        // its allocation: the whole of it is then counted.
                        if self.since_large < SHED_AFTER && at_base {
                            self.keep(total);
                        } else {
                            self.shed();
                        }
                        self.since_large = 0;
                    } else {
                        // Large frames stopped: the large buffer goes.
                        self.since_large = self.since_large.saturating_add(1);
                        if self.kept > 0 && self.since_large >= SHED_AFTER {
                            self.shed();
                        }
                    }
                    if self.head_walk.is_some() || self.walk.is_some() || self.probe.is_some() {
                        self.split_off_rare();
                    }
                    return Some(Ok(frame));
                }
                if self.reserved < total {
                    // Before reading on into a frame in progress, what the
                    // reader queued leaves (`direct.rs`): the reservation
                    // may wait for room that output holds, and the rest of
                    // the frame may be slow to come.
                    self.write_queued();
                    if let ControlFlow::Break(end) = self.reserve(total).await {
                        return end;
                    }
                    if self.buf.len() >= total {
                        // What the peer sent while the reservation waited
                        // completed the frame (found by a red-team pass:
                        // `total - len` below overflowed).
                        continue;
                    }
                }
                // Room for the rest of the frame (its announced, bounded,
                // reserved size) and a chunk beyond it: for a small frame,
                // so the frames behind it come in the same read; for a
                // large one, so that the next frame of about its size fits
                // in its allocation once it is kept (`keep.rs`). Without
                // it, a large frame a few bytes longer than the last (its
                // call id one byte longer) filled the kept allocation and
                // was copied whole into a larger one, every frame (a
                // 1 MiB echo copied 1 MiB more per call, BENCHMARKS.md
                // §56).
                let rest = total - self.buf.len();
                if self.buf.capacity() - self.buf.len() < rest {
                    if total > MAX_READ && total <= SMALL_FRAME {
                        // Read into a buffer of its own (`keep.rs`).
                        self.frame_buffer(total);
                    } else if total > SMALL_FRAME {
                        self.large_room(rest + self.chunk);
                    } else {
                        self.reserve_tracked(rest.max(self.chunk));
                    }
                }
                if let Some(b) = self.probe.take() {
                    // Read past a full buffer while the reservation waited:
                    // the frame's next byte. The socket is read again.
                    self.hang_up.done();
                    self.buf.extend_from_slice(&[b]);
                    continue;
                }
            }
            let spare = self.make_room();
            // The frames read so far are handled: what their handling
            // queued is written when the read would wait (`direct.rs`),
            // not before every read, so a busy connection writes once per
            // run of reads rather than once per read.
            if self.unwaited >= WRITE_EVERY_READS {
                self.unwaited = 0;
                self.write_queued();
            }
            // The rest of a frame, its room held, keeps a pace on a
            // server (`stall.rs`), whether or not calls are set aside
            // (red-team pass 26: a call set aside exempted the frame).
            let pace = (self.reserved > 0 && self.shared.server_side)
                .then(|| self.pace.window(self.buf.len()));
            let shared = &self.shared;
            let (unwaited, unflushed) = (&mut self.unwaited, &mut self.unflushed);
            let (r, buf, base) = (&mut self.r, &mut self.buf, &mut self.base);
            // A buffer grown for a burst is given back while the read
            // waits, when it holds nothing (no frame in progress, no large
            // buffer kept): outside the memory budget, it stayed for the
            // connection's life once the peer stopped sending (a peer that
            // had flooded small calls held 30 KB per connection this way,
            // `tests/flood_memory.rs`). A chunk is made room for again at
            // the next poll: once per turn, not per frame.
            let (chunk, shed_idle) = (self.chunk, self.kept == 0);
            let read = std::future::poll_fn(|cx| {
                if buf.capacity() == buf.len() {
                    alloc::reserve_tracked(buf, base, chunk);
                }
                let r = tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut *r), cx, &mut *buf);
                if r.is_pending() {
                    *unwaited = 0;
                    *unflushed = 0;
                    shared.reader_waits();
                    if shed_idle && buf.is_empty() && buf.capacity() > IDLE_READ {
                        *buf = BytesMut::new();
                        *base = 0;
                    }
                }
                r
            });
            let gathering = shared.gathering.get();
            let read = if pace.is_none() && gathering.is_none() && self.deferred.is_empty() {
                // The usual turn: nothing held to a pace, nothing waiting.
                read.await
            } else {
                // The read, held to its pace (a frame's rest, or what the
                // transport gathers: a large message keeps a pace too).
                let pace_kept = &mut self.pace;
                let read = async move {
                    if let Some(since) = pace {
                        match super::stall::paced(shared, since, read).await {
                            Ok(r) => super::stall::Paced::Read(r),
                            Err(w) => super::stall::Paced::Window(w),
                        }
                    } else if let Some(g) = gathering {
                        match super::stall::gathered(shared, &**g, pace_kept, read).await {
                            Ok(r) => super::stall::Paced::Read(r),
                            Err(held) => super::stall::Paced::Held(held),
                        }
                    } else {
                        super::stall::Paced::Read(read.await)
                    }
                };
                let read = if self.deferred.is_empty() {
                    read.await
                } else {
                    // A call set aside waits for room meanwhile: held back
                    // by our budgets, not by the peer.
                    self.paused = true;
                    let room = shared
                        .budget
                        .wait_until(&shared.output_share.own, || Self::output_room(shared));
                    match room::either(room, read).await {
                        None => continue,
                        Some(read) => read,
                    }
                };
                match read {
                    super::stall::Paced::Read(r) => r,
                    super::stall::Paced::Window(w) if self.pace.judge(w, self.buf.len()) => {
                        continue
                    }
                    super::stall::Paced::Window(_) => {
                        let e = super::stall::body_stalled(&self.shared, self.reserved);
                        return Some(Err(FrameError::Io(e)));
                    }
                    super::stall::Paced::Held(held) => {
                        let e = super::stall::held_stalled(&self.shared, held);
                        return Some(Err(FrameError::Io(e)));
                    }
                }
            };
            match read {
                Ok(0) => return None,
                Ok(n) => {
                    self.arrival.reset();
                    self.mid_flushes = 0;
                    self.unwaited += 1;
                    self.last_read = n;
                    self.shared.meter.read(n);
                    self.adapt(n, spare)
                }
                Err(e) => return Some(Err(FrameError::Io(e))),
            }
        }
    }

    /// What handling the frames returned so far queued is written now
    /// (`Shared::reader_waits`), and the count towards the next write
    /// within a run starts again.
    fn write_queued(&mut self) {
        self.unflushed = 0;
        self.shared.reader_waits();
    }

    /// Reads and discards what the peer still sends, for at most
    /// [`DRAIN_TIME`] or [`DRAIN_BYTES`], or until it closes its side.
    pub(crate) async fn drain(mut self) {
        self.drop_deferred();
        self.leave_line();
        self.unreserve();
        self.shed();
        self.set_unknown(BytesMut::new());
        self.aside = None;
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

impl Drop for Input {
    fn drop(&mut self) {
        self.drop_deferred();
        self.leave_line();
        self.unreserve();
        self.shared
            .budget
            .release(std::mem::take(&mut self.charged).bytes);
        self.release_kept();
    }
}
