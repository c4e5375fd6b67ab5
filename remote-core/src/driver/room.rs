//! Tasks of this side that wait for room in a connection's output before
//! they call the peer of their own accord: a shared collection's
//! notifications to its subscribers ([`Shared::output_room`]).
//!
//! A notification is a call the application's write makes to every
//! subscriber, whatever the subscriber reads. Queued at once, one write of
//! 1 MiB to a map queued 16 MiB for each connection that subscribed 16
//! listeners and read nothing: 31 such connections of one address made the
//! server hold 497 MiB against a 64 MiB budget (found by a red-team pass).
//! Each subscriber now waits, before it takes the change from the feed,
//! until the listener's connection has the room an invalidation push needs
//! (`Shared::push_has_room`), and then reserves the change's weight in the
//! memory budget until its frame is queued ([`Shared::reserve_output`]):
//! so a subscriber that waits holds no copy of the change, and
//! notifications queued past the budget wait for it to have room. (The
//! connection's room alone let every connection with nothing queued queue
//! one more, and the kernel's socket buffers empty a silent connection's
//! queue again and again: 512 silent connections held 589 MiB, and in some
//! runs 8 GiB, as all 16 subscribers of one connection passed the check at
//! once, against a 16 MiB budget; found by a second red-team pass.)

use std::sync::atomic::{fence, AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::budget::{Budget, OwnRoom};
use super::shared::Shared;

/// The tasks waiting for room in one connection's output.
#[derive(Debug, Default)]
pub(crate) struct RoomWaiters {
    changed: Notify,
    /// How many wait (only then does a write notify: no lock per write).
    waiting: AtomicUsize,
}

impl RoomWaiters {
    /// The connection's output shrank or it closed (made before this call,
    /// and a `SeqCst` fence since): its waiters re-check.
    #[inline]
    pub(crate) fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// Counts one waiter while it exists (also when its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Room held in the memory budget for a notification until its frame is
/// queued (then the frame counts itself): given back on drop.
pub(crate) struct Reserved<'a> {
    budget: &'a Budget,
    n: usize,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.budget.release(self.n);
    }
}

impl Shared {
    /// Waits until the output has room ([`output_room`](Self::output_room))
    /// and the memory budget has room for a notification weighing `weight`
    /// held, and counts that room until the returned reservation is
    /// dropped. Resolves at once, reserving nothing, once the connection is
    /// closed. What is reserved is at most what its frame can be
    /// (`max_frame_len`), and at most a quarter of the budget: more would
    /// wait for a budget nearly empty, which a busy server may never have.
    pub(crate) async fn reserve_output(&self, weight: usize) -> Reserved<'_> {
        let budget = &*self.budget;
        let n = weight
            .min(self.limits.max_frame_len)
            .min(budget.limit() / 4);
        loop {
            self.output_room().await;
            if self.is_closed() || n == 0 {
                return Reserved { budget, n: 0 };
            }
            if budget.try_charge(n) {
                return Reserved { budget, n };
            }
            // Woken as bytes are given back anywhere in the budget.
            budget
                .wait_until(&OwnRoom::default(), || {
                    self.is_closed() || budget.has_room(n)
                })
                .await;
        }
    }

    /// Whether a call this side makes of its own accord may be queued now.
    pub(crate) fn output_has_room(&self) -> bool {
        self.is_closed() || self.push_has_room()
    }

    /// Resolves once [`output_has_room`](Self::output_has_room): the
    /// output's writes, and the connection's close, wake it.
    pub(crate) async fn output_room(&self) {
        let room = &self.output_share.callers;
        loop {
            let notified = room.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            room.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&room.waiting);
            // Pairs with the fence a write makes after it shrinks the
            // queue: either this sees the room, or the write sees a waiter.
            fence(Ordering::SeqCst);
            if self.output_has_room() {
                return;
            }
            notified.await;
        }
    }
}
