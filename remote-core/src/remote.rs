//! Capability handles and the dispatch interface generated code implements.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, RefTag};
use crate::schema::{SchemaBuilder, Ty};
use crate::{Error, Wire};

/// A boxed, `Send` future: what remote trait methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A remote interface: implemented by `#[remote]` for `dyn YourTrait`.
///
/// Connects a trait object type to its proxy and dispatch table. You do not
/// implement it by hand.
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
    /// The handle inside `this`, if `this` is a proxy.
    fn handle(this: &Self) -> Option<&Handle>;
    /// Defines this interface in a schema and returns its `Ty::Capability`.
    fn describe(b: &mut SchemaBuilder) -> Ty;
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
    fn call(&self, method: &str, args: Args, cx: CallCx) -> Result<CallFuture, Error>;
}

/// The future of one incoming call.
pub type CallFuture = BoxFuture<'static, Reply>;

/// A handle to an object that may live in this process or in a peer.
///
/// `Remote<dyn Chat>` derefs to `dyn Chat`, so code calls its methods the
/// same way whether the object is local or remote. It crosses a connection by
/// reference: the receiver gets a proxy, and the owner keeps the object alive
/// while any peer holds one. Cloning is cheap (an `Arc` clone).
///
/// ```
/// use std::sync::Arc;
/// use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
///
/// #[remote]
/// pub trait Listener {
///     async fn said(&self, text: String) -> Result<(), Error>;
/// }
/// #[remote]
/// pub trait Room {
///     async fn join(&self, who: Remote<dyn Listener>) -> Result<(), Error>;
/// }
///
/// struct Shout;
/// #[remote]
/// impl Room for Shout {
///     async fn join(&self, who: Remote<dyn Listener>) -> Result<(), Error> {
///         who.said("welcome".into()).await // calls back into the peer
///     }
/// }
///
/// struct Print;
/// #[remote]
/// impl Listener for Print {
///     async fn said(&self, text: String) -> Result<(), Error> {
///         assert_eq!(text, "welcome");
///         Ok(())
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Error> {
/// let room: Remote<dyn Room> = Remote::new(Arc::new(Shout));
/// let (_server, client) = Connection::pair(ConnectionBuilder::new().serve(room), ConnectionBuilder::new()).await?;
/// let listener: Remote<dyn Listener> = Remote::new(Arc::new(Print));
/// client.root::<dyn Room>().join(listener).await?; // passed by reference
/// # Ok(()) }
/// ```
pub struct Remote<T: ?Sized> {
    inner: Arc<T>,
}

impl<T: ?Sized> Clone for Remote<T> {
    fn clone(&self) -> Self {
        Remote {
            inner: self.inner.clone(),
        }
    }
}

impl<T: ?Sized> Deref for Remote<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized + Interface> fmt::Debug for Remote<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match T::handle(&self.inner) {
            Some(h) => write!(
                f,
                "Remote<{}>(remote #{} on {:?})",
                T::name(),
                h.object_id(),
                h.connection()
            ),
            None => write!(f, "Remote<{}>(local)", T::name()),
        }
    }
}

impl<T: ?Sized + Interface> Remote<T> {
    /// Wraps a local object so it can be passed by reference.
    pub fn new(obj: Arc<T>) -> Self {
        Remote { inner: obj }
    }

    /// The shared pointer inside.
    pub fn as_arc(&self) -> &Arc<T> {
        &self.inner
    }

    /// The shared pointer inside.
    pub fn into_arc(self) -> Arc<T> {
        self.inner
    }

    /// Whether this is a proxy for an object in a peer.
    pub fn is_remote(&self) -> bool {
        T::handle(&self.inner).is_some()
    }

    /// The proxy's handle, if this is a proxy.
    pub fn handle(&self) -> Option<&Handle> {
        T::handle(&self.inner)
    }

    /// Whether two handles point to the same object (same allocation, or
    /// proxies for the same remote object).
    pub fn same_object(&self, other: &Self) -> bool {
        match (T::handle(&self.inner), T::handle(&other.inner)) {
            (Some(a), Some(b)) => a.same_target(b),
            (None, None) => Arc::ptr_eq(&self.inner, &other.inner),
            _ => false,
        }
    }
}

impl<T: ?Sized + Interface> From<Arc<T>> for Remote<T> {
    fn from(obj: Arc<T>) -> Self {
        Remote::new(obj)
    }
}

impl<T: ?Sized + Interface> Serialize for Remote<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (tag, id) = codec::export::<T>(&self.inner).map_err(S::Error::custom)?;
        codec::serialize_ref(s, tag, id)
    }
}

impl<'de, T: ?Sized + Interface> Deserialize<'de> for Remote<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (tag, id) = codec::deserialize_ref(d)?;
        let inner = match tag {
            RefTag::SenderExport => codec::import::<T>(id),
            RefTag::ReceiverOwn => codec::own::<T>(id),
        };
        inner
            .map(|inner| Remote { inner })
            .map_err(D::Error::custom)
    }
}

impl<T: ?Sized + Interface> Wire for Remote<T> {
    fn describe(b: &mut SchemaBuilder) -> Ty {
        T::describe(b)
    }
}

pub use crate::driver::call::{Args, CallCx, Handle, Reply};
