//! Waiting for room to start a call: its connection's output over its
//! budgets, or a heavy call's arguments not yet counted in the memory
//! budget (PROTOCOL.md §9, [`share`](crate::driver::share)).

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{BoxRead, Input, LIGHT};
use crate::driver::budget::{Ticket, Turn};
use crate::driver::share::{heavy_call_weight, LIGHT_LEN};
use crate::driver::shared::Shared;
use crate::proto::FrameError;
use crate::rt::time::Instant;
use crate::stats::Meter;

impl Input {
    /// Waits until the call at the head of the buffer may start
    /// ([`may_start`](Self::may_start)), its count then recorded
    /// (`Continue`), or until the peer closes the connection or a read
    /// fails meanwhile (`Break`, with what [`next`](Self::next) returns).
    /// A heavy call lines up for room in the budget
    /// ([`Budget::line_up`](crate::driver::budget::Budget::line_up)) while
    /// room is what it waits for. The socket is still read meanwhile, but
    /// only into the read buffer's spare room, never grown for it (a peer
    /// that sent more would otherwise make it double on every turn of the
    /// reader, uncounted: found by a red-team pass), and then one byte
    /// more, kept aside ([`Input::probe`]), so that a peer that closes its
    /// connection is noticed and what the connection holds (its place in
    /// line) is freed, rather than when the call starts. Past that byte,
    /// the socket itself is watched for a close (`hang_up.rs`).
    /// Cancel-safe: the place in line and what was read stay.
    pub(super) async fn wait_for_room(
        &mut self,
        heavy: Option<usize>,
    ) -> ControlFlow<Option<Result<Bytes, FrameError>>> {
        self.paused = true;
        // The wait is ours: the call's time counts from its end. Reset
        // before it, as this future is dropped when a control message or
        // the timer takes the reader's turn, and the next turn may then
        // find room without waiting.
        self.arrival.reset();
        // Waiting for room: what the reader queued leaves first
        // (`direct.rs`), and a large buffer kept for the next frame is
        // memory this connection would wait for itself.
        self.write_queued();
        if let Some(need) = heavy {
            if self.kept > 0 {
                self.shed();
            }
            // In line only while room in the budget is what it waits for:
            // a peer that reads none of its output holds nothing back.
            if self.ticket.is_none() && need > 0 && Self::output_room(&self.shared) {
                let held = self.reserved;
                self.ticket = Some(self.shared.budget.line_up(need, held));
            }
        }
        let shared = self.shared.clone();
        let out_of_line = heavy.is_some() && self.ticket.is_none();
        // A heavy call waits for room until its own deadline at most
        // (capped at `max_deadline`): the caller gives up then anyway, and
        // a call first in line holds room back from everybody else.
        let give_up = match (heavy, self.give_up) {
            (None, _) => None,
            (Some(_), Some(at)) => Some(at),
            (Some(_), None) => {
                let ms = u64::from(self.head_timeout_ms.max(1));
                let wait = Duration::from_millis(ms).min(shared.limits.max_deadline);
                let at = crate::driver::deadline::after(Instant::now(), wait);
                self.give_up = Some(at);
                Some(at)
            }
        };
        let mut turn = Turn::Wait;
        let ended = {
            let ticket = self.ticket.as_ref();
            // Until it may start, or (out of line) its output has room and
            // it lines up.
            let room = shared.budget.wait_until(&shared.output_share.own, || {
                turn = Self::may_start(&shared, heavy, ticket);
                turn != Turn::Wait || (out_of_line && Self::output_room(&shared))
            });
            let watch = watch(
                &mut self.r,
                &mut self.buf,
                &mut self.probe,
                &mut self.hang_up,
                &shared.meter,
                shared.gathering.get().is_some(),
            );
            first_of(room, give_up, watch).await
        };
        self.hang_up.done();
        match ended {
            Wait::Room => {}
            Wait::Closed(end) => return ControlFlow::Break(end),
            Wait::Late => {
                // Refused: it leaves the line.
                self.leave_line();
                turn = Turn::Never;
            }
        }
        self.took(turn, heavy);
        ControlFlow::Continue(())
    }

    /// What the call at the head of the buffer (its frame `total` bytes
    /// long) must count in the budget before it starts if it is heavy
    /// ([`heavy_call_weight`]) and not counted yet: its weight, less the
    /// frame's reservation, which becomes part of the count. A call
    /// heavier than the budget less an eighth could never have room
    /// ([`Budget::try_charge_first`](crate::driver::budget::Budget::try_charge_first)):
    /// it is marked to be refused instead.
    #[inline]
    pub(super) fn heavy_need(&mut self, total: usize) -> Option<usize> {
        if self.charged.bytes > 0 || self.charged.over.is_some() || total - 4 <= LIGHT_LEN {
            return None;
        }
        match self.weigh_head(total) {
            LIGHT => None,
            w if w > self.shared.budget.most_for_the_line() => {
                self.charged.over = Some(w);
                None
            }
            w => Some(w.saturating_sub(self.reserved)),
        }
    }

    /// The weight of the call at the head of the buffer (its frame `total`
    /// bytes long), or [`LIGHT`] if it is not heavy ([`heavy_call_weight`]):
    /// walked once, its weight, walk and deadline kept for it until it is
    /// split off.
    pub(super) fn weigh_head(&mut self, total: usize) -> usize {
        if self.head_weight == 0 {
            let payload = &self.buf[4..total];
            let weighed = heavy_call_weight(payload, &self.shared.limits);
            self.head_weight = weighed.weight.unwrap_or(LIGHT);
            self.head_walk = weighed.walk;
            self.head_timeout_ms = weighed.timeout_ms;
        }
        self.head_weight
    }

    /// The reservation of the frame at the head of the buffer, taken to
    /// become part of another count: it leaves `buffered_input` and stays
    /// counted in the budget.
    pub(super) fn take_reservation(&mut self) -> usize {
        let reserved = std::mem::take(&mut self.reserved);
        if reserved > 0 {
            self.shared
                .buffered_input
                .fetch_sub(reserved, Ordering::AcqRel);
        }
        reserved
    }

    /// Whether the call at the head of the buffer may start (`Counted`):
    /// this connection's output has room, and if the call is heavy,
    /// `heavy` bytes more were counted in the budget for it (first in line
    /// if it holds `ticket`); or whether, first in line, it never could
    /// (`Never`: it is refused).
    pub(super) fn may_start(
        shared: &Shared,
        heavy: Option<usize>,
        ticket: Option<&Ticket>,
    ) -> Turn {
        if let (Some(need), Some(t)) = (heavy, ticket) {
            // Whatever it needs (a need of 0 too: in line, it must leave
            // it, or it would stay first for ever, found by a red-team
            // pass).
            let room = shared.output_share.may_start_first(
                shared.queued_output(),
                shared.limits.max_write_queue,
                &shared.budget,
                || shared.core().calls_awaited(),
            );
            return if room {
                shared.budget.try_charge_first(t, need)
            } else {
                Turn::Wait
            };
        }
        if !Self::output_room(shared) {
            return Turn::Wait;
        }
        match heavy {
            None | Some(0) => Turn::Counted,
            Some(need) if shared.budget.try_charge(need) => Turn::Counted,
            Some(_) => Turn::Wait,
        }
    }

    /// What [`may_start`](Self::may_start) gave the call at the head of
    /// the buffer, recorded: if it may start and is heavy, the `heavy`
    /// bytes counted for it and its frame's reservation are its count
    /// until it is handled; if it never could, it is to be refused. Either
    /// way it is out of the line.
    pub(super) fn took(&mut self, turn: Turn, heavy: Option<usize>) {
        let Some(need) = heavy else { return };
        if turn != Turn::Wait {
            self.give_up = None;
        }
        match turn {
            Turn::Wait => return,
            Turn::Never => {
                self.leave_line();
                self.charged.over = Some(self.head_weight);
                return;
            }
            Turn::Counted => {}
        }
        // Out of the line already if it was first (`try_charge_first`);
        // never left in it (a red-team pass left a call first in line for
        // good, and every heavy call after it waited to its deadline).
        self.leave_line();
        self.charged.bytes = self.take_reservation() + need;
    }

    /// A heavy call waiting for room gives up its place (the connection
    /// closed).
    pub(super) fn leave_line(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.shared.budget.leave(t);
        }
    }
}

/// Waits for `room`, until `give_up` at most, while `watch` watches the
/// peer: how the wait ended.
pub(super) async fn first_of(
    room: impl Future<Output = ()>,
    give_up: Option<Instant>,
    watch: impl Future<Output = Option<Result<Bytes, FrameError>>>,
) -> Wait {
    let late = async {
        match give_up {
            Some(at) => crate::rt::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let (mut room, mut late, mut watch) = (
        std::pin::pin!(room),
        std::pin::pin!(late),
        std::pin::pin!(watch),
    );
    std::future::poll_fn(|cx| {
        if room.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wait::Room);
        }
        if late.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wait::Late);
        }
        watch.as_mut().poll(cx).map(Wait::Closed)
    })
    .await
}

/// Waits for `room` or `other`, whichever comes first: `None` for room.
pub(super) async fn either<T>(
    room: impl Future<Output = ()>,
    other: impl Future<Output = T>,
) -> Option<T> {
    let (mut room, mut other) = (std::pin::pin!(room), std::pin::pin!(other));
    std::future::poll_fn(|cx| {
        if room.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        other.as_mut().poll(cx).map(Some)
    })
    .await
}

/// How a wait for room ended.
pub(super) enum Wait {
    /// The call may start (or is refused: `Turn::Never`).
    Room,
    /// A heavy call's deadline passed first: it is refused.
    Late,
    /// The peer closed, or a read failed.
    Closed(Option<Result<Bytes, FrameError>>),
}

/// Reads what the peer sends while its connection waits for room, so its
/// close is noticed: into the read buffer's spare room only, never grown
/// for it (a peer that sent more would otherwise make it double on every
/// turn of the reader, uncounted: found by a red-team pass), then one
/// byte more, kept aside in `probe` (put back behind the buffer's content
/// once the wait ends; then nothing more is read until it does, and the
/// socket is watched for a close instead, `hang_up`). Returns only when
/// the peer closed (`None`) or a read failed.
///
/// Through a transport that gathers input before the reader sees it (TLS,
/// WebSocket: `gathers`), nothing is read at all, only the socket watched:
/// reading asks that transport for data, so it takes in what the peer
/// sends meanwhile (rustls a handshake message of up to 64 KiB, counted
/// 128 KiB; the WebSocket layer a message's first fragment, counted twice
/// its length), and its pace cannot be judged while the reader holds the
/// peer back. (Red-team pass 27: 37 TLS peers each with a frame waiting
/// for room held a 4 MiB budget so until their idle timeout; 20 WebSocket
/// peers each with a heavy call waiting did the same with 64 KiB each.)
pub(super) async fn watch(
    r: &mut BoxRead,
    buf: &mut BytesMut,
    probe: &mut Option<u8>,
    hang_up: &mut super::hang_up::Watch,
    meter: &Meter,
    gathers: bool,
) -> Option<Result<Bytes, FrameError>> {
    while !gathers && buf.capacity() > buf.len() && probe.is_none() {
        let read = std::future::poll_fn(|cx| {
            tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut *r), cx, &mut *buf)
        });
        match read.await {
            Ok(0) => return None,
            Ok(n) => meter.read(n),
            Err(e) => return Some(Err(FrameError::Io(e))),
        }
    }
    if probe.is_none() && !gathers {
        let mut one = [0u8; 1];
        let mut rb = tokio::io::ReadBuf::new(&mut one);
        let read = std::future::poll_fn(|cx| {
            tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut *r), cx, &mut rb)
        });
        match read.await {
            Ok(()) if rb.filled().is_empty() => return None,
            Ok(()) => {
                *probe = Some(one[0]);
                meter.read(1);
            }
            Err(e) => return Some(Err(FrameError::Io(e))),
        }
    }
    let r = &mut *r;
    std::future::poll_fn(move |cx| hang_up.poll_closed(&**r, cx)).await;
    None
}
