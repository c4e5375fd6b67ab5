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
//! (`Shared::push_has_room`): so past the budget, a connection holding any
//! output queues no notification more, and a subscriber that waits holds
//! no copy of the change.

use std::sync::atomic::{fence, AtomicUsize, Ordering};

use tokio::sync::Notify;

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

impl Shared {
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
