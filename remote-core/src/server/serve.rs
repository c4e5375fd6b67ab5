//! [`Server`]: a bound server, [`Server::serve`] and the accept loop that
//! admits (or refuses) each connection and runs it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::events::{EventHook, ServerEvent};
use super::handle::{Inner, ServerHandle};
use super::peers::{peer_key, PeerSlot};
use crate::interface::Interface;
use crate::proto::encode;
use crate::transport::{Accepted, Listener};
use crate::{ConnectionBuilder, Peer, Remote};

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
    pub(super) listener: Listener,
    pub(super) conn: ConnectionBuilder,
    pub(super) events: Option<EventHook>,
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
        // Readers that wait for room have their sockets watched for a
        // close by a poller started now, while descriptors are free.
        crate::driver::start_watching();
        // One memory budget for every connection of this server.
        let budget = Arc::new(crate::driver::Budget::new(self.conn.limits.memory_budget));
        let mut conn = self.conn;
        conn.budget = Some(budget.clone());
        // One count of late (or missed) invalidation acknowledgements per
        // peer address, across its connections.
        conn.peer_misses = Some(Arc::default());
        // One count of the objects they export.
        conn.export_pool = Some(crate::proto::CountPool::new(
            conn.limits.max_server_exports,
            conn.limits.max_exports_per_peer,
        ));
        // And of the answers they keep.
        conn.kept_pool = Some(crate::proto::CountPool::with_reserve(
            conn.limits.max_kept_answers,
            conn.limits.max_kept_answers_per_peer,
            crate::proto::RESERVED_KEPT_ANSWERS,
        ));
        // One cache of memoised replies too.
        let memo =
            crate::memo::MemoCache::new(conn.limits.memo_max_entries, conn.limits.memo_max_bytes);
        conn.memo = Some(memo.clone());
        // And one bound on their client caches together.
        conn.cache_pool = Some(crate::weighed::Pool::new(
            conn.limits.server_cache_max_bytes,
        ));
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

/// Refused clients told why at once, per server (see [`refuse`]).
pub(crate) const MAX_REFUSALS: usize = 64;

/// Tells a refused client why (a goodbye instead of hello), then closes.
/// Over TLS the handshake comes first, so the client can read the reason;
/// the whole refusal is bounded by one second. At most [`MAX_REFUSALS`]
/// run at once (each waits for its client's TLS handshake or WebSocket
/// upgrade, holding a socket and the handshake's state): past that, a
/// refused connection is closed at once, without a reason, so a peer
/// opening connections it never completes cannot make the server hold one
/// per connection it opens in a second.
fn refuse(accepted: Accepted, why: String, refusals: &Arc<Semaphore>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        drop(accepted);
        return;
    };
    tokio::spawn(async move {
        let frame = encode::goodbye(&why);
        let within = Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + within;
        let _ = tokio::time::timeout(within, async {
            let Ok(mut o) = accepted.open(deadline).await else {
                return;
            };
            let _ = o.writer.write_all(&frame).await;
            let _ = o.writer.shutdown().await;
            drop(o.reader);
        })
        .await;
        drop(permit);
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
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
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
        let accepted_at = accepted.at;
        if inner.active.load(Ordering::Acquire) >= max {
            inner.counters.refused.fetch_add(1, Ordering::Relaxed);
            let why = format!("limit exceeded: max_connections = {max}");
            crate::trace::limit_hit(
                "max_connections",
                &format!("{why} (refused {})", accepted.peer),
            );
            refuse(accepted, why, &refusals);
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
                    refuse(accepted, why, &refusals);
                    continue;
                }
            },
            None => None,
        };
        inner.active.fetch_add(1, Ordering::AcqRel);
        inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
        // The slot is the socket's, not only the open connection's: given
        // back once the connection's reader and writer tasks have ended
        // (after the close drains the peer's input and writes the goodbye,
        // `driver/teardown.rs`), or here if the connection never got that
        // far.
        let slot = Arc::new(Slot {
            inner: inner.clone(),
            peer: Mutex::new(peer_slot),
        });
        let mut builder = conn.clone();
        builder.io_hold = Some(slot);
        builder.peer_addr = key;
        builder.writes_show_reading = accepted.writes_show_reading;
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
            // connection's own task. It, a WebSocket upgrade and the hello
            // all end within handshake_timeout of the accept.
            let deadline =
                crate::driver::deadline::after(accepted_at, builder.limits.handshake_timeout);
            let opened = accepted.open(deadline).await.inspect_err(|e| {
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
                    builder.on_open = o.on_open;
                    builder.opened_at = Some(accepted_at);
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
                        c.close_saying("server shutting down");
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
        });
    }
}

/// A connection's place in `max_connections` and, for its address, in
/// `max_connections_per_peer`: given back when dropped, by the last of
/// the accept task and the connection's I/O tasks (`IoTasks`).
struct Slot {
    inner: Arc<Inner>,
    peer: Mutex<Option<PeerSlot>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Uncounted for its address before the server's count goes down.
        drop(self.peer.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
        self.inner.idle.notify_waiters();
    }
}
