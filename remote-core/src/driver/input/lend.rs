//! Light call frames lent to the reader where they are, at the head of the
//! read buffer, instead of split off it.
//!
//! A frame split off the buffer is a [`Bytes`] sharing its allocation: a
//! reference count taken, and given back when the frame is dropped (two
//! atomic read-modify-writes and the split's own bookkeeping per frame).
//! A call's frame is not held past its handling (the dispatcher decodes the
//! arguments when the call starts: `Args` borrows them), so a light one is
//! handled in place and the buffer's start moves past it afterwards
//! ([`Input::frame_done`]). Other frames (replies are held by their
//! callers), large ones (`keep.rs` decides where their buffer goes) and
//! frames set aside (`defer.rs`) are split off as before.

use bytes::Bytes;

use super::Input;
use crate::driver::budget::SMALL_FRAME;
use crate::driver::deadline::Arrival;
use crate::driver::frame_bytes::FrameBytes;
use crate::driver::share::ArgsCharge;
use crate::proto::{is_call, ArgsWalk, FrameError};

/// What [`Input::received`] tells of a frame.
type Received<'a> = (&'a mut Arrival, &'a mut ArgsCharge, Option<&'a ArgsWalk>);

impl Input {
    /// [`next`](Input::next), lending a light call frame at the head of
    /// the buffer (`Some(Ok(None))`: [`lent`](Input::lent) gives it)
    /// instead of splitting it off. Cancel-safe.
    pub(crate) async fn next_lending(
        &mut self,
        backpressure: bool,
    ) -> Option<Result<Option<Bytes>, FrameError>> {
        let item = self.next_frame(backpressure, true).await;
        match item {
            Some(Ok(_)) if self.lent > 0 => Some(Ok(None)),
            other => other.map(|r| r.map(Some)),
        }
    }

    /// The frame [`next_lending`](Input::next_lending) lent, in place, and
    /// what [`received`](Input::received) tells of it.
    pub(crate) fn lent(&mut self) -> (FrameBytes<'_>, Received<'_>) {
        debug_assert!(self.lent >= 4 && !self.deferred.popped);
        let frame = FrameBytes::Lent(&self.buf[4..self.lent]);
        (
            frame,
            (&mut self.arrival, &mut self.charged, self.walk.as_ref()),
        )
    }

    /// Lends the complete frame of `total` bytes at the head of the buffer
    /// if it is a light call and the buffer holds nothing that must move
    /// when a frame leaves it (a kept large buffer, a byte read past it
    /// while waiting for room): `false` (nothing done) otherwise. Does
    /// what splitting the frame off would have done to the reader's state.
    pub(super) fn lend_head(&mut self, total: usize) -> bool {
        if total > SMALL_FRAME
            || self.kept > 0
            || self.probe.is_some()
            || !is_call(&self.buf[4..total])
        {
            return false;
        }
        self.since_large = self.since_large.saturating_add(1);
        if self.head_walk.is_some() || self.walk.is_some() {
            self.walk = self.head_walk.take();
        }
        self.lent = total;
        true
    }
}
