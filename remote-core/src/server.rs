//! Servers: accept connections on an address, give each the root object
//! the `serve` closure returns (and its own tables), enforce limits, shut
//! down gracefully. See [`Server`] for a server whose connections share one
//! object.
//!
//! ```
//! use remote_core::collections::{RemoteList, SharedVec};
//! use remote_core::{Connection, Server};
//!
//! fn main() -> remote_core::Result<()> {
//!     tokio::runtime::Runtime::new()?.block_on(async {
//!         let list = SharedVec::<String>::new();
//!         let shared = list.clone();
//!         // Every connection gets the same list.
//!         let server = Server::bind("tcp://127.0.0.1:0").await?.serve(move |_| shared.remote());
//!         let client = Connection::connect(server.local_addr()).await?;
//!         client.root::<dyn RemoteList<String>>().push("hello".into()).await?;
//!         assert_eq!(list.snapshot(), ["hello"]);
//!         server.shutdown(std::time::Duration::from_secs(5)).await;
//!         Ok(())
//!     })
//! }
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::interface::Interface;
use crate::proto::encode;
use crate::transport::{Accepted, Listener, ServerTls};
use crate::{Connection, ConnectionBuilder, Error, Limits, Peer, Remote};

/// Configures a [`Server`]: limits for it and each connection, TLS, how
/// clients authenticate, and connection events.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// use remote_core::auth::Key;
/// use remote_core::{Limits, Server};
/// let server = Server::builder()
///     .limits(Limits { max_connections: 16, ..Limits::default() })
///     .shared_secret(Key::random()?)
///     .bind("tcp://127.0.0.1:0")
///     .await?;
/// assert!(server.local_addr().starts_with("tcp://127.0.0.1:"));
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct ServerBuilder {
    conn: ConnectionBuilder,
    tls: ServerTls,
    events: Option<EventHook>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("conn", &self.conn)
            .field("events", &self.events.is_some())
            .finish()
    }
}

impl ServerBuilder {
    /// Sets the limits for the server and each connection.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.conn = self.conn.limits(limits);
        self
    }

    /// Requires every client to prove it holds a user's key before any
    /// call is served; `lookup` gives a user's key and identity. See
    /// [`ConnectionBuilder::authenticate`] and [`crate::auth`].
    pub fn authenticate<I, F>(mut self, lookup: F) -> Self
    where
        I: std::any::Any + Send + Sync,
        F: Fn(&str) -> Option<(crate::auth::Key, I)> + Send + Sync + 'static,
    {
        self.conn = self.conn.authenticate(lookup);
        self
    }

    /// Requires every client to prove it holds one shared `key`; see
    /// [`ConnectionBuilder::shared_secret`].
    pub fn shared_secret(mut self, key: crate::auth::Key) -> Self {
        self.conn = self.conn.shared_secret(key);
        self
    }

    /// Calls `hook` for each [`ServerEvent`]: a connection accepted, a
    /// peer authenticated, a connection closed (with the reason). The hook
    /// runs on the connection's task: keep it short and do not block
    /// (send to a bounded channel with `try_send` to handle events
    /// elsewhere). Nothing is queued, so a slow consumer costs no memory.
    pub fn on_event(mut self, hook: impl Fn(ServerEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(hook));
        self
    }

    /// The certificate (and optional client-certificate check) for
    /// `tls://` and `wss://` addresses; see
    /// [`TlsServerConfig`](crate::TlsServerConfig).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: crate::TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Binds `addr` (`tcp://127.0.0.1:0` picks a free port; `tls://` and
    /// `wss://` need [`tls`](ServerBuilder::tls)).
    pub async fn bind(self, addr: &str) -> Result<Server, Error> {
        Ok(Server {
            listener: Listener::bind(addr, &self.conn.limits, &self.tls).await?,
            conn: self.conn,
            events: self.events,
        })
    }
}

/// What happened to a server's connection, for [`ServerBuilder::on_event`].
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use remote_core::{Connection, Server, ServerEvent};
/// use remote_core::collections::{RemoteList, SharedVec};
///
/// fn main() -> remote_core::Result<()> {
///     tokio::runtime::Runtime::new()?.block_on(async {
///         let seen = Arc::new(Mutex::new(Vec::new()));
///         let log = seen.clone();
///         let list = SharedVec::<u64>::new();
///         let server = Server::builder()
///             .on_event(move |e| {
///                 if let ServerEvent::Connected { .. } = e {
///                     log.lock().unwrap().push("connected");
///                 }
///             })
///             .bind("tcp://127.0.0.1:0")
///             .await?
///             .serve(move |_| list.remote());
///         let client = Connection::connect(server.local_addr()).await?;
///         client.root::<dyn RemoteList<u64>>().push(7).await?;
///         assert_eq!(*seen.lock().unwrap(), ["connected"]);
///         Ok(())
///     })
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A connection was accepted (its handshake has not run yet).
    Connected {
        /// The peer's address.
        addr: String,
    },
    /// A peer proved who it is (only on a server that requires
    /// authentication); the root factory has already run for this peer.
    Authenticated {
        /// The peer, with its user name and identity.
        peer: Peer,
    },
    /// A connection closed: refused (a limit, failed authentication, a
    /// broken handshake) or ended after serving.
    Closed {
        /// The peer's address.
        addr: String,
        /// Why it closed.
        reason: Error,
    },
}

type EventHook = Arc<dyn Fn(ServerEvent) + Send + Sync>;

/// A bound, not yet serving server.
///
/// The `serve` closure runs once per connection. Build the shared state
/// once, outside it, so every connection sees the same object:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use remote_core::{remote, Connection, Error, Remote, Server};
///
/// #[remote]
/// pub trait Counter {
///     async fn bump(&self) -> Result<u64, Error>;
/// }
///
/// #[derive(Default)]
/// struct Shared(AtomicU64);
///
/// #[remote]
/// impl Counter for Shared {
///     async fn bump(&self) -> Result<u64, Error> {
///         Ok(self.0.fetch_add(1, Ordering::SeqCst) + 1)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> remote_core::Result<()> {
/// let server = Server::bind("tcp://127.0.0.1:0").await?;
/// let counter = Arc::new(Shared::default()); // one object for every connection
/// let handle = server.serve(move |_| Remote::new(counter.clone() as Arc<dyn Counter>));
///
/// let a = Connection::connect(handle.local_addr()).await?.root::<dyn Counter>();
/// let b = Connection::connect(handle.local_addr()).await?.root::<dyn Counter>();
/// assert_eq!(a.bump().await?, 1);
/// assert_eq!(b.bump().await?, 2); // b sees a's bump: same object
/// handle.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct Server {
    listener: Listener,
    conn: ConnectionBuilder,
    events: Option<EventHook>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("conn", &self.conn)
            .finish()
    }
}

impl Server {
    /// A builder for limits and authentication.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Binds `addr` with default limits.
    pub async fn bind(addr: &str) -> Result<Server, Error> {
        ServerBuilder::default().bind(addr).await
    }

    /// The address clients connect to (with the real port).
    pub fn local_addr(&self) -> String {
        self.listener.local_addr()
    }

    /// Starts serving: every connection gets the root `factory` returns
    /// for its [`Peer`] (address, TLS client identity, authenticated
    /// identity), made once the handshake (and authentication) completed.
    /// A server that gives everyone the same kind of root ignores the
    /// argument: `serve(|_| MyRoot::remote())`.
    pub fn serve<T, F>(self, factory: F) -> ServerHandle
    where
        T: ?Sized + Interface,
        F: Fn(&Peer) -> Remote<T> + Send + Sync + 'static,
    {
        // One memory budget for every connection of this server.
        let budget = Arc::new(crate::driver::Budget::new(self.conn.limits.memory_budget));
        let mut conn = self.conn;
        conn.budget = Some(budget.clone());
        // One cache of memoised replies too.
        let memo =
            crate::memo::MemoCache::new(conn.limits.memo_max_entries, conn.limits.memo_max_bytes);
        conn.memo = Some(memo.clone());
        conn.server_side = true;
        // And one set of run turns for their handlers.
        let sched = crate::driver::Sched::new(conn.limits.max_running_handlers);
        conn.sched = Some(sched.clone());
        let counters = crate::stats::ServerCounters::default();
        conn.server_counters = Some(counters.calls.clone());
        let inner = Arc::new(Inner {
            counters,
            budget,
            memo,
            addr: self.listener.local_addr(),
            stop: CancellationToken::new(),
            active: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            idle: tokio::sync::Notify::new(),
            per_peer: Arc::new(Mutex::new(HashMap::new())),
            sched,
        });
        // Every connection of this server shares one set of blocking slots.
        conn.server_blocking = Some(crate::driver::ServerBlocking::new(
            conn.limits.max_server_blocking_calls,
            conn.limits.max_blocking_calls_per_peer,
        ));
        conn.root_info = Some(crate::fingerprint::RootInfo::of::<T>());
        conn.root_factory = Some(Arc::new(move |peer: &Peer| {
            T::into_dispatch(factory(peer).into_arc())
        }));
        let task = tokio::spawn(accept_loop(self.listener, conn, inner.clone(), self.events));
        ServerHandle {
            inner,
            task: Some(task),
        }
    }
}

struct Inner {
    /// Connections accepted and refused; every connection's calls and bytes.
    counters: crate::stats::ServerCounters,
    budget: Arc<crate::driver::Budget>,
    memo: Arc<crate::memo::MemoCache>,
    addr: String,
    stop: CancellationToken,
    active: AtomicUsize,
    conns: Mutex<HashMap<u64, Connection>>,
    next: AtomicU64,
    idle: tokio::sync::Notify,
    /// Open connections per peer address (`max_connections_per_peer`).
    per_peer: Arc<Mutex<PeerCounts>>,
    /// Run turns of every connection's handlers.
    sched: Arc<crate::driver::Sched>,
}

type PeerCounts = HashMap<IpAddr, usize>;

/// The key a peer's connections are counted under: the IP address of a TCP
/// peer (its /64 prefix for IPv6, where one host often holds a whole /64),
/// not its port, over TCP or TLS. `None` (not counted per peer) for other
/// transports.
fn peer_key(peer: &str) -> Option<IpAddr> {
    let rest = ["tcp://", "tls://", "wss://"]
        .iter()
        .find_map(|scheme| peer.strip_prefix(scheme))?;
    let addr: SocketAddr = rest.split('/').next()?.parse().ok()?;
    Some(match addr.ip().to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    })
}

/// One open connection counted for its peer address; uncounted on drop.
struct PeerSlot {
    counts: Arc<Mutex<PeerCounts>>,
    key: IpAddr,
}

impl PeerSlot {
    /// Counts a connection from `key`, or `None` if it has `max` already.
    fn take(counts: &Arc<Mutex<PeerCounts>>, key: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                // Only peers with open connections stay in the map.
                map.remove(&self.key);
            }
        }
    }
}

/// Tells a refused client why (a goodbye instead of hello), then closes.
/// Over TLS the handshake comes first, so the client can read the reason;
/// the whole refusal is bounded by one second.
fn refuse(accepted: Accepted, why: String) {
    tokio::spawn(async move {
        let frame = encode::goodbye(&why);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let Ok(mut o) = accepted.open().await else {
                return;
            };
            let _ = o.writer.write_all(&frame).await;
            let _ = o.writer.shutdown().await;
            drop(o.reader);
        })
        .await;
    });
}

async fn accept_loop(
    listener: Listener,
    conn: ConnectionBuilder,
    inner: Arc<Inner>,
    events: Option<EventHook>,
) {
    let emit = move |e: ServerEvent| {
        if let Some(hook) = &events {
            // A panicking hook must not skip the connection's bookkeeping.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(e)));
        }
    };
    let emit = Arc::new(emit);
    let max = conn.limits.max_connections;
    let max_per_peer = conn.limits.max_connections_per_peer;
    loop {
        let accepted = tokio::select! {
            _ = inner.stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let accepted = match accepted {
            Ok(x) => x,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(name: "remote.accept_failed", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if inner.active.load(Ordering::Acquire) >= max {
            inner.counters.refused.fetch_add(1, Ordering::Relaxed);
            let why = format!("limit exceeded: max_connections = {max}");
            crate::trace::limit_hit(
                "max_connections",
                &format!("{why} (refused {})", accepted.peer),
            );
            refuse(accepted, why);
            continue;
        }
        let key = peer_key(&accepted.peer);
        let peer_slot = match key {
            Some(key) => match PeerSlot::take(&inner.per_peer, key, max_per_peer) {
                Some(slot) => Some(slot),
                None => {
                    inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let why = format!(
                        "limit exceeded: max_connections_per_peer = {max_per_peer} \
                         (connections from {key})"
                    );
                    crate::trace::limit_hit("max_connections_per_peer", &why);
                    refuse(accepted, why);
                    continue;
                }
            },
            None => None,
        };
        inner.active.fetch_add(1, Ordering::AcqRel);
        inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let mut builder = conn.clone();
        builder.peer_blocking = key
            .zip(conn.server_blocking.as_ref())
            .map(|(k, b)| b.for_peer(k));
        let inner2 = inner.clone();
        let emit = emit.clone();
        tokio::spawn(async move {
            let peer = accepted.peer.clone();
            let addr = peer.clone();
            emit(ServerEvent::Connected { addr: addr.clone() });
            let authenticates = matches!(builder.auth, crate::auth::Side::Verify(_));
            // The transport's handshake (TLS) runs here, in the
            // connection's own task, bounded by handshake_timeout.
            let opened = accepted.open().await.inspect_err(|e| {
                tracing::warn!(
                    name: "remote.handshake_failed",
                    peer = %peer,
                    error = %e,
                    "transport handshake failed"
                );
            });
            let conn = match opened {
                Ok(o) => {
                    builder.tls_identity = o.tls_identity;
                    builder.channel_binding = o.channel_binding;
                    builder.over_boxed(o.reader, o.writer, peer).await
                }
                Err(e) => Err(e),
            };
            match conn {
                Err(reason) => emit(ServerEvent::Closed { addr, reason }),
                Ok(c) => {
                    if authenticates {
                        emit(ServerEvent::Authenticated {
                            peer: c.peer_info(),
                        });
                    }
                    let id = inner2.next.fetch_add(1, Ordering::Relaxed);
                    inner2
                        .conns
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, c.clone());
                    if inner2.stop.is_cancelled() {
                        c.close();
                    }
                    let reason = c.closed().await;
                    inner2
                        .conns
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    emit(ServerEvent::Closed { addr, reason });
                }
            }
            // Uncounted for its address before the server's count goes down.
            drop(peer_slot);
            inner2.active.fetch_sub(1, Ordering::AcqRel);
            inner2.idle.notify_waiters();
        });
    }
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
    inner: Arc<Inner>,
    task: Option<tokio::task::JoinHandle<()>>,
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

    /// Connections currently open.
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

    /// Bytes of queued output and buffered input held for all connections
    /// now, counted against `Limits::memory_budget`.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.budget.used()
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
    /// goodbye to every client and waits (for what is left of `grace`, at
    /// least one second) for their connections to close. Calls still
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
            c.close();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_keyed_by_address_not_port() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(peer_key("tcp://10.1.2.3:4000"), Some(v4));
        assert_eq!(peer_key("tcp://10.1.2.3:4001"), Some(v4));
        // An IPv4 peer on a dual-stack listener counts as its IPv4 address.
        assert_eq!(peer_key("tcp://[::ffff:10.1.2.3]:5"), Some(v4));
        // IPv6 by /64 prefix.
        assert_eq!(
            peer_key("tcp://[2001:db8:1:2:aaaa::1]:80"),
            peer_key("tcp://[2001:db8:1:2:bbbb::2]:81")
        );
        assert_ne!(
            peer_key("tcp://[2001:db8:1:2::1]:80"),
            peer_key("tcp://[2001:db8:1:3::1]:80")
        );
        assert_eq!(peer_key("unix:///tmp/s.sock"), None);
    }

    #[test]
    fn a_peer_slot_is_given_back_on_drop() {
        let counts = Arc::new(Mutex::new(PeerCounts::new()));
        let key: IpAddr = "127.0.0.1".parse().unwrap();
        let a = PeerSlot::take(&counts, key, 2).unwrap();
        let _b = PeerSlot::take(&counts, key, 2).unwrap();
        assert!(PeerSlot::take(&counts, key, 2).is_none());
        drop(a);
        let _c = PeerSlot::take(&counts, key, 2).unwrap();
        drop((_b, _c));
        assert!(counts.lock().unwrap().is_empty());
    }
}
