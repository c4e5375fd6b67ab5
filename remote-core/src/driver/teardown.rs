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

/// A connection's two I/O tasks, its reader and its writer, counted down
/// as each ends. [`IoTasks::ended`] resolves once both have, their halves
/// of the byte stream dropped. A closed connection's reader may still
/// drain the peer's input and its writer finish the goodbye, each for up
/// to `DRAIN_TIME`. A server keeps the connection's `max_connections` slot
/// until then: it gave the slot back at the close, and a peer that made
/// each connection close at once (a frame over `max_frame_len`) and then
/// kept its socket open had 2,000 sockets held on a server of 32 slots
/// (red-team pass 35).
pub(crate) struct IoTasks {
    left: std::sync::atomic::AtomicU8,
    ended: tokio_util::sync::CancellationToken,
}

impl IoTasks {
    pub(crate) fn new() -> Self {
        IoTasks {
            left: std::sync::atomic::AtomicU8::new(2),
            ended: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// One of the two tasks ended (called once by each, from its guard's
    /// drop, after its half of the stream is dropped).
    pub(crate) fn one_ended(&self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.ended.cancel();
        }
    }

    /// Resolves once both tasks ended.
    pub(crate) async fn ended(&self) {
        self.ended.cancelled().await;
    }
}
