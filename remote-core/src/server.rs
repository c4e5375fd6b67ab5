//! Servers: accept connections on an address, give each the root object
//! the `serve` closure returns (and its own tables), enforce limits, shut
//! down gracefully. See [`Server`] for a server whose connections share one
//! object.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::interface::Interface;
use crate::proto::encode;
use crate::transport::Listener;
use crate::{Connection, ConnectionBuilder, Error, Limits, Remote};

/// Configures a [`Server`]: limits for it and each connection, and a check
/// of each client's token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// use remote_core::{Limits, Server};
/// let server = Server::builder()
///     .limits(Limits { max_connections: 16, ..Limits::default() })
///     .authenticate(|token| match token {
///         Some(b"let me in") => Ok(()),
///         _ => Err("unknown token".into()),
///     })
///     .bind("tcp://127.0.0.1:0")
///     .await?;
/// assert!(server.local_addr().starts_with("tcp://127.0.0.1:"));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct ServerBuilder {
    conn: ConnectionBuilder,
}

impl ServerBuilder {
    /// Sets the limits for the server and each connection.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.conn = self.conn.limits(limits);
        self
    }

    /// Checks each client's handshake token; see
    /// [`ConnectionBuilder::authenticate`].
    pub fn authenticate(
        mut self,
        check: impl Fn(Option<&[u8]>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.conn = self.conn.authenticate(check);
        self
    }

    /// Binds `addr` (`tcp://127.0.0.1:0` picks a free port).
    pub async fn bind(self, addr: &str) -> Result<Server, Error> {
        Ok(Server {
            listener: Listener::bind(addr, &self.conn.limits).await?,
            conn: self.conn,
        })
    }
}

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
/// let handle = server.serve(move || Remote::new(counter.clone() as Arc<dyn Counter>));
///
/// let a = Connection::connect(handle.local_addr()).await?.root::<dyn Counter>();
/// let b = Connection::connect(handle.local_addr()).await?.root::<dyn Counter>();
/// assert_eq!(a.bump().await?, 1);
/// assert_eq!(b.bump().await?, 2); // b sees a's bump: same object
/// handle.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    conn: ConnectionBuilder,
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

    /// Starts serving: every connection gets the root `factory` returns.
    pub fn serve<T, F>(self, factory: F) -> ServerHandle
    where
        T: ?Sized + Interface,
        F: Fn() -> Remote<T> + Send + Sync + 'static,
    {
        // One memory budget for every connection of this server.
        let budget = Arc::new(crate::driver::Budget::new(self.conn.limits.memory_budget));
        let mut conn = self.conn;
        conn.budget = Some(budget.clone());
        conn.server_side = true;
        let inner = Arc::new(Inner {
            budget,
            addr: self.listener.local_addr(),
            stop: CancellationToken::new(),
            active: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            idle: tokio::sync::Notify::new(),
            per_peer: Arc::new(Mutex::new(HashMap::new())),
        });
        // Every connection of this server shares one set of blocking slots.
        conn.server_blocking = Some(crate::driver::ServerBlocking::new(
            conn.limits.max_server_blocking_calls,
        ));
        let task = tokio::spawn(accept_loop(self.listener, conn, inner.clone(), move || {
            T::into_dispatch(factory().into_arc())
        }));
        ServerHandle {
            inner,
            task: Some(task),
        }
    }
}

struct Inner {
    budget: Arc<crate::driver::Budget>,
    addr: String,
    stop: CancellationToken,
    active: AtomicUsize,
    conns: Mutex<HashMap<u64, Connection>>,
    next: AtomicU64,
    idle: tokio::sync::Notify,
    /// Open connections per peer address (`max_connections_per_peer`).
    per_peer: Arc<Mutex<PeerCounts>>,
}

type PeerCounts = HashMap<IpAddr, usize>;

/// The key a peer's connections are counted under: the IP address of a TCP
/// peer (its /64 prefix for IPv6, where one host often holds a whole /64),
/// not its port. `None` (not counted per peer) for other transports.
fn peer_key(peer: &str) -> Option<IpAddr> {
    let addr: SocketAddr = peer.strip_prefix("tcp://")?.parse().ok()?;
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
fn refuse(
    r: crate::driver::io_types::BoxRead,
    mut w: crate::driver::io_types::BoxWrite,
    why: String,
) {
    tokio::spawn(async move {
        let frame = encode::goodbye(&why);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = w.write_all(&frame).await;
            let _ = w.shutdown().await;
        })
        .await;
        drop(r);
    });
}

async fn accept_loop(
    listener: Listener,
    conn: ConnectionBuilder,
    inner: Arc<Inner>,
    factory: impl Fn() -> Arc<dyn crate::Dispatch> + Send + Sync + 'static,
) {
    let max = conn.limits.max_connections;
    let max_per_peer = conn.limits.max_connections_per_peer;
    loop {
        let accepted = tokio::select! {
            _ = inner.stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (r, w, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if inner.active.load(Ordering::Acquire) >= max {
            refuse(r, w, format!("limit exceeded: max_connections = {max}"));
            continue;
        }
        let peer_slot = match peer_key(&peer) {
            Some(key) => match PeerSlot::take(&inner.per_peer, key, max_per_peer) {
                Some(slot) => Some(slot),
                None => {
                    refuse(
                        r,
                        w,
                        format!(
                            "limit exceeded: max_connections_per_peer = {max_per_peer} \
                             (connections from {key})"
                        ),
                    );
                    continue;
                }
            },
            None => None,
        };
        inner.active.fetch_add(1, Ordering::AcqRel);
        let mut builder = conn.clone();
        builder.root = Some(factory());
        let inner2 = inner.clone();
        tokio::spawn(async move {
            if let Ok(c) = builder.over_boxed(r, w, peer).await {
                let id = inner2.next.fetch_add(1, Ordering::Relaxed);
                inner2
                    .conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, c.clone());
                if inner2.stop.is_cancelled() {
                    c.close();
                }
                c.closed().await;
                inner2
                    .conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
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
///     .serve(move || list.remote());
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

    /// Bytes of queued output and buffered input held for all connections
    /// now, counted against `Limits::memory_budget`.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.budget.used()
    }

    /// Stops accepting, says goodbye to every client, and waits (up to
    /// `grace`) for their connections to close.
    pub async fn shutdown(mut self, grace: Duration) {
        self.inner.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let conns: Vec<Connection> = self
            .inner
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for c in conns {
            c.close();
        }
        let _ = tokio::time::timeout(grace, async {
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
