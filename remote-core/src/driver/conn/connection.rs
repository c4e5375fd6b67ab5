//! The public handle of a connection.

use super::*;
use crate::fingerprint::{Mismatch, RootInfo};

/// A connection to a peer. Cheap to clone; all clones share it.
///
/// Both sides of a connection are equal: each may serve a root object
/// (object 0) and call the other's. [`close`](Connection::close) closes
/// it at once. It also closes itself, with a goodbye, once every
/// `Connection` clone and every proxy of this side is dropped, unless the
/// peer can still reach this side: while this side serves a root, the
/// peer holds one of its objects (a callback passed to it, say), or a
/// call of the peer's still runs here. It then closes when the last of
/// those ends.
///
/// ```
/// use remote_core::collections::{RemoteMap, SharedMap};
/// use remote_core::{Connection, Server};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// let map = SharedMap::<String, String>::new();
/// let server = Server::bind("tcp://127.0.0.1:0").await?.serve(move |_| map.remote());
///
/// let conn = Connection::connect(server.local_addr()).await?;
/// let kv = conn.root::<dyn RemoteMap<String, String>>(); // the server's root object
/// kv.insert("greeting".into(), "hello".into()).await?;
/// assert_eq!(kv.get("greeting".into()).await?.as_deref(), Some("hello"));
/// conn.close();
/// assert!(kv.len().await.unwrap_err().is_connection_lost());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: UserRef,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl Connection {
    /// Connects to `addr` (`tcp://host:port`, `unix:///path`,
    /// `ws://host:port/path`) serving nothing.
    pub async fn connect(addr: &str) -> Result<Connection, Error> {
        ConnectionBuilder::new().connect(addr).await
    }

    /// A connected in-memory pair; `a` and `b` configure each side.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> remote_core::Result<()> {
    /// use remote_core::{Connection, ConnectionBuilder};
    /// let (a, b) = Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new()).await?;
    /// assert!(!a.is_closed() && !b.is_closed());
    /// # Ok(()) }
    /// ```
    pub async fn pair(
        a: ConnectionBuilder,
        b: ConnectionBuilder,
    ) -> Result<(Connection, Connection), Error> {
        // One pipe per direction, so each side reads from one and writes
        // to the other: its reading and writing halves share no lock (a
        // `tokio::io::split` of one pipe puts both behind one, taken on
        // every read, write and flush). Dropping or shutting down a
        // side's writing half ends the other side's input, as a socket's
        // does.
        let (a_out, b_in) = tokio::io::duplex(64 << 10);
        let (b_out, a_in) = tokio::io::duplex(64 << 10);
        let (ca, cb) = tokio::join!(a.over(a_in, a_out, "memory"), b.over(b_in, b_out, "memory"));
        Ok((ca?, cb?))
    }

    /// A proxy for the peer's root object (object 0).
    ///
    /// When the peer announced its root's interface (this crate does,
    /// PROTOCOL.md §6.2) and it is another interface than `T`, every call
    /// through the proxy fails with [`Error::WrongInterface`] (`the
    /// server's root is `A`, not `B``) and nothing is sent. Another
    /// *version* of `T` (same name, another fingerprint) is accepted, so a
    /// client and a server a compatible change apart keep working (calls
    /// the versions disagree on fail with `bad_arguments` naming the
    /// method); [`try_root`](Connection::try_root) refuses that too. A peer
    /// that announced nothing is not checked.
    pub fn root<T: ?Sized + Interface>(&self) -> Remote<T> {
        match self.peer_root_mismatch::<T>() {
            Some(Mismatch::Interface(why)) => {
                let refused = Error::WrongInterface(why);
                Remote::new(T::proxy(Handle::refused_root(
                    self.shared.arc().clone(),
                    refused,
                )))
            }
            Some(Mismatch::Version(why)) => {
                tracing::debug!(peer = %self.shared.peer(), "{why}; calls may fail");
                Remote::new(T::proxy(Handle::root(self.shared.arc().clone())))
            }
            None => Remote::new(T::proxy(Handle::root(self.shared.arc().clone()))),
        }
    }

    /// How the root the peer announced differs from `T`, if it announced
    /// one and it does.
    fn peer_root_mismatch<T: ?Sized + Interface>(&self) -> Option<Mismatch> {
        let theirs = self.shared.peer_root.get()?;
        theirs.mismatch(&RootInfo::of::<T>())
    }

    /// Like [`root`](Connection::root), but strict and at once: fails with
    /// [`Error::WrongInterface`] when the peer announced a root that is not
    /// exactly `T`: `the server's root is `A`, not `B`` for another
    /// interface, or `the server's `A` differs from this client's
    /// (interface fingerprint ..)` when both sides' definitions of `A`
    /// differ on the wire (methods, argument, result or error types).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
    ///
    /// #[remote]
    /// trait Greeter {
    ///     async fn greet(&self, name: String) -> Result<String, Error>;
    /// }
    /// #[remote]
    /// trait Tally {
    ///     async fn add(&self, n: u64) -> Result<u64, Error>;
    /// }
    /// struct Hi;
    /// #[remote]
    /// impl Greeter for Hi {
    ///     async fn greet(&self, name: String) -> Result<String, Error> {
    ///         Ok(format!("hi {name}"))
    ///     }
    /// }
    ///
    /// fn main() -> remote_core::Result<()> {
    ///     tokio::runtime::Runtime::new()?.block_on(async {
    ///         let hi: Remote<dyn Greeter> = Remote::new(Arc::new(Hi));
    ///         let server = ConnectionBuilder::new().serve(hi);
    ///         let (client, _server) = Connection::pair(ConnectionBuilder::new(), server).await?;
    ///
    ///         let err = client.try_root::<dyn Tally>().unwrap_err();
    ///         assert!(err.is_wrong_interface());
    ///         assert!(err.to_string().contains("the server's root is `Greeter`, not `Tally`"));
    ///
    ///         let greeter = client.try_root::<dyn Greeter>()?;
    ///         assert_eq!(greeter.greet("ann".into()).await?, "hi ann");
    ///         Ok(())
    ///     })
    /// }
    /// ```
    pub fn try_root<T: ?Sized + Interface>(&self) -> Result<Remote<T>, Error> {
        match self.peer_root_mismatch::<T>() {
            Some(m) => Err(Error::WrongInterface(m.into_message())),
            None => Ok(Remote::new(T::proxy(Handle::root(
                self.shared.arc().clone(),
            )))),
        }
    }

    /// Closes the connection: sends a goodbye, fails pending calls, drops
    /// exported objects.
    pub fn close(&self) {
        self.close_saying("closed by peer");
    }

    /// [`close`](Self::close), with `reason` as the goodbye's reason.
    pub(crate) fn close_saying(&self, reason: &str) {
        let _ = self.shared.send_goodbye(reason);
        self.shared
            .close(Error::ConnectionLost("closed locally".into()));
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed.load(Ordering::Acquire)
    }

    /// Waits until the connection is closed, returning why: e.g.
    /// `Error::ConnectionLost("peer closed the connection: <its goodbye
    /// reason>")` when the peer said goodbye (a server shutting down, a
    /// limit it enforced, a failed authentication), `"closed locally"` after
    /// [`close`](Connection::close), or the limit or timeout this side
    /// enforced (`no traffic for idle_timeout = ..`, `keepalive_timeout`,
    /// a protocol violation). Returns at once if it is already closed.
    pub async fn closed(&self) -> Error {
        self.shared.closed.cancelled().await;
        // Give the reader task a moment to record the reason and release.
        self.shared.lost()
    }

    /// A description of the peer (address or transport).
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// The identity in the peer's verified TLS certificate: on a server's
    /// connection the client certificate (mutual TLS, see
    /// [`TlsServerConfig::require_client_cert_pem`](crate::TlsServerConfig::require_client_cert_pem)),
    /// on a client's the server certificate. `None` when the transport is
    /// not TLS, the client presented no certificate, or the client skipped
    /// verification with `danger_accept_any_server_cert`.
    ///
    /// ```no_run
    /// # fn demo(conn: &remote_core::Connection) {
    /// match conn.tls_identity() {
    ///     Some(id) => println!("client {:?} ({})", id.common_name(), id.sha256_hex()),
    ///     None => println!("no client certificate"),
    /// }
    /// # }
    /// ```
    pub fn tls_identity(&self) -> Option<&TlsIdentity> {
        self.shared.tls_identity.as_ref()
    }

    /// Whether the peer authenticated during the handshake (proved it
    /// holds a key this side's [`ConnectionBuilder::authenticate`] accepted).
    pub fn is_authenticated(&self) -> bool {
        self.shared.is_authenticated()
    }

    /// Who the peer is: address, TLS client identity, and the identity
    /// its authentication produced.
    pub fn peer_info(&self) -> Peer {
        self.shared.peer_info()
    }

    /// Objects currently exported to the peer (not counting the root).
    pub fn exported_objects(&self) -> usize {
        self.shared.core().exports().len()
    }

    /// Peer objects currently imported (proxies alive).
    pub fn imported_objects(&self) -> usize {
        self.shared.core().imports().len()
    }

    /// Incoming calls currently running past the frame that started them
    /// (a handler that finishes without waiting, run by the connection's
    /// reader as its frame is handled, is not counted).
    pub fn calls_in_flight(&self) -> usize {
        self.shared.core().calls_in_flight()
    }

    /// Bytes queued for the peer and not yet written (bounded by
    /// `max_write_queue` plus the replies of handlers already running).
    pub fn queued_output_bytes(&self) -> usize {
        self.shared.queued_output()
    }

    /// This connection's counters: incoming calls served, error replies
    /// by kind, bytes in and out, objects exported now (see
    /// [`crate::stats`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
    /// use remote_core::collections::{RemoteList, SharedVec};
    /// use remote_core::{Connection, ConnectionBuilder};
    /// let list = SharedVec::<u8>::new();
    /// let (client, server) =
    ///     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(list.remote()))
    ///         .await?;
    /// client.root::<dyn RemoteList<u8>>().push(7).await?;
    /// let s = server.stats();
    /// assert_eq!((s.calls_started, s.calls_finished), (1, 1));
    /// assert_eq!(client.stats().bytes_out, s.bytes_in);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> crate::Stats {
        let exports = self.exported_objects();
        self.shared.meter.snapshot(exports)
    }

    /// Bytes reserved for partly received frames from the peer.
    pub fn buffered_input_bytes(&self) -> usize {
        self.shared.buffered_input.load(Ordering::Acquire)
    }
}
