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

mod builder;
mod events;
mod handle;
mod peers;
mod serve;

pub use builder::ServerBuilder;
pub use events::ServerEvent;
pub use handle::ServerHandle;
pub use serve::Server;
