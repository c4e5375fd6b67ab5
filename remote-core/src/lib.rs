//! Typed remote objects for Rust.
//!
//! Put [`#[remote]`](remote) on a trait, serve an implementation on a
//! transport, and in another process use a proxy that implements the same
//! trait by sending the calls over the connection. Plain data crosses by
//! value ([`Wire`]); objects cross by reference ([`Remote`]), and the owner
//! keeps a referenced object alive while any peer holds a proxy.
//!
//! A key-value server and its client, in one program:
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use remote_core::{remote, Connection, Error, Remote, Server, Wire};
//!
//! #[derive(Debug, Clone, PartialEq, Wire)]
//! pub struct Entry {
//!     pub key: String,
//!     pub value: String,
//! }
//!
//! #[remote]
//! pub trait Store {
//!     async fn put(&self, entry: Entry) -> Result<(), Error>;
//!     async fn get(&self, key: String) -> Result<Option<Entry>, Error>;
//! }
//!
//! #[derive(Default)]
//! pub struct MemStore(Mutex<HashMap<String, Entry>>);
//!
//! #[remote]
//! impl Store for MemStore {
//!     async fn put(&self, entry: Entry) -> Result<(), Error> {
//!         self.0.lock().unwrap().insert(entry.key.clone(), entry);
//!         Ok(())
//!     }
//!     async fn get(&self, key: String) -> Result<Option<Entry>, Error> {
//!         Ok(self.0.lock().unwrap().get(&key).cloned())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! // Server: one store shared by every connection.
//! let store = Arc::new(MemStore::default());
//! let server = Server::bind("tcp://127.0.0.1:0")
//!     .await?
//!     .serve(move |_| Remote::new(store.clone() as Arc<dyn Store>));
//!
//! // Client: a proxy that implements `Store`.
//! let kv = Connection::connect(server.local_addr()).await?.root::<dyn Store>();
//! let e = Entry { key: "a".into(), value: "1".into() };
//! kv.put(e.clone()).await?;
//! assert_eq!(kv.get("a".into()).await?, Some(e));
//! # Ok(()) }
//! ```
//!
//! Start with the [`guide`]; errors are [`Error`] (a lost connection is an
//! ordinary value); limits are [`Limits`]. The wire protocol is specified
//! in `PROTOCOL.md` at the repository root. Addresses and transports are
//! listed in [`transport`]; TLS (`tls://`, `wss://`, mutual TLS, the
//! caller's certificate identity) is explained in [`transport::tls`].
//! Tracing spans and events, and the counters an operator reads, are in
//! [`observability`].
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]
// The browser build leaves out the server, the native transports and the
// blocking runtime; what only they used is unused there.
#![cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]

extern crate self as remote_core;

mod ambient;
pub mod auth;
pub mod blocking;
mod bounded;
pub mod cache;
mod checked;
mod codec;
pub mod collections;
mod deferred;
mod describe;
mod driver;
mod erased;
mod error;
mod fingerprint;
pub mod guide;
mod held;
mod interface;
pub mod limits;
mod marker;
mod memo;
pub mod observability;
mod peer;
mod per_peer;
mod priority;
/// The sans-IO protocol layer (frames, messages, the connection state
/// machine). Not a public API: it is reachable only for the fuzz targets,
/// benches and tests of this repository, and may change in any release.
#[doc(hidden)]
pub mod proto;
mod remote;
mod rt;
mod weighed;
/// The browser build's own clock and (absent) runtime, which appear in
/// public signatures where native builds name tokio's.
#[cfg(target_arch = "wasm32")]
pub mod web {
    pub use crate::rt::{time::Instant, RuntimeHandle};
}
pub mod schema;
#[cfg(not(target_arch = "wasm32"))]
pub mod server;
pub mod stats;
pub mod stream;
mod trace;
pub mod transport;
pub mod wire;

pub use driver::{remaining, with_timeout, Connection, ConnectionBuilder, Promise};
pub use error::{Error, RemoteError, RemoteErrorType};
pub use interface::{BoxFuture, Dispatch, Handle, Interface};
pub use limits::Limits;
pub use peer::Peer;
pub use priority::Priority;
pub use remote::Remote;
#[cfg(not(target_arch = "wasm32"))]
pub use server::{Server, ServerBuilder, ServerEvent, ServerHandle};
pub use stats::{ServerStats, Stats};
pub use transport::TlsIdentity;
#[cfg(feature = "tls")]
pub use transport::{TlsClientConfig, TlsServerConfig};
pub use wire::Wire;

/// # Example
///
/// ```
/// use std::sync::Arc;
/// use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
///
/// #[remote]
/// pub trait Greeter {
///     async fn greet(&self, name: String) -> Result<String, Error>;
/// }
///
/// pub struct English;
///
/// #[remote] // on the impl block too
/// impl Greeter for English {
///     async fn greet(&self, name: String) -> Result<String, Error> {
///         Ok(format!("hello, {name}"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
/// let served: Remote<dyn Greeter> = Remote::new(Arc::new(English));
/// let (client, _server) =
///     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(served)).await?;
/// let greeter = client.root::<dyn Greeter>(); // a proxy implementing `Greeter`
/// assert_eq!(greeter.greet("ann".into()).await?, "hello, ann");
/// # Ok(()) }
/// ```
///
/// See the [`guide`] for what it generates and the rules it checks.
#[doc(inline)]
pub use remote_derive::remote;

/// # Example
///
/// ```
/// use remote_core::Wire;
///
/// #[derive(Debug, Clone, PartialEq, Wire)]
/// pub enum Shape {
///     Circle { radius: f64 },
///     Square(f64),
/// }
///
/// #[derive(Debug, Clone, PartialEq, Wire)]
/// pub struct Drawing {
///     pub title: String,
///     pub shapes: Vec<Shape>,
/// }
///
/// #[remote_core::remote]
/// pub trait Canvas {
///     async fn area(&self, d: Drawing) -> Result<f64, remote_core::Error>;
/// }
///
/// pub struct Ruler;
///
/// #[remote_core::remote]
/// impl Canvas for Ruler {
///     async fn area(&self, d: Drawing) -> Result<f64, remote_core::Error> {
///         Ok(d.shapes.iter().map(|s| match s {
///             Shape::Circle { radius } => 3.0 * radius * radius,
///             Shape::Square(side) => side * side,
///         }).sum())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// use remote_core::{Connection, ConnectionBuilder, Remote};
/// let served: Remote<dyn Canvas> = Remote::new(std::sync::Arc::new(Ruler));
/// let (client, _server) =
///     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(served)).await?;
/// let d = Drawing { title: "t".into(), shapes: vec![Shape::Square(2.0), Shape::Circle { radius: 1.0 }] };
/// assert_eq!(client.root::<dyn Canvas>().area(d).await?, 7.0);
/// # Ok(()) }
/// ```
///
/// Every field must be `Wire`; see the [`guide`] for generics and options.
#[doc(inline)]
pub use remote_derive::Wire;

/// Convenience alias for `Result<T, remote_core::Error>`.
///
/// ```
/// fn parse_port(s: &str) -> remote_core::Result<u16> {
///     s.parse().map_err(|_| remote_core::Error::Io(format!("bad port {s:?}")))
/// }
/// assert_eq!(parse_port("8080").unwrap(), 8080);
/// assert!(parse_port("x").is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Entry points of the fuzz targets in `fuzz/` for layers that are not
/// otherwise reachable. Not a public API: may change in any release.
#[doc(hidden)]
pub mod __fuzz {
    /// Drives a server's WebSocket input scan and meter with a peer's
    /// bytes in arbitrary reads (`fuzz/fuzz_targets/ws_scan.rs`); panics
    /// if they hold more than their bounds or keep part of the budget.
    #[cfg(feature = "websocket")]
    pub fn ws_scan(data: &[u8]) {
        crate::transport::fuzz_ws_scan(data)
    }
}

/// Items used by code that `#[remote]` and `#[derive(Wire)]` generate. Not a
/// public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::blocking::block_on_call;
    pub use crate::cache::CacheRole;
    pub use crate::checked::{
        Checked, FieldNotWire, FieldProbe, FieldWire, Probe, ViaChecked, ViaUnchecked,
    };
    pub use crate::codec::dispatch_stack::{blocking_on_stack, dispatch_on_stack, future_on_stack};
    pub use crate::codec::stack::{
        decode_on_stack, encode_on_stack, HeldOther, HeldProbe, HeldWire,
    };
    pub use crate::codec::weigh::Buffered;
    pub use crate::deferred::{Deferred, Failed};
    pub use crate::describe::{
        describe_interface, error_of, remote_error_ty, returns_written, unit_ty, DescribeFn,
        InterfaceDesc, MethodDesc, ResultOf, SourceDesc,
    };
    pub use crate::driver::call::IntoReply;
    pub use crate::driver::invalidate::invalidated;
    pub use crate::driver::memoized::memo_lookup;
    pub use crate::erased::blocking;
    pub use crate::interface::{Args, CallCx, CallFuture, Reply};
    pub use crate::marker::{ImplementedWithRemote, InterfaceProxy, RemoteImpl};
    pub use crate::memo::MemoTicket;
    pub use crate::schema::{
        ArgDef, FieldDef, ImplEntry, InterfaceDef, InterfaceEntry, Location, MethodDef,
        SchemaBuilder, Ty, TypeDef, TypeKind, VariantDef,
    };
    pub use crate::{
        BoxFuture, Dispatch, Error, Handle, Interface, Priority, Promise, Remote, RemoteErrorType,
        Wire,
    };
    pub use core::future::Future;
    pub use core::option::Option::{self, None, Some};
    pub use core::pin::Pin;
    pub use core::result::Result::{self, Err, Ok};
    pub use inventory;
    pub use serde;
    pub use std::any::Any;
    pub use std::boxed::Box;
    pub use std::string::{String, ToString};
    pub use std::sync::Arc;
    pub use std::vec::Vec;
    pub use std::{column, concat, file, line, module_path, stringify};

    /// Decodes a value that holds no references (fuzzing and tests).
    pub fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        crate::codec::decode_detached(bytes)
    }

    /// Encodes a value that holds no references (fuzzing and tests).
    pub fn encode_value<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
        crate::codec::encode_detached(value)
    }

    /// Asserts at compile time that a type crosses the wire (for spans in errors).
    pub fn assert_wire<T: Wire>() {}
    /// Asserts at compile time that a type can be a remote method's error.
    pub fn assert_error<E: RemoteErrorType>() {}

    /// The describer of a wire type: the one place a `#[remote]` trait's
    /// expansion requires `T: Wire` outside a `where` clause, so a non-wire
    /// type in a signature is reported once, at the type.
    pub fn describe_wire<T: Wire>(b: &mut SchemaBuilder) -> Ty {
        b.ty::<T>()
    }

    /// The describer of a method's error type (the one place its bound is
    /// required, as [`describe_wire`]).
    pub fn describe_error<E: RemoteErrorType>(b: &mut SchemaBuilder) -> Ty {
        E::describe(b)
    }

    // The three below bound the argument tuple by `Wire` rather than serde's
    // traits, so a non-wire argument type is reported with `Wire`'s message
    // ("cannot cross a remote connection") instead of serde's advice to
    // derive `Serialize`.

    /// [`Handle::call`] for generated proxies, its future borrowing
    /// `handle` (the proxy's, which the method's future borrows anyway)
    /// instead of cloning it.
    pub fn call<'a, A: Wire, T: Wire, E: RemoteErrorType>(
        handle: &'a Handle,
        method: &'static str,
        args: A,
    ) -> BoxFuture<'a, Result<T, E>> {
        handle.call_ref(method, args)
    }

    /// [`Handle::call_blocking`] for generated proxies.
    pub fn call_blocking<A: Wire, T: Wire, E: RemoteErrorType>(
        handle: &Handle,
        method: &'static str,
        args: A,
    ) -> Result<T, E> {
        handle.call_blocking(method, args)
    }

    /// [`Handle::call_with`] for generated proxies of cached and
    /// invalidating methods.
    pub fn call_with<A: Wire, T: Wire, E: RemoteErrorType>(
        handle: &Handle,
        method: &'static str,
        role: &'static crate::cache::CacheRole,
        args: A,
    ) -> BoxFuture<'static, Result<T, E>> {
        handle.call_with(method, role, args)
    }

    /// [`Handle::call_blocking_with`] for generated proxies.
    pub fn call_blocking_with<A: Wire, T: Wire, E: RemoteErrorType>(
        handle: &Handle,
        method: &'static str,
        role: &'static crate::cache::CacheRole,
        args: A,
    ) -> Result<T, E> {
        handle.call_blocking_with(method, role, args)
    }

    /// [`Args::decode`] for generated dispatchers.
    pub fn decode_args<A: Wire>(args: Args<'_>) -> Result<A, Error> {
        args.decode_wire()
    }
}
