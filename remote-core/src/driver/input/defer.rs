//! Calls set aside while they wait for room, so the frames behind them that
//! do not need it are still read and handled.
//!
//! A call that may not start yet (its connection's output over its share,
//! PROTOCOL.md §9) used to stop the reader: nothing behind it was read.
//! But the handlers holding that room may be waiting for the very frames
//! behind it: replies to their own calls back to the peer. One honest
//! client making 9 calls at once, each of whose handlers calls back, held
//! every call until its deadline at the defaults (found by a red-team
//! pass: before a connection's first reply, 8 running handlers fill its
//! share). So a light call that must wait is set aside, with what it
//! holds counted in the memory budget, and reading goes on:
//!
//! - replies, errors, pings, pongs and invalidations are handled at once,
//!   whatever waits before them: nothing they do depends on a call not
//!   yet started (a reference they carry counts the same in either order,
//!   PROTOCOL.md §4); so is a cancel of a call not set aside, which may
//!   free the room they wait for;
//! - any other frame (a call, a release, a finish, a goodbye, a cancel of
//!   a call set aside) is set aside behind the waiting ones, so those keep
//!   their order;
//! - the frames set aside go on, in order, as soon as the first may: a
//!   call once its connection has room, anything else at once.
//!
//! At most [`DEFER_BYTES`] (and `max_calls_in_flight` frames) are set
//! aside per connection; past that, and for a heavy call, the reader
//! waits for room as before.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use bytes::{Buf, Bytes};

use super::{Input, LIGHT};
use crate::driver::share::{ArgsCharge, LIGHT_LEN};
use crate::proto::{is_call, kind, kind_of, FrameError, Reader};

/// Most bytes of frames (prefixes included) set aside per connection: a
/// hundred ordinary calls. They are counted in the budget whether it has
/// room or not (a full budget is when calls wait, and handlers waiting for
/// answers then must still get them), so at most `max_connections ×
/// DEFER_BYTES` (16 MiB at the defaults) come on top of it this way.
pub(super) const DEFER_BYTES: usize = 16 << 10;

/// Frames set aside a connection keeps room for once none is.
const SLACK_FRAMES: usize = 16;

/// Frames set aside, in order, and what they count in the budget.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Each frame: a copy (a view would keep the read buffer's whole
    /// allocation alive), so a walk made of it in the buffer no longer
    /// applies (walks match a payload by its address) and is dropped.
    frames: VecDeque<Bytes>,
    /// Their lengths with prefixes, counted in the memory budget.
    bytes: usize,
    /// Whether the frame last returned was one set aside: what the reader
    /// holds for the frame at the head of the buffer (its reservation, its
    /// count) is not that frame's, and is left alone when it is handled.
    pub(super) popped: bool,
    /// That frame's count ([`Input::received`]): none when it comes, as a
    /// light call's.
    pub(super) charged: ArgsCharge,
}

impl Deferred {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A message's kind and its first field (a call id for a call or a
/// cancel), if it reads as an array starting with two unsigned integers.
fn head(payload: &[u8]) -> Option<(u64, u64)> {
    let mut r = Reader::new(payload);
    r.array_len().ok()?;
    let k = r.uint().ok()?;
    let id = r.uint().ok()?;
    Some((k, id))
}

/// Whether a frame may be handled before the frames set aside: a reply, an
/// error, a ping, a pong or an invalidation (or its acknowledgement).
fn may_overtake(payload: &[u8]) -> bool {
    // Malformed: in order, where its handling says why.
    let Some(k) = kind_of(payload) else {
        return false;
    };
    [
        kind::RETURN,
        kind::ERROR,
        kind::PING,
        kind::PONG,
        kind::INVALIDATE,
        kind::INVALIDATED,
    ]
    .iter()
    .any(|&x| u64::from(x) == k)
}

impl Input {
    /// The first frame set aside, if it may go on now: a call once its
    /// connection's output has room, anything else at once. Its count in
    /// the budget is given back; a call's time counts from now.
    pub(super) fn deferred_ready(&mut self, backpressure: bool) -> Option<Bytes> {
        let front = self.deferred.frames.front()?;
        let call = is_call(front);
        if call && backpressure && !Self::output_room(&self.shared) {
            return None;
        }
        let frame = self.deferred.frames.pop_front()?;
        if self.deferred.frames.is_empty() && self.deferred.frames.capacity() > SLACK_FRAMES {
            // Room for up to `max_calls_in_flight` frames, outside the
            // budget: not kept once they have all gone on.
            self.deferred.frames = VecDeque::new();
        }
        let n = frame.len() + 4;
        self.deferred.bytes -= n;
        self.shared.budget.release(n);
        self.walk = None;
        self.deferred.popped = true;
        if call {
            self.arrival.reset();
        }
        Some(frame)
    }

    /// Whether the complete frame of `total` bytes at the head of the
    /// buffer must stay behind the frames set aside. A cancel goes first
    /// unless it is for a call set aside (a call id is not reused before
    /// its reply, PROTOCOL.md §3.6): it may free the room they wait for.
    #[inline]
    pub(super) fn behind_deferred(&self, total: usize) -> bool {
        if self.deferred.is_empty() {
            return false;
        }
        let payload = &self.buf[4..total];
        match head(payload) {
            Some((k, id)) if k == u64::from(kind::CANCEL) => self
                .deferred
                .frames
                .iter()
                .any(|f| is_call(f) && head(f).is_some_and(|(_, other)| other == id)),
            _ => !may_overtake(payload),
        }
    }

    /// The frame last returned has been handled: true (and what its count
    /// still holds given back) if it was one set aside.
    #[inline]
    pub(super) fn deferred_done(&mut self) -> bool {
        if !std::mem::take(&mut self.deferred.popped) {
            return false;
        }
        let left = std::mem::take(&mut self.deferred.charged).bytes;
        if left > 0 {
            self.shared.budget.release(left);
        }
        true
    }

    /// Sets the complete frame of `total` bytes at the head of the buffer
    /// aside, counted in the budget, if there is room for it and it is not
    /// a heavy call: `false` (nothing done) if not. A heavy call waits at
    /// the head, as before, holding nothing while its connection's output
    /// is what it waits for (set aside, it would hold its whole count in
    /// the budget while it waited: found by a red-team pass).
    pub(super) fn defer_head(&mut self, total: usize) -> bool {
        // Not a call whose count (or refusal, or place in line) is kept
        // for it as the head of the buffer.
        if self.charged.bytes > 0 || self.charged.over.is_some() || self.ticket.is_some() {
            return false;
        }
        if self.deferred.bytes + total > DEFER_BYTES
            || self.deferred.frames.len() >= self.shared.limits.max_calls_in_flight.max(1)
            || !self.head_is_light(total)
        {
            return false;
        }
        // Its reservation, if it had one, becomes part of the count.
        let reserved = self.take_reservation();
        self.shared.budget.charge(total.saturating_sub(reserved));
        self.deferred.bytes += total;
        self.head_weight = 0;
        self.give_up = None;
        // Copied: a view would keep the whole read buffer alive, uncounted
        // (a red-team pass held 2.5 MB with 2.3 KB counted, by sending
        // 16 KiB of pongs after each call set aside).
        let frame = Bytes::copy_from_slice(&self.buf[4..total]);
        self.buf.advance(total);
        self.aside_back();
        self.head_walk = None;
        self.put_back_probe();
        self.deferred.frames.push_back(frame);
        true
    }

    /// Whether the complete frame of `total` bytes at the head of the
    /// buffer is not a heavy call ([`weigh_head`](Self::weigh_head)).
    /// Nothing is marked for it, as [`heavy_need`](Self::heavy_need) marks
    /// a call too heavy ever to run: this may be asked while the frames set
    /// aside go first, and what is marked for the head applies to the next
    /// frame handled.
    fn head_is_light(&mut self, total: usize) -> bool {
        total - 4 <= LIGHT_LEN || !is_call(&self.buf[4..total]) || self.weigh_head(total) == LIGHT
    }

    /// Waits until the first frame set aside may go on (or the peer closes,
    /// `Break`), when no more can be set aside.
    pub(super) async fn wait_for_deferred(
        &mut self,
    ) -> ControlFlow<Option<Result<Bytes, FrameError>>> {
        // The first one is a call (anything else goes on at once): what it
        // waits for is what any call waits for.
        self.wait_for_room(None).await
    }

    /// Gives back what the frames set aside count (the connection ends).
    pub(super) fn drop_deferred(&mut self) {
        let n = std::mem::take(&mut self.deferred.bytes);
        self.deferred.frames.clear();
        if n > 0 {
            self.shared.budget.release(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{encode, CallId, ObjectId};

    #[test]
    fn only_replies_pings_and_invalidations_overtake() {
        let call = {
            let mut f = encode::begin(64);
            encode::call_head(&mut f, CallId(1), ObjectId(0), "m", 1000);
            f.push(0x90);
            encode::finish(&mut f);
            f.split_off(4)
        };
        assert!(!may_overtake(&call));
        for (k, overtakes) in [
            (kind::RETURN, true),
            (kind::ERROR, true),
            (kind::PING, true),
            (kind::PONG, true),
            (kind::INVALIDATE, true),
            (kind::INVALIDATED, true),
            (kind::RELEASE, false),
            (kind::CANCEL, false),
            (kind::GOODBYE, false),
            (kind::KEPT_CALL, false),
            (kind::FINISH, false),
        ] {
            assert_eq!(may_overtake(&[0x92, k, 0]), overtakes, "kind {k}");
            // The same kind encoded otherwise (a uint8) reads the same.
            assert_eq!(
                may_overtake(&[0xdc, 0, 2, 0xcc, k, 0]),
                overtakes,
                "kind {k}"
            );
        }
        assert!(!may_overtake(&[0xc1]), "malformed stays in order");
    }
}
