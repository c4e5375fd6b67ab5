//! Capability handles: [`Remote`], and how it crosses a connection by
//! reference.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, RefTag};
use crate::interface::{Handle, Interface};
use crate::schema::{SchemaBuilder, Ty};
use crate::Wire;

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

#[diagnostic::do_not_recommend]
impl<T: ?Sized + Interface> Wire for Remote<T> {
    fn describe(b: &mut SchemaBuilder) -> Ty {
        T::describe(b)
    }
}
