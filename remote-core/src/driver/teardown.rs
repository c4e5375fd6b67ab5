//! Dropping user objects without letting their destructors take the
//! connection down.

use std::sync::Arc;

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
/// as each ends: what it holds ([`IoHold`]) is dropped once both have,
/// their halves of the byte stream dropped. A closed connection's reader may still
/// drain the peer's input and its writer finish the goodbye, each for up
/// to `DRAIN_TIME`. A server keeps the connection's `max_connections` slot
/// until then: it gave the slot back at the close, and a peer that made
/// each connection close at once (a frame over `max_frame_len`) and then
/// kept its socket open had 2,000 sockets held on a server of 32 slots
/// (red-team pass 35).
pub(crate) struct IoTasks {
    left: std::sync::atomic::AtomicU8,
    /// Dropped once both tasks ended: a server's slot for the connection
    /// (`server/serve.rs`), given back so however the connection ends,
    /// its handshake failed included (red-team pass 36: a WebSocket
    /// peer whose goodbye waited behind unread pongs held its socket for
    /// the writer's 5 s with its slot given back).
    hold: std::sync::Mutex<Option<IoHold>>,
}

/// What a connection holds until its I/O tasks end ([`IoTasks`]).
pub(crate) type IoHold = Arc<dyn std::any::Any + Send + Sync>;

impl IoTasks {
    pub(crate) fn new(hold: Option<IoHold>) -> Self {
        IoTasks {
            left: std::sync::atomic::AtomicU8::new(2),
            hold: std::sync::Mutex::new(hold),
        }
    }

    /// One of the two tasks ended (called once by each, from its guard's
    /// drop, after its half of the stream is dropped; for a reader never
    /// spawned, by the set-up that failed).
    pub(crate) fn one_ended(&self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            let hold = self.hold.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(hold);
        }
    }
}
