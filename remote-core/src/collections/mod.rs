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
//! # Subscriptions
//!
//! Each subscriber is notified of every change, in order, one call at a
//! time, by a task of its own that reads the collection's changes from a
//! cursor: a writer's cost does not grow with the number of subscribers,
//! and a slow subscriber holds up no other subscriber (writers, within
//! its allowance: below). Subscribing a listener that is
//! already subscribed is a no-op (it is notified once per change). One
//! connection's listeners hold at most
//! [`Limits::max_subscriptions_per_connection`](crate::Limits) subscriptions
//! per collection (local listeners are not counted). A subscription ends
//! when its listener returns an error or fails (its connection lost, a
//! deadline: a proxy listener's notification is given up once its
//! connection answered no notification for `default_deadline`, or at
//! `max_deadline`, so listeners slow to answer only slow their connection
//! down), as soon as its connection closes, or, for a
//! [`SharedMap`], when it lags behind its writers for longer than its
//! allowance.
//!
//! A [`SharedMap`]'s change log holds at most [`SUBSCRIBER_QUEUE`] changes
//! and [`SUBSCRIBER_QUEUE_BYTES`] of them. A write that would push it past
//! either first waits (asynchronously, within its call's deadline) for
//! the slowest subscribers to deliver: a busy writer is slowed down to
//! its subscribers' pace, and an honest subscriber keeps its subscription
//! through another client's burst of writes (red-team pass 50: with
//! writers never slowed, 2,000 inserts with 100 in flight ended another
//! client's subscription). The time writers wait for a subscriber is
//! charged, once however many wait, to its lateness allowance: its
//! connection's and peer address's, the buckets a late acknowledgement of
//! pushed invalidations is paid from (`invalidation_max_missed_acks`
//! timeouts' worth, 5.25 s at the defaults, refilling at an eighth of wall
//! time); a local listener has a bucket of its own of the default size.
//! Once it is spent, or the subscriber delivered nothing for its
//! connection's `invalidation_ack_timeout` (2 s; a local listener's: 2 s),
//! writers give up on it: it is dropped (a notification in flight
//! abandoned) and the writes go on. So a subscriber, however it times its
//! answers, holds writers up by at most its allowance plus an eighth of
//! the time; one that cannot keep up with a sustained stream of writes
//! for longer than that is dropped, as before.
//!
//! Known limits (a review): subscribers behind one peer address share its
//! allowance, so while another subscriber (or a late invalidation holder)
//! of that address has drained it, a subscriber of that address that
//! falls behind is dropped at the first wait, as all were before writers
//! waited; a listener that writes to the map it listens to, from its own
//! notification, while the log is full waits for itself: writers wait its
//! patience (2 s), then it is dropped; and with
//! `invalidation_max_missed_acks = 0` writers never wait.
//!
//! # Pages
//!
//! [`RemoteList::range`], [`RemoteMap::entries`] and the batches of
//! [`RemoteList::iter`]'s stream hold at most [`MAX_PAGE`] items and at
//! most [`MAX_PAGE_BYTES`] of encoded items, so a reply fits in a frame
//! whatever the items' size. A short page is not the end: continue from
//! where it stopped (the list's [`len`](RemoteList::len) says where the end
//! is; the map's end is an empty page).

use std::sync::Arc;

use crate::stream::RemoteStream;
use crate::{remote, Error, Remote, Wire};

mod map;
pub(crate) mod page;
mod subscribers;
mod vec;

pub use map::SharedMap;
pub use page::{MAX_PAGE, MAX_PAGE_BYTES};
pub use vec::SharedVec;

/// Most changes a [`SharedMap`] keeps for a subscriber that has not
/// delivered them yet: a write past it waits for the slowest subscriber,
/// for as long as its allowance lasts (module doc, Subscriptions), then
/// drops it.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// Most bytes of changes a [`SharedMap`] keeps for subscribers that have
/// not delivered them yet (one change larger than this is kept alone): a
/// write past it waits for the slowest subscriber, for as long as its
/// allowance lasts (module doc, Subscriptions), then drops it. A change weighs its
/// key and value as the memory budget weighs a call's arguments: their
/// encoded bytes and 48 bytes per item of their arrays and maps (an empty
/// string is a byte on the wire, 24 in memory), and what their types take
/// beyond that (a `nil` as an `Option<[u64; 32]>` takes 264 bytes: counted
/// without it, such values held the log at 84 MB). Counted in changes only, a
/// subscriber that answered each change just before its deadline made a
/// map whose one key was rewritten a thousand times with 128 KiB values
/// hold 125 MiB; counted in encoded bytes, values of 16,000 empty strings
/// held 367 MiB (both found by red-team passes).
pub const SUBSCRIBER_QUEUE_BYTES: usize = 16 << 20;

/// A list that peers append to and read.
#[remote]
#[cfg_attr(
    doc,
    doc = r#"
[`SharedVec`] serves one; a peer calls it through its proxy:

```
use remote_core::collections::{RemoteList, SharedVec};
use remote_core::{Connection, ConnectionBuilder};

fn main() -> remote_core::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let log = SharedVec::<String>::new();
        let (client, _server) =
            Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(log.remote()))
                .await?;
        let remote = client.root::<dyn RemoteList<String>>();
        assert_eq!(remote.push("first".into()).await?, 0);
        assert_eq!(remote.push("second".into()).await?, 1);
        assert_eq!(remote.len().await?, 2);
        assert_eq!(remote.range(1, 2).await?, ["second"]);
        assert_eq!(remote.get(5).await?, None);
        Ok(())
    })
}
```
"#
)]
pub trait RemoteList<T: Wire + Clone + Sync> {
    /// Appends `item`; returns its index.
    async fn push(&self, item: T) -> Result<u64, Error>;
    /// The item at `index`, if any.
    async fn get(&self, index: u64) -> Result<Option<T>, Error>;
    /// Number of items.
    async fn len(&self) -> Result<u64, Error>;
    /// The first items of `start..end`: at most [`MAX_PAGE`] of them and
    /// at most [`MAX_PAGE_BYTES`] encoded, but at least one if `start` is
    /// in the list. A shorter page than asked is not the end of the list:
    /// ask again from `start + page.len()`, up to [`len`](Self::len).
    ///
    /// Cached by the proxy for 5 s; a [`SharedVec`]'s every push (through
    /// any connection, or local) drops every client's cached pages before
    /// it returns (CACHING.md).
    #[remote(cache(ttl = "5s"))]
    async fn range(&self, start: u64, end: u64) -> Result<Vec<T>, Error>;
    /// Streams every item from `start` on, as of now (items pushed later
    /// are not included), lazily; each batch bounded as a
    /// [`range`](Self::range) page is.
    async fn iter(&self, start: u64) -> Result<RemoteStream<T>, Error>;
    /// Calls `listener.pushed` for every item appended from now on, in
    /// order. Subscribing a listener already subscribed is a no-op; over
    /// [`Limits::max_subscriptions_per_connection`](crate::Limits) for the
    /// listener's connection, fails with `limit_exceeded`.
    async fn subscribe(&self, listener: Remote<dyn ListListener<T>>) -> Result<(), Error>;
}

/// Receives a [`RemoteList`]'s appends.
#[remote]
#[cfg_attr(
    doc,
    doc = r#"
[`on_push`] makes one from a closure; a type of yours can be one too:

```
use std::sync::Arc;
use remote_core::collections::{ListListener, SharedVec};
use remote_core::{remote, Error, Remote};
use tokio::sync::mpsc;

struct Forward(mpsc::UnboundedSender<(u64, String)>);

#[remote]
impl ListListener<String> for Forward {
    async fn pushed(&self, index: u64, item: String) -> Result<(), Error> {
        let _ = self.0.send((index, item));
        Ok(())
    }
}

fn main() -> remote_core::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let list = SharedVec::<String>::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener: Remote<dyn ListListener<String>> = Remote::new(Arc::new(Forward(tx)));
        list.remote().subscribe(listener).await?;
        list.remote().push("hi".into()).await?;
        assert_eq!(rx.recv().await, Some((0, "hi".to_owned())));
        Ok(())
    })
}
```
"#
)]
pub trait ListListener<T: Wire + Clone + Sync> {
    /// `item` was appended at `index`.
    async fn pushed(&self, index: u64, item: T) -> Result<(), Error>;
}

/// A map that peers write and read.
#[remote]
#[cfg_attr(
    doc,
    doc = r#"
[`SharedMap`] serves one; a peer calls it through its proxy:

```
use remote_core::collections::{RemoteMap, SharedMap};
use remote_core::{Connection, ConnectionBuilder};

fn main() -> remote_core::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let map = SharedMap::<String, u64>::new();
        let (client, _server) =
            Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(map.remote()))
                .await?;
        let remote = client.root::<dyn RemoteMap<String, u64>>();
        assert_eq!(remote.insert("a".into(), 1).await?, None);
        assert_eq!(remote.insert("a".into(), 2).await?, Some(1));
        remote.insert("b".into(), 3).await?;
        assert_eq!(remote.get("a".into()).await?, Some(2));
        // Pages in key order; ask again after the last key for the next.
        let page = remote.entries(None).await?;
        assert_eq!(page, [("a".to_owned(), 2), ("b".to_owned(), 3)]);
        assert!(remote.entries(Some("b".into())).await?.is_empty());
        assert_eq!(remote.remove("a".into()).await?, Some(2));
        assert_eq!(map.snapshot().len(), 1);
        Ok(())
    })
}
```
"#
)]
pub trait RemoteMap<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> {
    /// Sets `key` to `value`; returns the previous value.
    async fn insert(&self, key: K, value: V) -> Result<Option<V>, Error>;
    /// The value of `key`.
    async fn get(&self, key: K) -> Result<Option<V>, Error>;
    /// Removes `key`; returns its value.
    async fn remove(&self, key: K) -> Result<Option<V>, Error>;
    /// Number of entries.
    async fn len(&self) -> Result<u64, Error>;
    /// The first entries with keys after `after` (from the start if
    /// `None`), in key order: at most [`MAX_PAGE`] of them and at most
    /// [`MAX_PAGE_BYTES`] encoded, but at least one if there is one. A
    /// short page is not the end: ask again after its last key; an empty
    /// page is the end.
    async fn entries(&self, after: Option<K>) -> Result<Vec<(K, V)>, Error>;
    /// Calls `listener.changed` for every change from now on, in order.
    /// Subscribing a listener already subscribed is a no-op; over
    /// [`Limits::max_subscriptions_per_connection`](crate::Limits) for the
    /// listener's connection, fails with `limit_exceeded`.
    async fn subscribe(&self, listener: Remote<dyn MapListener<K, V>>) -> Result<(), Error>;
}

/// Receives a [`RemoteMap`]'s changes.
#[remote]
#[cfg_attr(
    doc,
    doc = r#"
`None` means the key was removed.

```
use std::sync::Arc;
use remote_core::collections::{MapListener, SharedMap};
use remote_core::{remote, Error, Remote};
use tokio::sync::mpsc;

struct Forward(mpsc::UnboundedSender<(String, Option<u64>)>);

#[remote]
impl MapListener<String, u64> for Forward {
    async fn changed(&self, key: String, value: Option<u64>) -> Result<(), Error> {
        let _ = self.0.send((key, value));
        Ok(())
    }
}

fn main() -> remote_core::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let map = SharedMap::<String, u64>::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener: Remote<dyn MapListener<String, u64>> = Remote::new(Arc::new(Forward(tx)));
        map.remote().subscribe(listener).await?;
        map.remote().insert("k".into(), 1).await?;
        map.remote().remove("k".into()).await?;
        assert_eq!(rx.recv().await, Some(("k".to_owned(), Some(1))));
        assert_eq!(rx.recv().await, Some(("k".to_owned(), None)));
        Ok(())
    })
}
```
"#
)]
pub trait MapListener<K: Wire + Ord + Clone + Sync, V: Wire + Clone + Sync> {
    /// `key` now maps to `value` (`None`: removed).
    async fn changed(&self, key: K, value: Option<V>) -> Result<(), Error>;
}

/// A closure as a [`ListListener`] (plain functions as callbacks). It runs
/// where it was made: subscribed to a peer's list, the peer calls back over
/// the connection.
///
/// ```
/// use remote_core::collections::{on_push, RemoteList, SharedVec};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// let list = SharedVec::<String>::new();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// list.subscribe(on_push(move |index, item: String| {
///     let _ = tx.send((index, item));
/// }))
/// .await?;
/// list.push("hi".into()).await?;
/// assert_eq!(rx.recv().await, Some((0, "hi".to_owned())));
/// # Ok(()) }
/// ```
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

/// A closure as a [`MapListener`] (see [`SharedMap`] for one subscribed
/// over a connection).
///
/// ```
/// use remote_core::collections::{on_change, RemoteMap, SharedMap};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
/// let map = SharedMap::<u32, String>::new();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// map.subscribe(on_change(move |k: u32, v: Option<String>| {
///     let _ = tx.send((k, v));
/// }))
/// .await?;
/// map.insert(1, "one".into()).await?;
/// map.remove(1).await?;
/// assert_eq!(rx.recv().await, Some((1, Some("one".to_owned()))));
/// assert_eq!(rx.recv().await, Some((1, None)));
/// # Ok(()) }
/// ```
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
