//! Configuring a connection and running its set-up (transport, handshake,
//! the reader and writer tasks).

use super::*;
use crate::fingerprint::RootInfo;

/// Makes a connection's root once its peer is known (a server's factory).
pub(crate) type RootFactory = Arc<dyn Fn(&Peer) -> Arc<dyn Dispatch> + Send + Sync>;

/// Configures a connection: what it serves, its limits, how it
/// authenticates.
///
/// ```
/// use std::time::Duration;
/// use remote_core::auth::Key;
/// use remote_core::collections::{RemoteList, SharedVec};
/// use remote_core::{Connection, ConnectionBuilder, Limits};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// let list = SharedVec::<u64>::new();
/// let key = Key::random()?;
/// let strict = Limits { default_deadline: Duration::from_secs(2), ..Limits::default() };
/// let (client, _server) = Connection::pair(
///     ConnectionBuilder::new().limits(strict).credentials("alice", key.clone()),
///     ConnectionBuilder::new().serve(list.remote()).shared_secret(key),
/// )
/// .await?;
/// client.root::<dyn RemoteList<u64>>().push(1).await?;
/// assert_eq!(list.snapshot(), vec![1]);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct ConnectionBuilder {
    pub(crate) limits: Limits,
    pub(crate) root: Option<Arc<dyn Dispatch>>,
    /// Makes the root after the handshake (instead of `root`).
    pub(crate) root_factory: Option<RootFactory>,
    pub(crate) auth: Side,
    /// Blocking slots shared with the other connections of a server; a
    /// standalone connection gets its own group.
    pub(crate) server_blocking: Option<Arc<ServerBlocking>>,
    /// The blocking slots of this connection's peer address (a server's
    /// TCP, TLS and wss connections).
    pub(crate) peer_blocking: Option<Arc<tokio::sync::Semaphore>>,
    /// Run turns shared with the other connections of a server; a
    /// standalone connection gets its own.
    pub(crate) sched: Option<Arc<Sched>>,
    /// The memory budget shared with other connections (a server's); a
    /// standalone connection makes its own from `limits.memory_budget`.
    pub(crate) budget: Option<Arc<Budget>>,
    /// The count of exports shared with other connections (a server's,
    /// `max_server_exports` and `max_exports_per_peer`); a standalone
    /// connection has only `max_exports`.
    pub(crate) export_pool: Option<Arc<crate::proto::CountPool>>,
    /// The count of kept answers shared with other connections (a
    /// server's, `max_kept_answers` and `max_kept_answers_per_peer`); a
    /// standalone connection has only `max_calls_in_flight`.
    pub(crate) kept_pool: Option<Arc<crate::proto::CountPool>>,
    /// The memo cache shared with other connections (a server's); a
    /// standalone connection makes its own on first use.
    pub(crate) memo: Option<Arc<crate::memo::MemoCache>>,
    /// The bound the client caches of a server's connections share
    /// (`server_cache_max_bytes`); a standalone connection's cache has
    /// only its own.
    pub(crate) cache_pool: Option<Arc<crate::weighed::Pool>>,
    /// Whether a pending write tells that the peer reads nothing (a
    /// server's TCP connections, `transport/progress.rs`).
    pub(crate) writes_show_reading: bool,
    /// Held until the connection's reader and writer tasks ended (a
    /// server's slot, `driver/teardown.rs`).
    pub(crate) io_hold: Option<crate::driver::teardown::IoHold>,
    /// Accepted by a server.
    pub(crate) server_side: bool,
    /// TLS settings for `tls://` and `wss://` addresses.
    pub(crate) tls: ClientTls,
    /// The peer's verified certificate, set by the transport that carried
    /// this connection before [`over_boxed`](ConnectionBuilder::over_boxed).
    pub(crate) tls_identity: Option<TlsIdentity>,
    /// The TLS session's channel binding, set with `tls_identity`: bound
    /// into the authentication proofs (PROTOCOL.md §7.1).
    pub(crate) channel_binding: Option<[u8; 32]>,
    /// The server's totals this connection's counters are summed into.
    pub(crate) server_counters: Option<Arc<crate::stats::Totals>>,
    /// The interface served as the root, announced in our hello.
    pub(crate) root_info: Option<RootInfo>,
    /// The server's missed invalidation acknowledgements per peer address
    /// (`pushes.rs`), shared by its connections.
    pub(crate) peer_misses: Option<Arc<crate::driver::PeerMisses>>,
    /// The peer's address as a server counts it per peer (TCP, TLS and
    /// WebSocket connections).
    pub(crate) peer_addr: Option<std::net::IpAddr>,
    /// Told when the connection is open, set by the transport that
    /// carried it (a WebSocket's read bound, `transport/ws_meter.rs`).
    pub(crate) on_open: Option<crate::driver::io_types::OnOpen>,
    /// When a server accepted the connection's socket (or a client began
    /// to connect): the handshake's `handshake_timeout` counts from here,
    /// so a TLS handshake, a WebSocket upgrade and the hello share one
    /// bound (found by a red-team pass: each had its own, and a `tls://`
    /// peer held its slot for twice the timeout before its hello).
    pub(crate) opened_at: Option<Instant>,
}

impl fmt::Debug for ConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionBuilder")
            .field("limits", &self.limits)
            .field("serves_root", &self.root.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

impl ConnectionBuilder {
    /// Defaults: no root, default limits, no authentication.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `root` as this side's object 0.
    pub fn serve<T: ?Sized + Interface>(mut self, root: Remote<T>) -> Self {
        self.root = Some(T::into_dispatch(root.into_arc()));
        self.root_info = Some(RootInfo::of::<T>());
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Trust roots and an optional client certificate for `tls://` and
    /// `wss://` addresses (see [`TlsClientConfig`](crate::TlsClientConfig)).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: crate::TlsClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects to an address: `tcp://host:port`, `tls://host:port`,
    /// `unix:///path`, `ws://host:port/path` or `wss://host:port/path`.
    /// The TLS ones need [`tls`](ConnectionBuilder::tls).
    ///
    /// The whole opening, from the transport's connect (TCP, then TLS or
    /// the WebSocket upgrade) to the end of the handshake and
    /// authentication, is bounded by one `handshake_timeout`: a server
    /// that never accepts (its SYNs dropped, its accept queue full) fails
    /// the connect with [`Error::Handshake`] then, not after the kernel's
    /// own retries (about two minutes on Linux).
    pub async fn connect(mut self, addr: &str) -> Result<Connection, Error> {
        let started = Instant::now();
        let limit = self.limits.handshake_timeout;
        let deadline = crate::driver::deadline::after(started, limit);
        let dial = crate::transport::dial(addr, &self.limits, &self.tls);
        let d = crate::rt::time::timeout_at(deadline, dial)
            .await
            .map_err(|_| {
                Error::Handshake(format!(
                    "connecting to {addr} did not finish within handshake_timeout = {limit:?}"
                ))
            })??;
        // The hello and authentication get what is left, not a fresh
        // timeout (they had one each: twice the bound over TLS).
        self.opened_at = Some(started);
        self.tls_identity = d.tls_identity;
        self.channel_binding = d.channel_binding;
        self.over_boxed(d.reader, d.writer, d.peer).await
    }

    /// Runs the protocol over any pair of byte streams.
    pub async fn over<R, W>(self, reader: R, writer: W, peer: &str) -> Result<Connection, Error>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        self.over_boxed(Box::new(Plain(reader)), Box::new(writer), peer.to_owned())
            .await
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Serves on this process's own stdin/stdout (the child side of
    /// [`spawn_child`](ConnectionBuilder::spawn_child)).
    pub async fn stdio(self) -> Result<Connection, Error> {
        self.over(tokio::io::stdin(), tokio::io::stdout(), "stdio")
            .await
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Spawns `cmd` with piped stdin/stdout and connects to it. The child
    /// should serve with [`stdio`](ConnectionBuilder::stdio).
    pub async fn spawn_child(
        self,
        mut cmd: tokio::process::Command,
    ) -> Result<(Connection, tokio::process::Child), Error> {
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Io("child has no stdin/stdout pipes".into()));
        };
        let peer = format!("child process {}", child.id().unwrap_or(0));
        let conn = self.over(stdout, stdin, &peer).await?;
        Ok((conn, child))
    }

    pub(crate) async fn over_boxed(
        self,
        reader: BoxRead,
        writer: BoxWrite,
        peer: String,
    ) -> Result<Connection, Error> {
        install_panic_hook();
        let on_open = self.on_open.clone();
        let limits = self.limits.clone();
        let (ctl_tx, ctl_rx) = super::super::ctl_queue::channel();
        let budget = self
            .budget
            .unwrap_or_else(|| Arc::new(Budget::new(limits.memory_budget)));
        let output_share = OutputShare::new(limits.max_frame_len);
        let span = crate::trace::connection_span(&peer, self.server_side);
        let has_root = self.root.is_some() || self.root_factory.is_some();
        let shared = Arc::new_cyclic(|me| Shared {
            output_share,
            core: Mutex::new({
                let mut state = State::new(
                    self.root,
                    limits.clone(),
                    Arc::new(CtlSink {
                        ctl: ctl_tx.clone(),
                        shared: me.clone(),
                    }) as Arc<dyn ReleaseSink>,
                );
                if let Some(pool) = &self.export_pool {
                    state.set_export_pool(pool.share(self.peer_addr));
                }
                if let Some(pool) = &self.kept_pool {
                    state.set_kept_pool(pool.share(self.peer_addr));
                }
                state
            }),
            out: Mutex::new(Default::default()),
            pen: Mutex::new(super::super::direct::Pen::new(writer)),
            deferred: AtomicBool::new(false),
            batch_replies: AtomicUsize::new(0),
            burst: AtomicBool::new(false),
            over_room: Arc::default(),
            out_ready: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
            queued_in: AtomicUsize::new(0),
            queued_out: AtomicUsize::new(0),
            out_charged: AtomicUsize::new(0),
            buffered_input: AtomicUsize::new(0),
            read_credit: Arc::default(),
            gathering: Default::default(),
            kept: Default::default(),
            budget,
            server_side: self.server_side,
            out_waker: futures_util::task::AtomicWaker::new(),
            is_closed: AtomicBool::new(false),
            users: std::sync::atomic::AtomicUsize::new(0),
            serves_root: has_root,
            notifications_answered: std::sync::atomic::AtomicU64::new(0),
            ctl: ctl_tx,
            limits: limits.clone(),
            closed: CancellationToken::new(),
            io_tasks: crate::driver::teardown::IoTasks::new(self.io_hold.clone()),
            close_reason: Mutex::new(None),
            running: Mutex::new(crate::proto::IdMap::default()),
            runtime: crate::rt::current_runtime(),
            peer,
            tls_identity: self.tls_identity,
            info: OnceLock::new(),
            blocking: ConnBlocking::new(
                limits.max_blocking_calls,
                self.peer_blocking,
                self.server_blocking.unwrap_or_else(|| {
                    ServerBlocking::new(
                        limits.max_server_blocking_calls,
                        limits.max_blocking_calls_per_peer,
                    )
                }),
            ),
            cache: std::sync::OnceLock::new(),
            cache_pool: self.cache_pool,
            writes_show_reading: self.writes_show_reading,
            sched: ConnSched::new(
                self.sched
                    .unwrap_or_else(|| Sched::new(limits.max_running_handlers)),
            ),
            meter: Meter::new(self.server_counters.clone()),
            span: span.clone(),
            pushes: super::super::pushes::Pushes::new(),
            peer_misses: self.peer_misses.clone().zip(self.peer_addr),
            memo: self.memo.map(OnceLock::from).unwrap_or_default(),
            peer_root: OnceLock::new(),
            expiry: super::super::expiry::Expiry::new(),
            replies: Default::default(),
        });
        crate::trace::spawn_in(span.clone(), write_loop(shared.clone()));
        // If this future is dropped before the handshake ends (e.g. a
        // timeout around `connect`), close so the writer task ends too.
        let guard = CloseOnDrop(Some(shared.clone()));
        let started = self.opened_at.unwrap_or_else(Instant::now);
        let nonce = crate::auth::proto::nonce()
            .map_err(|e| Error::Io(format!("no randomness for the handshake nonce: {e}")))?;
        let announce = self.root_info.as_ref().map(RootInfo::feature);
        let slot = exchange::hello_slot(&self.auth, &nonce);
        shared.send(&hello(slot.as_deref(), announce.as_deref()))?;

        let mut input = Input::new(reader, shared.clone(), limits.max_handshake_frame_len);
        let deadline = crate::driver::deadline::after(started, limits.handshake_timeout);
        let proven = match handshake(&shared, &mut input, deadline).await {
            Ok(slot) => {
                let run = exchange::run(
                    &shared,
                    &mut input,
                    &self.auth,
                    &nonce,
                    slot.as_deref(),
                    self.channel_binding.as_ref().map_or(&[][..], |b| &b[..]),
                    deadline,
                );
                run.await
            }
            Err(e) => Err(e),
        };
        let proven = match proven {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(name: "remote.handshake_failed", parent: &span, error = %e, "handshake failed");
                shared.disconnect(e.clone());
                return Err(e);
            }
        };
        let info = Peer::new(
            shared.peer.clone(),
            shared.tls_identity.clone(),
            proven,
            shared.limits.max_frame_len,
            Some(crate::driver::heavy_reply::hold_fn(
                &shared.budget,
                &shared.peer,
            )),
        );
        if let Some(user) = info.user() {
            span.record("user", user);
        }
        if let Some(cn) = info.tls_identity().and_then(TlsIdentity::common_name) {
            span.record("tls_client", cn);
        }
        if let Some(factory) = &self.root_factory {
            // The application's code, outside any lock; a panic in it
            // refuses this connection only.
            let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| factory(&info)));
            match made {
                Ok(root) => shared.core().set_root(root),
                Err(_) => {
                    let e = Error::Handshake("the server's root factory panicked".into());
                    let _ = shared.send_goodbye(&e.to_string());
                    shared.disconnect(e.clone());
                    return Err(e);
                }
            }
        }
        let _ = shared.info.set(info);
        super::super::invalidate::register(&shared);
        input.set_max_len(limits.max_frame_len);
        if let Some(gathering) =
            on_open.and_then(|opened| opened(&shared.budget, &shared.read_credit))
        {
            let _ = shared.gathering.set(gathering);
        }
        tracing::info!(name: "remote.connection.opened", parent: &span, "connection opened");
        // Its first user before the reader runs: a frame that makes the
        // reader look for users (`users.rs`) must find this one.
        let conn = Connection {
            shared: UserRef::new(shared.clone()),
        };
        crate::trace::spawn_in(span, read_loop(shared, input, ctl_rx));
        guard.disarm();
        Ok(conn)
    }
}

/// Closes a connection whose set-up was abandoned.
struct CloseOnDrop(Option<Arc<Shared>>);

impl CloseOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.close(Error::ConnectionLost("connection set-up abandoned".into()));
            // The reader never runs: only the writer is left to end.
            shared.io_tasks.one_ended();
        }
    }
}
