//! Authentication without replay: a mutual challenge-response over
//! HMAC-SHA256 run in the handshake, before any call is served.
//!
//! A server (or any side) that calls
//! [`ConnectionBuilder::authenticate`](crate::ConnectionBuilder::authenticate)
//! requires its peer to prove it holds the key of a user; the peer sets
//! [`ConnectionBuilder::credentials`](crate::ConnectionBuilder::credentials).
//! Both send a fresh 32-byte random nonce in their hellos; the checking
//! side proves first (so a client never proves itself to an impostor),
//! then the client; each proof is an HMAC over both nonces, the user name
//! and the role, so a recorded proof is useless on another connection and
//! a proof cannot be reflected back. The key itself never crosses the
//! wire. Over `tls://` and `wss://` both proofs also cover the TLS
//! session's channel binding (RFC 9266 `tls-exporter`), so a relay that
//! terminates TLS on both sides cannot pass the exchange. PROTOCOL.md §7.1
//! gives the bytes; SECURITY.md what it protects against (and what it does
//! not: without TLS, the connection after the handshake is neither
//! encrypted nor integrity-protected).
//!
//! ```
//! # #[tokio::main] async fn main() -> remote_core::Result<()> {
//! use remote_core::auth::Key;
//! use remote_core::{Connection, ConnectionBuilder};
//! let key = Key::new(*b"32 random bytes from your vault!");
//! let (client, server) = Connection::pair(
//!     ConnectionBuilder::new().credentials("ops", key.clone()),
//!     ConnectionBuilder::new().shared_secret(key),
//! )
//! .await?;
//! assert_eq!(server.peer_info().user(), Some("ops"));
//! # let _ = client;
//! # Ok(()) }
//! ```

mod builder;
pub(crate) mod exchange;
pub(crate) mod proto;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A secret key: a shared secret, or one user's key. Use at least 32
/// random bytes: the exchange is not a password protocol, and an
/// eavesdropper who recorded a handshake can test guesses of a weak key
/// offline. Its `Debug` output never shows the bytes.
///
/// ```
/// use remote_core::auth::Key;
/// let key = Key::random()?;
/// assert!(!format!("{key:?}").is_empty());
/// let from_config = Key::new(b"32 bytes of a well-kept secret!!");
/// # let _ = from_config;
/// # Ok::<(), remote_core::Error>(())
/// ```
///
/// Both sides of a connection given the same key, one checking and one
/// proving:
///
/// ```
/// use remote_core::auth::Key;
/// use remote_core::{Connection, ConnectionBuilder};
///
/// fn main() -> remote_core::Result<()> {
///     tokio::runtime::Runtime::new()?.block_on(async {
///         let key = Key::random()?;
///         let (client, server) = Connection::pair(
///             ConnectionBuilder::new().credentials("alice", key.clone()),
///             ConnectionBuilder::new().shared_secret(key),
///         )
///         .await?;
///         assert_eq!(server.peer_info().user(), Some("alice"));
///         # let _ = client;
///         Ok(())
///     })
/// }
/// ```
#[derive(Clone)]
pub struct Key(Arc<[u8]>);

impl Key {
    /// A key from its bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Key {
        Key(bytes.as_ref().into())
    }

    /// A fresh random 32-byte key from the operating system's generator.
    pub fn random() -> Result<Key, crate::Error> {
        let bytes = proto::nonce().map_err(|e| crate::Error::Io(format!("no randomness: {e}")))?;
        Ok(Key::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes, redacted)", self.0.len())
    }
}

/// Looks up a user's key and the identity the application gives them.
pub(crate) type Lookup =
    Arc<dyn Fn(&str) -> Option<(Key, Arc<dyn Any + Send + Sync>)> + Send + Sync>;

/// What this side of a connection does in the authentication exchange.
#[derive(Clone, Default)]
pub(crate) enum Side {
    /// Neither asks for nor offers credentials.
    #[default]
    Open,
    /// Proves it holds `key` for `user`; requires the peer to prove it too.
    Prove { user: String, key: Key },
    /// Requires the peer to prove it holds a key `lookup` returns.
    Verify(Lookup),
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Side::Open => f.write_str("Open"),
            Side::Prove { user, .. } => f.debug_struct("Prove").field("user", user).finish(),
            Side::Verify(_) => f.write_str("Verify"),
        }
    }
}

/// The one message a refused peer gets, whether its user is unknown or its
/// key wrong (the same work is done in both cases).
pub(crate) const REFUSED: &str = "authentication failed: unknown user or wrong key";
