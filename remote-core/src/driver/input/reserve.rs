//! A frame in progress counted in the memory budget: its reservation,
//! taken before its bytes are read (waiting for room unless it is small),
//! and given back once it is handled.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{room, Input};
use crate::driver::budget::SMALL_FRAME;
use crate::driver::shared::Shared;
use crate::proto::FrameError;

impl Input {
    /// Counts the frame in progress (`total` bytes) in the budget, waiting
    /// for room unless it is small and this connection holds nothing else.
    /// `Break` when the peer closed (or a read failed) meanwhile, with
    /// what [`next`](Self::next) returns.
    pub(super) async fn reserve(
        &mut self,
        total: usize,
    ) -> ControlFlow<Option<Result<Bytes, FrameError>>> {
        // A pace kept while the transport gathered the frame's message
        // counted its data, not this frame's bytes.
        self.pace.reset();
        // A kept large buffer is the memory this frame is read into: its
        // count moves to the frame's reservation instead of adding to it.
        let moved = self.kept.min(total - self.reserved);
        self.kept -= moved;
        self.shared.kept.reader_kept(-(moved as isize));
        self.reserved += moved;
        shared_add(&self.shared, moved);
        // So does what the transport counted for the frame's message
        // (`transport/ws_meter.rs`): counted twice, a frame of more than
        // half the budget could never be read, and given back first,
        // its room could go to another before the reservation had it.
        let credit = match self.shared.read_credit.load(Ordering::Acquire) {
            0 => 0,
            _ => self.shared.read_credit.swap(0, Ordering::AcqRel),
        };
        if credit > 0 {
            let moved = credit.min(total - self.reserved);
            self.reserved += moved;
            shared_add(&self.shared, moved);
            self.shared.budget.release(credit - moved);
        }
        if self.reserved >= total {
            return ControlFlow::Continue(());
        }
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
            self.reserving = true;
            // The socket is watched meanwhile, so a peer that closes is
            // noticed (found by a red-team pass: readers waiting here never
            // looked, and a thousand closed connections held their slots).
            // The budget is short meanwhile (`pressure_stall_timeout`).
            let starving = shared.budget.starving();
            starving.set(true);
            let room = shared.budget.wait_until(&shared.output_share.own, fits);
            let watch = room::watch(
                &mut self.r,
                &mut self.buf,
                &mut self.probe,
                &mut self.hang_up,
                &shared.meter,
                shared.gathering.get().is_some(),
            );
            let ended = room::first_of(room, None, watch).await;
            self.hang_up.done();
            self.paused = false;
            self.reserving = false;
            if let room::Wait::Closed(end) = ended {
                return ControlFlow::Break(end);
            }
        }
        // Nothing is awaited from here on: the charge is recorded at once.
        self.reserved = total;
        shared_add(&shared, need);
        ControlFlow::Continue(())
    }

    /// The frame last returned has been handled: give back its reservation,
    /// and its arguments' count unless its handler runs on with it.
    #[inline]
    pub(crate) fn frame_done(&mut self) {
        if self.deferred_done() {
            return;
        }
        self.unreserve();
        if self.charged.bytes > 0 || self.charged.over.is_some() {
            self.shared
                .budget
                .release(std::mem::take(&mut self.charged).bytes);
        }
    }

    pub(super) fn unreserve(&mut self) {
        self.pace.reset();
        let n = std::mem::take(&mut self.reserved);
        if n > 0 {
            self.shared.buffered_input.fetch_sub(n, Ordering::AcqRel);
            self.shared.budget.release(n);
        }
    }
}

/// Counts `n` more bytes of a frame in progress in `buffered_input`.
fn shared_add(shared: &Shared, n: usize) {
    if n > 0 {
        shared.buffered_input.fetch_add(n, Ordering::AcqRel);
    }
}
