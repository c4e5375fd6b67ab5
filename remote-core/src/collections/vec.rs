//! [`SharedVec`]: an append-only list served as a [`RemoteList`].

use std::fmt;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use super::page::{self, MAX_PAGE};
use super::subscribers::{self, Feed, Next, Subscribers};
use super::{ListListener, RemoteList};
use crate::stream::{RemoteStream, StreamSource, MAX_BATCH};
use crate::{remote, BoxFuture, Error, Remote, Wire};

/// A local list served as a [`RemoteList`].
///
/// Append-only: items are pushed and never removed or changed, so a reader
/// that remembers a length has a consistent view of the list up to it.
/// [`iter`](RemoteList::iter) uses that: its stream reads the shared list
/// through a cursor, and no call copies the list.
///
/// ```
/// use remote_core::collections::{RemoteList, SharedVec};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// let list = SharedVec::<u32>::new();
/// list.push(7).await?; // the owner uses it through the same trait
/// let (_server, client) = remote_core::Connection::pair(
///     remote_core::ConnectionBuilder::new().serve(list.remote()),
///     remote_core::ConnectionBuilder::new(),
/// )
/// .await?;
/// let remote = client.root::<dyn RemoteList<u32>>();
/// assert_eq!(remote.push(8).await?, 1);
/// assert_eq!(list.snapshot(), vec![7, 8]);
/// # Ok(()) }
/// ```
pub struct SharedVec<T> {
    inner: Arc<List<T>>,
}

/// The list and its subscribers, shared with iterators and subscriber
/// tasks.
struct List<T> {
    items: RwLock<Vec<T>>,
    subscribers: Subscribers<dyn ListListener<T>>,
    /// The weights of the items weighed for a notification
    /// (`Feed::weight`), by index, plus one (0: not weighed yet). Each
    /// item is weighed once, wherever its subscribers stand: weighing
    /// encodes it and decodes the copy (`codec::held_weight`), and with the
    /// last one kept only, subscribers at different places weighed 320
    /// items 2,695 times, a bystander's call waiting on the worker (red-team
    /// pass 49). Lock order: `weights`, then `items`.
    weights: std::sync::Mutex<Vec<usize>>,
}

impl<T> List<T> {
    fn items(&self) -> RwLockReadGuard<'_, Vec<T>> {
        // No user code but an item's `Clone` (a copy read out) runs under
        // this lock (an item is weighed out of it: `Feed::weight`), and a
        // Vec is never left half pushed.
        self.items.read().unwrap_or_else(|p| p.into_inner())
    }

    /// What `f` makes of the item at position `at`, if there is one yet.
    fn item<R>(&self, at: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        usize::try_from(at)
            .ok()
            .and_then(|i| self.items().get(i).map(f))
    }
}

impl<T: Wire + Clone + Sync> SharedVec<T> {
    /// An empty list, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(SharedVec {
            inner: Arc::new(List {
                items: RwLock::new(Vec::new()),
                subscribers: Subscribers::new(0),
                weights: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// A handle to serve or pass to peers.
    pub fn remote(self: &Arc<Self>) -> Remote<dyn RemoteList<T>> {
        Remote::new(self.clone() as Arc<dyn RemoteList<T>>)
    }

    /// A copy of the items.
    pub fn snapshot(&self) -> Vec<T> {
        self.inner.items().clone()
    }

    /// Current subscriptions.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.len()
    }

    fn push_local(&self, item: T) -> u64 {
        let len = {
            let mut items = self.inner.items.write().unwrap_or_else(|p| p.into_inner());
            items.push(item);
            items.len() as u64
        };
        // Outside the lock: subscribers read the new item from the list
        // themselves, in index order.
        self.inner.subscribers.advance(len);
        len - 1
    }
}

impl<T> fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.inner.items().len();
        f.debug_struct("SharedVec").field("len", &len).finish()
    }
}

impl<T: Wire + Clone + Sync> Feed for List<T> {
    type Listener = dyn ListListener<T>;
    type Event = (u64, T);

    fn subscribers(&self) -> &Subscribers<Self::Listener> {
        &self.subscribers
    }
    fn attach(&self, _: &Arc<subscribers::Cursor>, _: Option<&Arc<crate::driver::Shared>>) -> u64 {
        self.items().len() as u64
    }
    fn detach(&self, _: &Arc<subscribers::Cursor>) {}
    fn weight(&self, at: u64) -> Next<usize> {
        let Ok(i) = usize::try_from(at) else {
            return Next::NotYet;
        };
        // Weighed under the weights' lock, not the list's: pushes and
        // reads go on, and subscribers reaching the same item together wait
        // for the one weighing instead of each doing it (two racing
        // subscribers weighed an item twice).
        let mut all = self.weights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&w) = all.get(i).filter(|&&w| w > 0) {
            return Next::Ready(w - 1);
        }
        let Some(item) = self.item(at, T::clone) else {
            return Next::NotYet;
        };
        // An item that cannot be encoded fails its delivery anyway.
        let weight = crate::codec::held_weight(&item).unwrap_or(0);
        if all.len() <= i {
            all.resize(i + 1, 0);
        }
        all[i] = weight.saturating_add(1);
        Next::Ready(weight.min(usize::MAX - 1))
    }
    fn read(&self, at: u64) -> Next<(u64, T)> {
        // The list keeps every item: a reader is never too far behind.
        match self.item(at, T::clone) {
            Some(item) => Next::Ready((at, item)),
            None => Next::NotYet,
        }
    }
    fn deliver(
        listener: &Remote<dyn ListListener<T>>,
        (index, item): (u64, T),
    ) -> BoxFuture<'static, Result<(), Error>> {
        let l = listener.clone();
        Box::pin(async move { l.pushed(index, item).await })
    }
}

/// [`RemoteList::iter`]'s stream: a position and the length at creation.
struct Cursor<T> {
    list: Arc<List<T>>,
    /// Next index to hand out, and the end fixed when the stream was made.
    at: Mutex<(usize, usize)>,
}

impl<T: Wire + Clone + Sync> StreamSource<T> for Cursor<T> {
    fn next_batch(&self, max: u32) -> BoxFuture<'_, Result<Vec<T>, Error>> {
        let batch = {
            let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
            let (from, end) = *at;
            let items = self.list.items();
            let max = max.clamp(1, MAX_BATCH) as usize;
            let batch = page::take(&items[from..end], max, Clone::clone);
            at.0 += batch.len();
            batch
        };
        Box::pin(std::future::ready(Ok(batch)))
    }
}

#[remote]
impl<T: Wire + Clone + Sync> RemoteList<T> for SharedVec<T> {
    async fn push(&self, item: T) -> Result<u64, Error> {
        let index = self.push_local(item);
        // Every client's cached pages go before the push returns, whoever
        // pushed (a peer, or this process through the trait).
        crate::driver::invalidate::invalidate_served::<dyn RemoteList<T>, _>(self, &["range"])
            .await;
        Ok(index)
    }
    async fn get(&self, index: u64) -> Result<Option<T>, Error> {
        let items = self.inner.items();
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| items.get(i))
            .cloned())
    }
    async fn len(&self) -> Result<u64, Error> {
        Ok(self.inner.items().len() as u64)
    }
    async fn range(&self, start: u64, end: u64) -> Result<Vec<T>, Error> {
        let items = self.inner.items();
        let end = end.min(items.len() as u64);
        if start >= end {
            return Ok(Vec::new());
        }
        let max = (end - start).min(MAX_PAGE) as usize;
        Ok(page::take(
            &items[start as usize..end as usize],
            max,
            Clone::clone,
        ))
    }
    async fn iter(&self, start: u64) -> Result<RemoteStream<T>, Error> {
        let end = self.inner.items().len();
        let from = usize::try_from(start).map_or(end, |s| s.min(end));
        let cursor: Arc<dyn StreamSource<T>> = Arc::new(Cursor {
            list: self.inner.clone(),
            at: Mutex::new((from, end)),
        });
        Ok(RemoteStream::from_source(Remote::new(cursor)))
    }
    async fn subscribe(&self, listener: Remote<dyn ListListener<T>>) -> Result<(), Error> {
        subscribers::subscribe(&self.inner, listener)
    }
}
