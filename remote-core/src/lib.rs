//! Typed remote objects for Rust.
//!
//! Put [`#[remote]`](remote) on a trait, serve an implementation on a
//! transport, and in another process use a proxy that implements the same
//! trait by sending the calls over the connection. Plain data crosses by
//! value ([`Wire`]); objects cross by reference ([`Remote`]), and the owner
//! keeps a referenced object alive while any peer holds a proxy.
//!
//! The wire protocol is specified in `PROTOCOL.md` at the repository root.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]

extern crate self as remote_core;

pub mod blocking;
mod bounded;
pub mod cache;
mod codec;
pub mod collections;
mod describe;
pub mod driver;
mod erased;
mod error;
pub mod guide;
pub mod limits;
pub mod proto;
mod remote;
pub mod schema;
pub mod server;
pub mod stream;
pub mod transport;
pub mod wire;

pub use driver::{remaining, with_timeout, Connection, ConnectionBuilder};
pub use error::{Error, RemoteError, RemoteErrorType};
pub use limits::Limits;
pub use remote::{BoxFuture, Dispatch, Handle, Interface, Remote};
pub use server::{Server, ServerBuilder, ServerHandle};
pub use wire::Wire;

#[doc(inline)]
pub use remote_derive::{remote, Wire};

/// Convenience alias for `Result<T, remote_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Items used by code that `#[remote]` and `#[derive(Wire)]` generate. Not a
/// public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::blocking::block_on_call;
    pub use crate::cache::CacheRole;
    pub use crate::describe::{
        describe_interface, error_of, remote_error_ty, unit_ty, DescribeFn, InterfaceDesc,
        MethodDesc, SourceDesc,
    };
    pub use crate::erased::blocking;
    pub use crate::remote::{Args, CallCx, CallFuture, Reply};
    pub use crate::schema::{
        ArgDef, FieldDef, ImplEntry, InterfaceDef, InterfaceEntry, Location, MethodDef,
        SchemaBuilder, Ty, TypeDef, TypeKind, VariantDef,
    };
    pub use crate::{BoxFuture, Dispatch, Error, Handle, Interface, Remote, RemoteErrorType, Wire};
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

    /// Asserts at compile time that a type crosses the wire (for spans in errors).
    pub fn assert_wire<T: Wire>() {}
    /// Asserts at compile time that a type can be a remote method's error.
    pub fn assert_error<E: RemoteErrorType>() {}

    // The three below bound the argument tuple by `Wire` rather than serde's
    // traits, so a non-wire argument type is reported with `Wire`'s message
    // ("cannot cross a remote connection") instead of serde's advice to
    // derive `Serialize`.

    /// [`Handle::call`] for generated proxies.
    pub fn call<A: Wire, T: Wire, E: RemoteErrorType>(
        handle: &Handle,
        method: &'static str,
        args: A,
    ) -> BoxFuture<'static, Result<T, E>> {
        handle.call(method, args)
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
    pub fn decode_args<A: Wire>(args: Args) -> Result<A, Error> {
        args.decode()
    }
}
