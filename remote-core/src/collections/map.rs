//! [`SharedMap`]: a map served as a [`RemoteMap`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::page::{self, MAX_PAGE};
use super::subscribers::{self, Feed, Next, Subscribers};
use super::{MapListener, RemoteMap, SUBSCRIBER_QUEUE, SUBSCRIBER_QUEUE_BYTES};
use crate::{remote, BoxFuture, Error, Remote, Wire};

/// A local map served as a [`RemoteMap`].
///
/// Its subscribers read one shared log of recent changes: a change is
/// recorded once, whatever the number of subscribers, and only while
/// someone is subscribed. The log forgets changes every subscriber has
/// delivered, and keeps at most [`SUBSCRIBER_QUEUE`] of them, of at most
/// [`SUBSCRIBER_QUEUE_BYTES`] in all: a subscriber that falls further
/// behind is dropped.
///
/// ```
/// use remote_core::collections::{on_change, RemoteMap, SharedMap};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// let prices = SharedMap::<String, u64>::new();
/// let (_server, client) = remote_core::Connection::pair(
///     remote_core::ConnectionBuilder::new().serve(prices.remote()),
///     remote_core::ConnectionBuilder::new(),
/// )
/// .await?;
/// let remote = client.root::<dyn RemoteMap<String, u64>>();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// remote
///     .subscribe(on_change(move |k: String, v: Option<u64>| {
///         let _ = tx.send((k, v));
///     }))
///     .await?;
/// assert_eq!(remote.insert("tea".into(), 3).await?, None);
/// assert_eq!(rx.recv().await, Some(("tea".to_owned(), Some(3))));
/// assert_eq!(prices.snapshot().get("tea"), Some(&3));
/// # Ok(()) }
/// ```
pub struct SharedMap<K, V> {
    inner: Arc<Map<K, V>>,
}

struct Map<K, V> {
    state: RwLock<State<K, V>>,
    subscribers: Subscribers<dyn MapListener<K, V>>,
}

struct State<K, V> {
    entries: BTreeMap<K, V>,
    /// Changes `base..base + log.len()`, oldest first, each with its
    /// weight held decoded (`codec::held_weight`).
    log: VecDeque<((K, Option<V>), usize)>,
    /// The sizes in `log`, summed.
    log_bytes: usize,
    base: u64,
    /// Each subscriber's next change to deliver.
    readers: Vec<Arc<AtomicU64>>,
}

/// Changes between two trims of what every subscriber already delivered.
const TRIM_EVERY: u64 = 32;

impl<K, V> State<K, V> {
    fn head(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// Drops log entries every reader is past, and any beyond the cap.
    fn trim(&mut self) {
        let oldest_needed = self
            .readers
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(self.head());
        while self.base < oldest_needed && !self.log.is_empty() {
            self.pop();
        }
    }

    /// Forgets the oldest change.
    fn pop(&mut self) {
        if let Some((_, size)) = self.log.pop_front() {
            self.log_bytes -= size;
            self.base += 1;
        }
    }
}

impl<K, V> Map<K, V> {
    /// What `f` makes of the change logged at position `at`.
    fn logged<R>(&self, at: u64, f: impl FnOnce(&((K, Option<V>), usize)) -> R) -> Next<R> {
        let s = self.read();
        if at < s.base {
            return Next::Lagged;
        }
        match s.log.get((at - s.base) as usize) {
            Some(entry) => Next::Ready(f(entry)),
            None => Next::NotYet,
        }
    }
    fn read(&self) -> RwLockReadGuard<'_, State<K, V>> {
        // No user code runs under this lock; a change is applied in full
        // or not at all.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, State<K, V>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> SharedMap<K, V> {
    /// An empty map, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(SharedMap {
            inner: Arc::new(Map {
                state: RwLock::new(State {
                    entries: BTreeMap::new(),
                    log: VecDeque::new(),
                    log_bytes: 0,
                    base: 0,
                    readers: Vec::new(),
                }),
                subscribers: Subscribers::new(0),
            }),
        })
    }

    /// A handle to serve or pass to peers.
    pub fn remote(self: &Arc<Self>) -> Remote<dyn RemoteMap<K, V>> {
        Remote::new(self.clone() as Arc<dyn RemoteMap<K, V>>)
    }

    /// A copy of the entries.
    pub fn snapshot(&self) -> BTreeMap<K, V> {
        self.inner.read().entries.clone()
    }

    /// Current subscriptions.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.len()
    }

    fn change(&self, key: K, value: Option<V>) -> Option<V> {
        // Weighed outside the lock (user code: `Serialize`, and
        // `Deserialize` of the copy `codec::held_weight` decodes), if anybody
        // subscribed; a value that cannot be encoded fails its delivery
        // anyway.
        let weigh = || {
            let change = (key.clone(), value.clone());
            let weight = crate::codec::held_weight(&change).unwrap_or(0);
            (change, weight)
        };
        let mut weight = (self.inner.subscribers.len() > 0).then(weigh);
        let (old, head) = {
            let mut s = self.inner.write();
            if weight.is_none() && !s.readers.is_empty() {
                // A subscriber attached since: weighed now, the lock taken
                // again (logged at no weight, a change made as each of many
                // subscribers attached went uncounted).
                drop(s);
                weight = Some(weigh());
                s = self.inner.write();
            }
            if s.readers.is_empty() {
                s.base = s.head() + 1;
                s.log.clear();
                s.log_bytes = 0;
            } else {
                let (change, size) = weight.unwrap_or_else(|| ((key.clone(), value.clone()), 0));
                s.log.push_back((change, size));
                s.log_bytes += size;
                // Their laggards are dropped on their next reads.
                while s.log.len() > SUBSCRIBER_QUEUE
                    || (s.log_bytes > SUBSCRIBER_QUEUE_BYTES && s.log.len() > 1)
                {
                    s.pop();
                }
                if s.head() % TRIM_EVERY == 0 {
                    s.trim();
                }
            }
            let old = match value {
                Some(v) => s.entries.insert(key, v),
                None => s.entries.remove(&key),
            };
            (old, s.head())
        };
        // Outside the lock: subscribers read the change from the log.
        self.inner.subscribers.advance(head);
        old
    }
}

impl<K, V> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.inner.read().entries.len();
        f.debug_struct("SharedMap").field("len", &len).finish()
    }
}

impl<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> Feed for Map<K, V> {
    type Listener = dyn MapListener<K, V>;
    type Event = (K, Option<V>);

    fn subscribers(&self) -> &Subscribers<Self::Listener> {
        &self.subscribers
    }
    fn attach(&self, cursor: &Arc<AtomicU64>) -> u64 {
        let mut s = self.write();
        s.readers.push(cursor.clone());
        s.head()
    }
    fn detach(&self, cursor: &Arc<AtomicU64>) {
        let mut s = self.write();
        s.readers.retain(|r| !Arc::ptr_eq(r, cursor));
        s.trim();
    }
    fn weight(&self, at: u64) -> Next<usize> {
        self.logged(at, |(_, weight)| *weight)
    }
    fn read(&self, at: u64) -> Next<(K, Option<V>)> {
        self.logged(at, |(change, _)| change.clone())
    }
    fn deliver(
        listener: &Remote<dyn MapListener<K, V>>,
        (key, value): (K, Option<V>),
    ) -> BoxFuture<'static, Result<(), Error>> {
        let l = listener.clone();
        Box::pin(async move { l.changed(key, value).await })
    }
}

#[remote]
impl<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> RemoteMap<K, V> for SharedMap<K, V> {
    async fn insert(&self, key: K, value: V) -> Result<Option<V>, Error> {
        Ok(self.change(key, Some(value)))
    }
    async fn get(&self, key: K) -> Result<Option<V>, Error> {
        Ok(self.inner.read().entries.get(&key).cloned())
    }
    async fn remove(&self, key: K) -> Result<Option<V>, Error> {
        Ok(self.change(key, None))
    }
    async fn len(&self) -> Result<u64, Error> {
        Ok(self.inner.read().entries.len() as u64)
    }
    async fn entries(&self, after: Option<K>) -> Result<Vec<(K, V)>, Error> {
        let s = self.inner.read();
        let lower = match &after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        Ok(page::take(
            s.entries.range((lower, Bound::Unbounded)),
            MAX_PAGE as usize,
            |(k, v)| (k.clone(), v.clone()),
        ))
    }
    async fn subscribe(&self, listener: Remote<dyn MapListener<K, V>>) -> Result<(), Error> {
        subscribers::subscribe(&self.inner, listener)
    }
}
