//! Who is on the other end of a connection: its address, its TLS client
//! identity, and the identity its authentication produced. A handler
//! finds out with [`Peer::current`] (`ambient.rs`).

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::transport::TlsIdentity;
use crate::Priority;

/// The peer of one connection, as known once its handshake completed.
/// Cheap to clone.
///
/// A server's root factory receives it ([`Server::serve`](crate::Server::serve)),
/// [`Connection::peer_info`](crate::Connection::peer_info) returns it, and a
/// method handler reads it with [`Peer::current`] (or
/// `CallCx::peer` in a hand-written [`Dispatch`](crate::Dispatch)).
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    tls: Option<TlsIdentity>,
    user: Option<String>,
    identity: Option<Arc<dyn Any + Send + Sync>>,
    /// The connection's [`Priority`], as a `u8`.
    priority: AtomicU8,
    /// The connection's `Limits::max_frame_len`: what a reply to it may
    /// hold (collection pages stay within half of it).
    max_frame_len: usize,
    /// Counts bytes held for the peer outside any call in its connection's
    /// memory budget, if it has room ([`Peer::try_hold`]).
    hold: Option<HoldFn>,
}

/// Counts `n` bytes in a memory budget if it has room, until the returned
/// guard is dropped; `Err` with the bound it would pass if not.
pub(crate) type HoldFn = Arc<dyn Fn(usize) -> Result<Box<dyn Send>, usize> + Send + Sync>;

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.inner.addr)
            .field("tls", &self.inner.tls)
            .field("user", &self.inner.user)
            .field("authenticated", &self.is_authenticated())
            .field("priority", &self.priority())
            .finish()
    }
}

impl Peer {
    pub(crate) fn new(
        addr: String,
        tls: Option<TlsIdentity>,
        authenticated: Option<(String, Arc<dyn Any + Send + Sync>)>,
        max_frame_len: usize,
        hold: Option<HoldFn>,
    ) -> Peer {
        let (user, identity) = match authenticated {
            Some((u, i)) => (Some(u), Some(i)),
            None => (None, None),
        };
        Peer {
            inner: Arc::new(Inner {
                addr,
                tls,
                user,
                identity,
                priority: AtomicU8::new(Priority::Normal as u8),
                max_frame_len,
                hold,
            }),
        }
    }

    /// Counts `n` bytes held for this peer between its calls (a stream's
    /// item kept for its next pull) in its connection's memory budget, if
    /// that has room, until the guard returned is dropped (`Ok(None)`:
    /// nothing to count in, a peer not of a connection). `Err` with the
    /// bound it would pass when there is no room.
    pub(crate) fn try_hold(&self, n: usize) -> Result<Option<Box<dyn Send>>, usize> {
        match &self.inner.hold {
            Some(hold) => hold(n).map(Some),
            None => Ok(None),
        }
    }

    /// The connection's frame limit (`Limits::max_frame_len`).
    pub(crate) fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len
    }

    /// The peer's address (`tcp://1.2.3.4:5678`) or a description of the
    /// transport (`memory`, `stdio`, `child process 42`).
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The verified TLS client certificate, on a mutual-TLS connection.
    pub fn tls_identity(&self) -> Option<&TlsIdentity> {
        self.inner.tls.as_ref()
    }

    /// The user name the peer proved it holds the key of, if this side
    /// required authentication.
    pub fn user(&self) -> Option<&str> {
        self.inner.user.as_deref()
    }

    /// Whether the peer authenticated (proved it holds a key this side's
    /// authenticator accepted).
    pub fn is_authenticated(&self) -> bool {
        self.inner.identity.is_some()
    }

    /// The identity the authenticator returned for this peer, if it
    /// authenticated and the identity is a `T`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> remote_core::Result<()> {
    /// use remote_core::auth::Key;
    /// use remote_core::{Connection, ConnectionBuilder};
    /// #[derive(Debug, PartialEq)]
    /// struct User { id: u32, admin: bool }
    /// let key = Key::new(*b"a 32-byte key for alice, example");
    /// let server = ConnectionBuilder::new().authenticate({
    ///     let key = key.clone();
    ///     move |user: &str| (user == "alice").then(|| (key.clone(), User { id: 7, admin: false }))
    /// });
    /// let client = ConnectionBuilder::new().credentials("alice", key);
    /// let (_c, s) = Connection::pair(client, server).await?;
    /// assert_eq!(s.peer_info().identity::<User>(), Some(&User { id: 7, admin: false }));
    /// assert_eq!(s.peer_info().user(), Some("alice"));
    /// # Ok(()) }
    /// ```
    pub fn identity<T: Any>(&self) -> Option<&T> {
        self.inner.identity.as_deref()?.downcast_ref()
    }

    /// The class this connection's calls wait in when the server's
    /// handlers take turns (see [`Priority`]); `Normal` unless set.
    pub fn priority(&self) -> Priority {
        Priority::from_u8(self.inner.priority.load(Ordering::Relaxed))
    }

    /// Sets the class this connection's calls wait in when the server's
    /// handlers take turns (`Limits::max_running_handlers`), for calls that
    /// start waiting from now on. A server sets it in its root factory
    /// (from the authenticated identity: an administrator above anonymous
    /// peers), or in a handler through [`Peer::current`] (after an in-band
    /// login, say). Every clone of this `Peer` sees the change. A method
    /// marked `#[remote(priority = ..)]` runs in its own class instead.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
    /// use remote_core::{Connection, ConnectionBuilder, Priority};
    /// let (_client, server) =
    ///     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new()).await?;
    /// let peer = server.peer_info();
    /// assert_eq!(peer.priority(), Priority::Normal);
    /// peer.set_priority(Priority::High);
    /// assert_eq!(server.peer_info().priority(), Priority::High);
    /// # Ok(()) }
    /// ```
    pub fn set_priority(&self, priority: Priority) {
        self.inner.priority.store(priority as u8, Ordering::Relaxed);
    }

    /// The identity as a shared value (to keep it beyond the call).
    pub fn identity_arc(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        self.inner.identity.clone()
    }

    /// The authenticated identity of the connection being served, if it
    /// is a `T`: a shortcut for `Peer::current()` and [`identity`](Peer::identity).
    pub fn current_identity<T: Any + Send + Sync>() -> Option<Arc<T>> {
        Peer::current()?.identity_arc()?.downcast().ok()
    }
}
