//! The async driver: one task reads and feeds the protocol state machine,
//! one task writes. Everything else (callers, proxies, method handlers)
//! talks to them through the connection's shared state.

mod blocking_pool;
mod budget;
pub(crate) use budget::{Budget, SMALL_FRAME};
pub(crate) use lateness::PeerMisses;
pub(crate) use reader_lateness::ReaderLateness;
mod answer_errors;
mod cached;
pub(crate) mod call;
mod conn;
mod control;
mod ctl_queue;
pub(crate) mod deadline;
mod direct;
mod expiry;
mod guarded_write;
mod heavy_reply;
mod input;
pub(crate) mod invalidate;
mod io;
mod kept;
mod lateness;
pub(crate) mod memoized;
mod outgoing;
mod panics;
mod pipeline;
mod promise;
mod pushes;
mod reader;
mod reader_lateness;
mod refusal;
mod replies;
mod room;
mod sched;
mod share;
pub(crate) use share::{args_weight, DECODED_ITEM};
mod shared;
mod stall;
pub(crate) mod teardown;
#[cfg(test)]
mod tests_expiry;
#[cfg(test)]
mod tests_give_back;
#[cfg(test)]
mod tests_input;
#[cfg(test)]
mod tests_memory;
#[cfg(test)]
mod tests_replies;
#[cfg(test)]
mod tests_wake;
mod users;
pub(crate) mod io_types {
    #[cfg(feature = "websocket")]
    pub(crate) use super::budget::{OwnRoom, SMALL_FRAME};
    #[cfg(feature = "websocket")]
    pub(crate) use super::input::DRAIN_BYTES;
    pub(crate) use super::input::{BoxRead, Fd, Plain, Socket, Watch};
    pub(crate) use super::io::BoxWrite;
    #[cfg(feature = "websocket")]
    pub(crate) use super::refusal::{is_refusal, refusal};
    /// Told by the driver when the connection is open (handshake and
    /// authentication done), with the memory budget it counts against and
    /// the reader's credit (`Shared::read_credit`): a transport that
    /// bounds what it reads before then (`transport/ws_meter.rs`) counts
    /// it in the budget from then on. It returns what the reader asks
    /// about a message the transport gathers ([`Gathering`]), if it does.
    pub(crate) type OnOpen = std::sync::Arc<
        dyn Fn(
                &std::sync::Arc<super::Budget>,
                &std::sync::Arc<std::sync::atomic::AtomicUsize>,
            ) -> Option<std::sync::Arc<dyn Gathering>>
            + Send
            + Sync,
    >;

    /// A transport that gathers input before the reader sees any of it (a
    /// WebSocket message in fragments, `transport/ws_meter.rs`; a TLS
    /// record or handshake message, `transport/tls_counted.rs`), counting
    /// it in the budget as it comes: the reader holds its rest to the pace
    /// of a frame's (`stall.rs`).
    pub(crate) trait Gathering: Send + Sync {
        /// What it holds now, counted in the budget (0: nothing).
        fn held(&self) -> usize;

        /// The bytes of data read so far on the connection (a count that
        /// only grows), by which the pace is judged.
        fn progress(&self) -> usize;

        /// If anything is held: that count, and the progress.
        fn partial(&self) -> Option<(usize, usize)> {
            let held = self.held();
            (held > 0).then(|| (held, self.progress()))
        }

        /// Whether a message's first frame waits for room in the budget
        /// (nothing of its message counted yet): held back by the server,
        /// as a frame waiting for its reservation is over TCP, so the
        /// idle check treats the connection as paused, not idle.
        fn waits_for_room(&self) -> bool;
    }

    /// Two transports that gather, one over the other (WebSocket over
    /// TLS): what both hold, judged by the outer one's data (the inner
    /// one's bytes include the outer one's control frames).
    #[cfg(all(feature = "websocket", feature = "tls"))]
    pub(crate) struct Layered {
        pub(crate) outer: std::sync::Arc<dyn Gathering>,
        pub(crate) inner: std::sync::Arc<dyn Gathering>,
    }

    #[cfg(all(feature = "websocket", feature = "tls"))]
    impl Gathering for Layered {
        fn held(&self) -> usize {
            self.outer.held().saturating_add(self.inner.held())
        }

        fn progress(&self) -> usize {
            self.outer.progress()
        }

        fn waits_for_room(&self) -> bool {
            self.outer.waits_for_room() || self.inner.waits_for_room()
        }
    }
}

pub(crate) use blocking_pool::ServerBlocking;
pub use conn::{Connection, ConnectionBuilder};
pub(crate) use control::Held;
pub(crate) use deadline::{current_deadline, scope as deadline_scope};
pub use deadline::{remaining, with_timeout};
pub(crate) use input::{start_watching, Input};
pub use promise::Promise;
pub(crate) use sched::Sched;
pub(crate) use shared::Shared;
