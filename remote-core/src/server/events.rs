//! [`ServerEvent`]: what happened to a server's connection, and the hook
//! that receives them.

use std::sync::Arc;

use crate::{Error, Peer};

/// What happened to a server's connection, for
/// [`ServerBuilder::on_event`](super::ServerBuilder::on_event).
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

pub(super) type EventHook = Arc<dyn Fn(ServerEvent) + Send + Sync>;
