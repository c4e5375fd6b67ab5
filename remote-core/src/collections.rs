//! Ready-made remote collections: a shared list and a shared map that peers
//! push to and read, with subscriptions for changes.
//!
//! The owner's headline — "a chat server can be as simple as exposing a
//! list object and letting users append their messages to it" — is
//! [`SharedVec`] served as a connection's root:
//!
//! ```
//! # #[tokio::main] async fn main() -> remote_core::Result<()> {
//! use remote_core::collections::{on_push, RemoteList, SharedVec};
//! use remote_core::{Connection, ConnectionBuilder};
//!
//! let log = SharedVec::<String>::new();
//! let (_server, client) =
//!     Connection::pair(ConnectionBuilder::new().serve(log.remote()), ConnectionBuilder::new()).await?;
//! let chat = client.root::<dyn RemoteList<String>>();
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! chat.subscribe(on_push(move |_, line: String| { let _ = tx.send(line); })).await?;
//! chat.push("hello".to_owned()).await?;
//! assert_eq!(rx.recv().await.as_deref(), Some("hello"));
//! assert_eq!(chat.range(0, 10).await?, vec!["hello".to_owned()]);
//! # Ok(()) }
//! ```
//!
//! Subscribers are notified in order, each through its own bounded queue
//! ([`SUBSCRIBER_QUEUE`] changes): a subscriber that falls that far behind,
//! or whose connection is gone, is dropped, so one slow peer never holds
//! up writers or grows memory without bound.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use crate::stream::RemoteStream;
use crate::{remote, Error, Remote, Wire};

/// Most items one [`RemoteList::range`] or [`RemoteMap::entries`] call returns.
pub const MAX_PAGE: u64 = 1024;
/// Changes queued per subscriber before it is dropped as too slow.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// A list that peers append to and read.
#[remote]
pub trait RemoteList<T: Wire + Clone + Sync> {
    /// Appends `item`; returns its index.
    async fn push(&self, item: T) -> Result<u64, Error>;
    /// The item at `index`, if any.
    async fn get(&self, index: u64) -> Result<Option<T>, Error>;
    /// Number of items.
    async fn len(&self) -> Result<u64, Error>;
    /// Items `start..end` (at most [`MAX_PAGE`] of them).
    async fn range(&self, start: u64, end: u64) -> Result<Vec<T>, Error>;
    /// Streams every item from `start` on, as of now, lazily.
    async fn iter(&self, start: u64) -> Result<RemoteStream<T>, Error>;
    /// Calls `listener.pushed` for every item appended from now on.
    async fn subscribe(&self, listener: Remote<dyn ListListener<T>>) -> Result<(), Error>;
}

/// Receives a [`RemoteList`]'s appends.
#[remote]
pub trait ListListener<T: Wire + Clone + Sync> {
    /// `item` was appended at `index`.
    async fn pushed(&self, index: u64, item: T) -> Result<(), Error>;
}

/// A map that peers write and read.
#[remote]
pub trait RemoteMap<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> {
    /// Sets `key` to `value`; returns the previous value.
    async fn insert(&self, key: K, value: V) -> Result<Option<V>, Error>;
    /// The value of `key`.
    async fn get(&self, key: K) -> Result<Option<V>, Error>;
    /// Removes `key`; returns its value.
    async fn remove(&self, key: K) -> Result<Option<V>, Error>;
    /// Number of entries.
    async fn len(&self) -> Result<u64, Error>;
    /// Up to [`MAX_PAGE`] entries with keys after `after` (all from the start if `None`), in key order.
    async fn entries(&self, after: Option<K>) -> Result<Vec<(K, V)>, Error>;
    /// Calls `listener.changed` for every change from now on.
    async fn subscribe(&self, listener: Remote<dyn MapListener<K, V>>) -> Result<(), Error>;
}

/// Receives a [`RemoteMap`]'s changes.
#[remote]
pub trait MapListener<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> {
    /// `key` now maps to `value` (`None`: removed).
    async fn changed(&self, key: K, value: Option<V>) -> Result<(), Error>;
}

/// Fans changes out to subscribers, each through an ordered, bounded queue.
struct Subscribers<E> {
    queues: Mutex<Vec<tokio::sync::mpsc::Sender<E>>>,
}

impl<E: Send + 'static> Subscribers<E> {
    fn new() -> Self {
        Subscribers {
            queues: Mutex::new(Vec::new()),
        }
    }

    fn add<F, Fut>(&self, deliver: F)
    where
        F: Fn(E) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), Error>> + Send,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<E>(SUBSCRIBER_QUEUE);
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if deliver(e).await.is_err() {
                    break; // gone or failing: unsubscribe
                }
            }
        });
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
    }

    /// Queues `make()` for every subscriber, dropping the full or closed ones.
    fn notify(&self, make: impl Fn() -> E) {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|q| q.try_send(make()).is_ok());
    }

    fn len(&self) -> usize {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A local list served as a [`RemoteList`].
pub struct SharedVec<T> {
    items: RwLock<Vec<T>>,
    subscribers: Subscribers<(u64, T)>,
}

impl<T: Wire + Clone + Sync> SharedVec<T> {
    /// An empty list, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(SharedVec {
            items: RwLock::new(Vec::new()),
            subscribers: Subscribers::new(),
        })
    }

    /// A handle to serve or pass to peers.
    pub fn remote(self: &Arc<Self>) -> Remote<dyn RemoteList<T>> {
        Remote::new(self.clone() as Arc<dyn RemoteList<T>>)
    }

    /// A copy of the items.
    pub fn snapshot(&self) -> Vec<T> {
        self.items.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Current subscribers.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    fn push_local(&self, item: T) -> u64 {
        let mut items = self.items.write().unwrap_or_else(|p| p.into_inner());
        let index = items.len() as u64;
        // Queued while the list is locked: every subscriber sees appends in
        // index order.
        self.subscribers.notify(|| (index, item.clone()));
        items.push(item);
        index
    }
}

impl<T> fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.items.read().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("SharedVec").field("len", &len).finish()
    }
}

#[remote]
impl<T: Wire + Clone + Sync> RemoteList<T> for SharedVec<T> {
    async fn push(&self, item: T) -> Result<u64, Error> {
        Ok(self.push_local(item))
    }
    async fn get(&self, index: u64) -> Result<Option<T>, Error> {
        let items = self.items.read().unwrap_or_else(|p| p.into_inner());
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| items.get(i))
            .cloned())
    }
    async fn len(&self) -> Result<u64, Error> {
        Ok(self.items.read().unwrap_or_else(|p| p.into_inner()).len() as u64)
    }
    async fn range(&self, start: u64, end: u64) -> Result<Vec<T>, Error> {
        let items = self.items.read().unwrap_or_else(|p| p.into_inner());
        let len = items.len() as u64;
        let end = end.min(len).min(start.saturating_add(MAX_PAGE));
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(items[start as usize..end as usize].to_vec())
    }
    async fn iter(&self, start: u64) -> Result<RemoteStream<T>, Error> {
        let items = self.items.read().unwrap_or_else(|p| p.into_inner());
        let from = (start.min(items.len() as u64)) as usize;
        Ok(RemoteStream::from_items(items[from..].to_vec()))
    }
    async fn subscribe(&self, listener: Remote<dyn ListListener<T>>) -> Result<(), Error> {
        self.subscribers.add(move |(i, item)| {
            let l = listener.clone();
            async move { l.pushed(i, item).await }
        });
        Ok(())
    }
}

/// A local map served as a [`RemoteMap`].
pub struct SharedMap<K, V> {
    entries: RwLock<BTreeMap<K, V>>,
    subscribers: Subscribers<(K, Option<V>)>,
}

impl<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> SharedMap<K, V> {
    /// An empty map, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(SharedMap {
            entries: RwLock::new(BTreeMap::new()),
            subscribers: Subscribers::new(),
        })
    }

    /// A handle to serve or pass to peers.
    pub fn remote(self: &Arc<Self>) -> Remote<dyn RemoteMap<K, V>> {
        Remote::new(self.clone() as Arc<dyn RemoteMap<K, V>>)
    }

    /// A copy of the entries.
    pub fn snapshot(&self) -> BTreeMap<K, V> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn change(&self, key: K, value: Option<V>) -> Option<V> {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.subscribers.notify(|| (key.clone(), value.clone()));
        match value {
            Some(v) => map.insert(key, v),
            None => map.remove(&key),
        }
    }
}

impl<K, V> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.entries.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("SharedMap").field("len", &len).finish()
    }
}

#[remote]
impl<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> RemoteMap<K, V> for SharedMap<K, V> {
    async fn insert(&self, key: K, value: V) -> Result<Option<V>, Error> {
        Ok(self.change(key, Some(value)))
    }
    async fn get(&self, key: K) -> Result<Option<V>, Error> {
        Ok(self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned())
    }
    async fn remove(&self, key: K) -> Result<Option<V>, Error> {
        Ok(self.change(key, None))
    }
    async fn len(&self) -> Result<u64, Error> {
        Ok(self.entries.read().unwrap_or_else(|p| p.into_inner()).len() as u64)
    }
    async fn entries(&self, after: Option<K>) -> Result<Vec<(K, V)>, Error> {
        use std::ops::Bound;
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let lower = match &after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        Ok(map
            .range((lower, Bound::Unbounded))
            .take(MAX_PAGE as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    async fn subscribe(&self, listener: Remote<dyn MapListener<K, V>>) -> Result<(), Error> {
        self.subscribers.add(move |(k, v)| {
            let l = listener.clone();
            async move { l.changed(k, v).await }
        });
        Ok(())
    }
}

/// A closure as a [`ListListener`] (plain functions as callbacks).
pub fn on_push<T, F>(f: F) -> Remote<dyn ListListener<T>>
where
    T: Wire + Clone + Sync,
    F: Fn(u64, T) + Send + Sync + 'static,
{
    struct FnListener<F>(F);
    #[remote]
    impl<T: Wire + Clone + Sync, F: Fn(u64, T) + Send + Sync + 'static> ListListener<T>
        for FnListener<F>
    {
        async fn pushed(&self, index: u64, item: T) -> Result<(), Error> {
            (self.0)(index, item);
            Ok(())
        }
    }
    Remote::new(Arc::new(FnListener(f)) as Arc<dyn ListListener<T>>)
}

/// A closure as a [`MapListener`].
pub fn on_change<K, V, F>(f: F) -> Remote<dyn MapListener<K, V>>
where
    K: Wire + Ord + Clone + Sync,
    V: Wire + Clone + Sync,
    F: Fn(K, Option<V>) + Send + Sync + 'static,
{
    struct FnListener<F>(F);
    #[remote]
    impl<K, V, F> MapListener<K, V> for FnListener<F>
    where
        K: Wire + Ord + Clone + Sync,
        V: Wire + Clone + Sync,
        F: Fn(K, Option<V>) + Send + Sync + 'static,
    {
        async fn changed(&self, key: K, value: Option<V>) -> Result<(), Error> {
            (self.0)(key, value);
            Ok(())
        }
    }
    Remote::new(Arc::new(FnListener(f)) as Arc<dyn MapListener<K, V>>)
}
