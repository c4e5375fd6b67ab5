//! A gate for handlers that wait: how many run, the most at once, how many
//! ended, and the permits that let them end. Included by
//! `#[path = "support/gate.rs"] mod gate;`.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tokio::sync::Semaphore;

/// Counts the handlers passing through it; each waits for a permit.
pub struct Gate {
    /// Permits: one lets one waiting handler end.
    pub open: Semaphore,
    /// Handlers waiting now.
    pub running: AtomicUsize,
    /// The most that waited at once.
    pub most: AtomicUsize,
    /// Handlers that ended.
    pub done: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            open: Semaphore::new(0),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }
}

impl Gate {
    /// A handler's wait: counted as running until a permit lets it end
    /// (or the handler is dropped: cancelled, past its deadline, or its
    /// connection lost; then it does not count as done).
    pub async fn pass(&self) {
        struct Running<'a>(&'a AtomicUsize);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let running = Running(&self.running);
        self.open.acquire().await.unwrap().forget();
        drop(running);
        self.done.fetch_add(1, SeqCst);
    }
}
