//! Priorities of incoming calls, for a server whose method handlers take
//! turns (`Limits::max_running_handlers`); see [`Priority`].

/// The class a waiting handler is served in: every waiting `High` one gets
/// a turn before any `Normal` one, every `Normal` one before any `Low` one.
///
/// Every poll of a method handler (its first, inline one included) runs in
/// one of the server's run turns (`Limits::max_running_handlers`, by
/// default one fewer than the CPUs, so a worker thread stays free to read
/// every connection's calls). While turns are free, a handler takes one at
/// once: an uncontended compare-and-swap to take it and one to give it
/// back. When they are all taken, the waiting handlers are served by
/// priority class, highest first, and within a class round-robin between
/// connections: one turn per connection with work waiting, in turn, so a
/// connection flooding calls gets the same share as one sending a single
/// call. With as many turns as the runtime has worker threads (or on a
/// current-thread runtime) turns are rarely all taken, and the order is
/// tokio's.
///
/// A connection's class is [`Peer::priority`](crate::Peer::priority),
/// [`Normal`](Priority::Normal) unless the server sets it (in its root
/// factory, from the authenticated identity, or later in a handler). A
/// method marked `#[remote(priority = high)]` (or `low`, `normal`) runs in
/// that class whatever the connection's.
///
/// ```
/// use remote_core::{remote, Error, Peer, Priority, Remote, Server};
/// # use std::sync::Arc;
///
/// #[remote]
/// pub trait Jobs {
///     async fn submit(&self, job: String) -> Result<u64, Error>;
///     /// Cheap and urgent: served before queued `submit`s.
///     #[remote(priority = high)]
///     async fn health(&self) -> Result<bool, Error>;
/// }
/// # struct Queue;
/// # #[remote] impl Jobs for Queue {
/// #     async fn submit(&self, _job: String) -> Result<u64, Error> { Ok(1) }
/// #     async fn health(&self) -> Result<bool, Error> { Ok(true) }
/// # }
/// # #[derive(Debug)] struct User { admin: bool }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// # let jobs: Arc<dyn Jobs> = Arc::new(Queue);
/// let handle = Server::bind("tcp://127.0.0.1:0").await?.serve(move |peer: &Peer| {
///     // An administrator's calls are served before everybody else's.
///     if peer.identity::<User>().is_some_and(|u| u.admin) {
///         peer.set_priority(Priority::High);
///     }
///     Remote::new(jobs.clone())
/// });
/// # handle.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(()) }
/// ```
///
/// Priorities are this side's policy: they are not sent to the peer and
/// are not part of an interface's schema.
///
/// Strict classes can starve a lower class while a higher one has work:
/// mark only cheap methods `High`, and give `High` connections only to
/// peers that are trusted not to flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum Priority {
    /// Served after everything else (bulk work, anonymous peers).
    Low = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Served before everything else (administrators, health checks).
    High = 2,
}

impl Priority {
    /// The classes, lowest first (index = `self as usize`).
    pub(crate) const COUNT: usize = 3;

    pub(crate) fn from_u8(v: u8) -> Priority {
        match v {
            0 => Priority::Low,
            2 => Priority::High,
            _ => Priority::Normal,
        }
    }
}
