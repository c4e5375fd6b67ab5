//! The async driver: one task reads and feeds the protocol state machine,
//! one task writes. Everything else (callers, proxies, method handlers)
//! talks to them through the connection's shared state.

pub(crate) mod call;
mod conn;
mod deadline;
mod io;
mod outgoing;
pub(crate) mod io_types {
    pub(crate) use super::io::{BoxRead, BoxWrite};
}

pub use conn::{Connection, ConnectionBuilder};
pub(crate) use conn::{Held, Shared};
pub(crate) use deadline::current_deadline;
pub use deadline::{remaining, with_timeout};
