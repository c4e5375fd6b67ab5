//! A waker that counts its wake-ups, for the driver's unit tests of
//! hand-written wake-up logic (`ctl_queue.rs`, `replies.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

/// Counts the wake-ups of the wakers made from it.
#[derive(Default)]
pub(crate) struct WakeCount(AtomicUsize);

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl WakeCount {
    /// Wake-ups so far.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A counter and a waker that counts into it.
pub(crate) fn counting_waker() -> (Arc<WakeCount>, Waker) {
    let c = Arc::new(WakeCount::default());
    (c.clone(), Waker::from(c))
}
