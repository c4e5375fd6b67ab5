//! The interface generated code implements: [`Interface`] ties a
//! `dyn Trait` to its proxy and dispatch table, [`Dispatch`] runs incoming
//! calls. Below both the codec and [`Remote`](crate::Remote), which use it.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::deferred::Deferred;
pub use crate::driver::call::{Args, CallCx, Handle, Reply};
use crate::schema::{SchemaBuilder, Ty};
use crate::Error;

/// A boxed, `Send` future: what remote trait methods return.
///
/// ```
/// use remote_core::BoxFuture;
/// fn answer() -> BoxFuture<'static, u32> {
///     Box::pin(async { 42 })
/// }
/// # let _ = answer();
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A remote interface: implemented by `#[remote]` for `dyn YourTrait`.
///
/// Connects a trait object type to its proxy and dispatch table. You do not
/// implement it by hand.
///
/// ```
/// use remote_core::{remote, Error, Interface};
///
/// #[remote]
/// trait Clock {
///     async fn now_ms(&self) -> Result<u64, Error>;
/// }
/// assert_eq!(<dyn Clock as Interface>::name(), "Clock");
/// ```
pub trait Interface: Send + Sync + 'static {
    /// The interface's name, for errors and logs.
    fn name() -> &'static str;
    /// Wraps a local implementation in its dispatch table.
    fn into_dispatch(this: Arc<Self>) -> Arc<dyn Dispatch>;
    /// Recovers the local implementation from a dispatch table built by
    /// [`into_dispatch`](Interface::into_dispatch), if it is one of ours.
    fn from_dispatch(d: &Arc<dyn Dispatch>) -> Option<Arc<Self>>;
    /// Builds a proxy that sends calls through `handle`.
    fn proxy(handle: Handle) -> Arc<Self>;
    /// An object whose every call waits for `target`, the object a local
    /// call in flight will return, and then runs on it (or fails with that
    /// call's error): what a pipelined call on a local object returns at
    /// once. `#[remote]` generates it.
    #[doc(hidden)]
    fn deferred(target: Deferred<Self>) -> Arc<Self>;
    /// The handle inside `this`, if `this` is a proxy.
    fn handle(this: &Self) -> Option<&Handle>;
    /// Defines this interface in a schema and returns its `Ty::Capability`.
    fn describe(b: &mut SchemaBuilder) -> Ty;
    /// Whether a peer may cache what this interface's methods return:
    /// `#[remote(cache(..))]`, `invalidates(..)` or `memoize(..)` on one of
    /// them (the last two: a peer's version of the trait may cache what
    /// ours memoizes). Then each connection an object of it is exported on
    /// is indexed, so that a write pushes its invalidation there
    /// (CACHING.md). `#[remote]` says; an interface implemented by hand is
    /// taken to have some.
    #[doc(hidden)]
    const CACHED: bool = true;
}

/// The serving side of an interface: runs a named method on encoded
/// arguments.
///
/// `#[remote]` generates one per interface; the runtime calls it for every
/// incoming call. This is the single path by which a peer's message reaches
/// application code.
pub trait Dispatch: Send + Sync + 'static {
    /// The interface's name.
    fn interface_name(&self) -> &'static str;
    /// For [`Interface::from_dispatch`] downcasts.
    fn as_any(&self) -> &dyn Any;
    /// Starts `method` with `args`. Returns an error at once for an unknown
    /// method or arguments that do not decode; otherwise a future that runs
    /// the method and encodes its result with [`CallCx::reply`].
    fn call(&self, method: &str, args: Args<'_>, cx: CallCx) -> Result<CallFuture, Error>;

    /// The class `method` runs in when the server's handlers take turns
    /// (`#[remote(priority = ..)]`); `None`, the default, for the
    /// connection's own ([`Peer::priority`](crate::Peer::priority)). Asked
    /// only when a call has to wait for a turn.
    fn method_priority(&self, method: &str) -> Option<crate::Priority> {
        let _ = method;
        None
    }

    /// The address of the object this dispatches to (what
    /// [`Interface::from_dispatch`] returns points there), if it is one
    /// object: a server finds the connections serving it as their root by
    /// it, when it is written. `#[remote]` generates it; `None`, the
    /// default, makes such a root looked at for every write.
    #[doc(hidden)]
    fn object_addr(&self) -> Option<usize> {
        None
    }
}

/// The future of one incoming call.
pub type CallFuture = BoxFuture<'static, Reply>;
