//! Tasks of this side that wait for room before they call the peer of
//! their own accord: a shared collection's notifications to its
//! subscribers ([`Shared::reserve_output`]).
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

use super::budget::Budget;
use super::shared::Shared;

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
    /// Waits until the output has the room an invalidation push needs
    /// (`push_has_room`) and the memory budget has room for a notification
    /// weighing `weight` held, and counts that room until the returned
    /// reservation is dropped. Woken by this connection's writes and close
    /// (`OutputShare::callers`) and by bytes given back anywhere in the
    /// budget. Resolves at once, reserving nothing, once the connection is
    /// closed. What is reserved is at most what its frame can be
    /// (`max_frame_len`), and at most a quarter of the budget: more would
    /// wait for a budget nearly empty, which a busy server may never have.
    /// While its connection has room and the budget has not, the budget is
    /// marked short ([`Budget::starving`]): a server then closes peers that
    /// read nothing sooner (`pressure_stall_timeout`), making room.
    pub(crate) async fn reserve_output(&self, weight: usize) -> Reserved<'_> {
        let budget = &*self.budget;
        let n = weight
            .min(self.limits.max_frame_len)
            .min(budget.limit() / 4);
        let starving = budget.starving();
        loop {
            budget
                .wait_until(&self.output_share.callers, || {
                    if self.is_closed() {
                        return true;
                    }
                    let own = self.push_has_room();
                    let room = n == 0 || budget.has_room(n);
                    starving.set(own && !room);
                    own && room
                })
                .await;
            if self.is_closed() || n == 0 {
                return Reserved { budget, n: 0 };
            }
            if budget.try_charge(n) {
                return Reserved { budget, n };
            }
        }
    }
}
