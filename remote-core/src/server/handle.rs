//! [`ServerHandle`]: a running server's state, counters and graceful
//! shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::peers::PeerCounts;
use crate::Connection;

pub(super) struct Inner {
    /// Connections accepted and refused; every connection's calls and bytes.
    pub(super) counters: crate::stats::ServerCounters,
    pub(super) budget: Arc<crate::driver::Budget>,
    pub(super) memo: Arc<crate::memo::MemoCache>,
    pub(super) addr: String,
    pub(super) stop: CancellationToken,
    pub(super) active: AtomicUsize,
    pub(super) conns: Mutex<HashMap<u64, Connection>>,
    pub(super) next: AtomicU64,
    pub(super) idle: tokio::sync::Notify,
    /// Open connections per peer address (`max_connections_per_peer`).
    pub(super) per_peer: Arc<Mutex<PeerCounts>>,
    /// Run turns of every connection's handlers.
    pub(super) sched: Arc<crate::driver::Sched>,
}

/// A running server. Dropping it stops accepting (existing connections
/// continue); [`shutdown`](ServerHandle::shutdown) also closes them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// use std::time::Duration;
/// use remote_core::collections::{RemoteList, SharedVec};
/// use remote_core::{Connection, Server};
///
/// let list = SharedVec::<String>::new();
/// let handle = Server::bind("tcp://127.0.0.1:0")
///     .await?
///     .serve(move |_| list.remote());
/// let client = Connection::connect(handle.local_addr()).await?;
/// client.root::<dyn RemoteList<String>>().push("hi".into()).await?;
/// assert_eq!(handle.connections(), 1);
/// handle.shutdown(Duration::from_secs(5)).await; // says goodbye to the client
/// assert!(client.closed().await.is_connection_lost());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ServerHandle {
    pub(super) inner: Arc<Inner>,
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("active", &self.active)
            .finish()
    }
}

impl ServerHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> &str {
        &self.inner.addr
    }

    /// Connections currently held: open ones, and closed ones whose close
    /// still drains the peer's input or writes the goodbye (at most 5 s
    /// after the close; they count in `max_connections` until then).
    pub fn connections(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// The server's counters: connections open, accepted and refused, and
    /// the calls, error replies by kind and bytes of all its connections
    /// (see [`crate::stats`] for an example).
    pub fn stats(&self) -> crate::ServerStats {
        let exports = self
            .inner
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(Connection::exported_objects)
            .sum();
        self.inner.counters.snapshot(self.connections(), exports)
    }

    /// Bytes of queued output, buffered input and running handlers'
    /// arguments held for all connections now, counted against
    /// `Limits::memory_budget`.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.budget.used()
    }

    /// Calls with heavy arguments (counting more than 64 KiB decoded)
    /// waiting for room in `Limits::memory_budget` before they start, in
    /// arrival order (PROTOCOL.md §9): a sign that the budget is too small
    /// for the load, or that a peer holds it.
    pub fn calls_waiting_for_memory(&self) -> usize {
        self.inner.budget.in_line()
    }

    /// Calls read from any connection and waiting for a run turn now
    /// (all `Limits::max_running_handlers` being taken), and started
    /// handlers waiting for their next one. See [`Priority`](crate::Priority).
    pub fn calls_waiting(&self) -> usize {
        self.inner.sched.waiting()
    }

    /// The counters of this server's cache of `#[remote(memoize(..))]`
    /// replies (shared by its connections).
    pub fn memo_stats(&self) -> crate::cache::MemoStats {
        self.inner.memo.stats()
    }

    /// Serves until `signal` completes, then shuts down gracefully
    /// (see [`shutdown`](Self::shutdown)). For Ctrl-C, pass
    /// `async { let _ = tokio::signal::ctrl_c().await; }` (tokio's `signal`
    /// feature; the chat example does); any future will do:
    ///
    /// ```no_run
    /// # async fn demo(handle: remote_core::ServerHandle) {
    /// use std::time::Duration;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// // ... hand `stop` to whatever decides the server is done ...
    /// # drop(stop);
    /// handle
    ///     .run_until(async { let _ = stopped.await; }, Duration::from_secs(10))
    ///     .await;
    /// # }
    /// ```
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>, grace: Duration) {
        signal.await;
        self.shutdown(grace).await;
    }

    /// Graceful shutdown: stops accepting at once (new connections are
    /// refused), lets calls in flight finish for up to `grace`, then says
    /// goodbye to every client (reason `server shutting down`) and waits
    /// (for what is left of `grace`, at least one second) for their
    /// connections to close. Calls still
    /// running at the end of `grace` fail with the connection. Open
    /// connections are not cut off during the grace period: a call they
    /// start then is served too, and the drain ends as soon as no call is
    /// in flight on any connection (or `grace` has passed).
    pub async fn shutdown(mut self, grace: Duration) {
        let end = tokio::time::Instant::now() + grace;
        self.inner.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let conns = || -> Vec<Connection> {
            self.inner
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect()
        };
        // Calls in flight finish (polled: a handler's end has no
        // server-wide notification).
        while tokio::time::Instant::now() < end && conns().iter().any(|c| c.calls_in_flight() > 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for c in conns() {
            c.close_saying("server shutting down");
        }
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(left.max(Duration::from_secs(1)), async {
            while self.inner.active.load(Ordering::Acquire) > 0 {
                let notified = self.inner.idle.notified();
                if self.inner.active.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        })
        .await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}
