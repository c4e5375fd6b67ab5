//! Dropping user objects without letting their destructors take the
//! connection down, and closing a connection whose reader ended anyhow.

use std::sync::Arc;

use super::conn::Shared;
use crate::Error;

/// Drops `value` (something holding user objects: a released export, a
/// handler's future), catching and logging a panic in its `Drop` so the
/// connection task carries on.
pub(crate) fn drop_caught<T>(peer: &str, what: &str, value: T) {
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
    if let Err(panic) = dropped {
        let msg = super::conn::panic_error(panic).message;
        tracing::error!(name: "remote.destructor_panicked", peer = %peer, "a destructor panicked dropping {what}: {msg}");
    }
}

/// Drops each of `values` on its own (so a panic in one destructor neither
/// skips the others nor, by panicking again while unwinding, aborts).
pub(crate) fn drop_each_caught<T>(peer: &str, what: &str, values: Vec<T>) {
    for v in values {
        drop_caught(peer, what, v);
    }
}

/// Held by a connection's reader task: however that task ends (its loop
/// finishing, a panic, the runtime dropping it), the connection is closed,
/// its calls failed and its objects dropped, so `closed()` resolves and a
/// server's slot is freed.
pub(crate) struct DisconnectOnDrop(pub(crate) Arc<Shared>);

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        // A no-op after the reader's own disconnect (the first reason wins
        // and the tables are already empty).
        self.0.disconnect(Error::ConnectionLost(
            "the connection task ended unexpectedly".into(),
        ));
    }
}
