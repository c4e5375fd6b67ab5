//! Shared collections over real connections.

#[path = "collections/basics.rs"]
mod basics;
#[path = "collections/iter.rs"]
mod iter;
#[path = "collections/pages.rs"]
mod pages;
#[path = "collections/subscriptions.rs"]
mod subscriptions;

use std::time::Duration;

use tokio::sync::mpsc;

/// The next notification (generous bound: the machine may be loaded).
async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("notification timed out")
        .expect("sender dropped")
}

/// Polls `cond` until it holds, for at most 60 s; whether it did.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}
