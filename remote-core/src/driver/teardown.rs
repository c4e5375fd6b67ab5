//! Dropping user objects without letting their destructors take the
//! connection down.

use super::panics::panic_error;

/// Drops `value` (something holding user objects: a released export, a
/// handler's future), catching and logging a panic in its `Drop` so the
/// connection task carries on.
pub(crate) fn drop_caught<T>(peer: &str, what: &str, value: T) {
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
    if let Err(panic) = dropped {
        let msg = panic_error(panic).message;
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
