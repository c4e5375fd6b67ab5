//! [`ServerBuilder`]: limits, TLS, authentication and connection events
//! for a [`Server`], and the [`Server`] constructors that start from it.

use std::sync::Arc;

use super::events::{EventHook, ServerEvent};
use super::serve::Server;
use crate::transport::{Listener, ServerTls};
use crate::{ConnectionBuilder, Error, Limits};

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

impl Server {
    /// A builder for limits and authentication.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Binds `addr` with default limits.
    pub async fn bind(addr: &str) -> Result<Server, Error> {
        ServerBuilder::default().bind(addr).await
    }
}
