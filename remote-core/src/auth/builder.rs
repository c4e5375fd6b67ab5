//! How a [`ConnectionBuilder`] takes part in the authentication exchange.

use std::any::Any;
use std::sync::Arc;

use super::{Key, Side};
use crate::ConnectionBuilder;

impl ConnectionBuilder {
    /// Proves to the peer that this side holds `key` for `user` (see
    /// [`crate::auth`]), after the peer proved it knows the key too: the
    /// connection fails if the peer does not ask for credentials or cannot
    /// prove it knows the key. The key never crosses the wire. Replaces
    /// and overrides [`authenticate`](Self::authenticate).
    pub fn credentials(mut self, user: impl Into<String>, key: Key) -> Self {
        self.auth = Side::Prove {
            user: user.into(),
            key,
        };
        self
    }

    /// Requires the peer to prove it holds the key of a user: `lookup`
    /// returns that user's key and the identity the application gives them
    /// (any type: a user id, roles), or `None` for an unknown user. A peer
    /// that cannot prove it is refused with
    /// `authentication failed: unknown user or wrong key` (the same message
    /// and the same work for both). The identity is readable from
    /// [`Connection::peer_info`](crate::Connection::peer_info), [`Peer::current`](crate::Peer::current) in a handler, and a
    /// server's root factory. Replaces and overrides
    /// [`credentials`](Self::credentials).
    pub fn authenticate<I, F>(mut self, lookup: F) -> Self
    where
        I: Any + Send + Sync,
        F: Fn(&str) -> Option<(Key, I)> + Send + Sync + 'static,
    {
        self.auth = Side::Verify(Arc::new(move |user: &str| {
            lookup(user).map(|(k, i)| (k, Arc::new(i) as Arc<dyn Any + Send + Sync>))
        }));
        self
    }

    /// Requires the peer to prove it holds the one shared `key` (under any
    /// user name); the identity is the user name as a `String`.
    pub fn shared_secret(self, key: Key) -> Self {
        self.authenticate(move |user: &str| Some((key.clone(), user.to_owned())))
    }
}
