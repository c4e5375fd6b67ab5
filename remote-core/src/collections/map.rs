//! [`SharedMap`]: a map served as a [`RemoteMap`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::page::{self, MAX_PAGE};
use super::subscribers::{self, Cursor, Feed, Next, Subscribers};
use super::{MapListener, RemoteMap, SUBSCRIBER_QUEUE, SUBSCRIBER_QUEUE_BYTES};
use crate::driver::ReaderLateness;
use crate::rt::time::Instant;
use crate::{remote, BoxFuture, Error, Remote, Wire};

/// A local map served as a [`RemoteMap`].
///
/// Its subscribers read one shared log of recent changes: a change is
/// recorded once, whatever the number of subscribers, and only while
/// someone is subscribed. The log forgets changes every subscriber has
/// delivered, and keeps at most [`SUBSCRIBER_QUEUE`] of them, of at most
/// [`SUBSCRIBER_QUEUE_BYTES`] in all. A write ([`RemoteMap::insert`],
/// [`RemoteMap::remove`]) that would push it past either waits for the
/// slowest subscribers to deliver (backpressure: writers are slowed to
/// their subscribers' pace, and an honest subscriber is not dropped for
/// another client's burst of writes), for as long as their lateness
/// allowance lasts, or until one delivered nothing for its patience; then
/// that subscriber is dropped and the write goes on (module doc of
/// [`collections`](super), Subscriptions). A waiting write holds no lock,
/// and its call's deadline still applies.
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
    /// Signalled when a subscriber delivered a change, or left: writers
    /// waiting for room in the log look again.
    progress: Notify,
}

struct State<K, V> {
    entries: BTreeMap<K, V>,
    /// Changes `base..base + log.len()`, oldest first, each with its
    /// weight held decoded (`codec::held_weight`).
    log: VecDeque<((K, Option<V>), usize)>,
    /// The sizes in `log`, summed.
    log_bytes: usize,
    base: u64,
    /// Each subscriber's place, and what its lag costs it.
    readers: Vec<Reader>,
    /// Writers waiting for room in the log.
    waiting: usize,
    /// While writers wait: when each peer address (`ReaderLateness::addr`)
    /// was charged up to, so that its subscribers waited for at once are
    /// charged once.
    addr_charged: HashMap<(usize, IpAddr), Instant>,
}

/// A subscriber, as its map's writers see it.
struct Reader {
    cursor: Arc<Cursor>,
    /// Pays for the time writers wait for it (`driver/reader_lateness.rs`).
    lateness: ReaderLateness,
    /// Writers have been waiting for it, at the log's oldest change.
    stall: Option<Stall>,
}

/// Writers waiting, since `since`, for a reader at position `at`; charged
/// to it up to `charged`.
#[derive(Clone, Copy)]
struct Stall {
    at: u64,
    since: Instant,
    charged: Instant,
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
            .map(|r| r.cursor.at.load(Ordering::Relaxed))
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

    /// Whether a change of `size` fits in the log.
    fn fits(&self, size: usize) -> bool {
        self.log.len() < SUBSCRIBER_QUEUE
            && (self.log.is_empty() || self.log_bytes + size <= SUBSCRIBER_QUEUE_BYTES)
    }

    /// Room for a change of `size` in the log: `Ok` once there is (or
    /// nobody reads it), with the readers given up on (to drop outside
    /// the lock); or when to look again (at the latest: also when a reader
    /// advances). Charges the readers at the oldest change, which the
    /// writers wait for, the time since they were last charged; gives up
    /// on one whose allowance is spent, or that delivered nothing for its
    /// patience (module doc of `driver/reader_lateness.rs`).
    fn room(&mut self, size: usize, gone: &mut Vec<Reader>) -> Result<(), Instant> {
        loop {
            self.trim();
            if self.readers.is_empty() || self.fits(size) {
                // Room came: what writers waited for it until now is paid
                // (a lone writer finding room at its wake-up, then leaving,
                // paid nothing: a subscriber answering just in time held it
                // up forever, a review).
                self.settle(Instant::now());
                return Ok(());
            }
            let (base, now) = (self.base, Instant::now());
            // Every reader waited for is charged up to now; one that moved
            // on is waited for afresh if at the oldest change again.
            self.settle(now);
            let (mut wake, before) = (None::<Instant>, gone.len());
            let mut i = 0;
            while i < self.readers.len() {
                let r = &mut self.readers[i];
                let addrs = &mut self.addr_charged;
                let at = r.cursor.at.load(Ordering::Relaxed);
                let give_up = at == base && {
                    let st = *r.stall.get_or_insert(Stall {
                        at,
                        since: now,
                        charged: now,
                    });
                    // Charged up to now already: what is left.
                    let left = charge(r, addrs, st.charged, now);
                    let until = st.since + r.lateness.patience();
                    match left {
                        Some(left) if now < until => {
                            let at = until.min(now + left);
                            wake = Some(wake.map_or(at, |w| w.min(at)));
                            false
                        }
                        _ => true,
                    }
                };
                if give_up {
                    let r = self.readers.swap_remove(i);
                    r.cursor.dropped.cancel();
                    gone.push(r);
                } else {
                    i += 1;
                }
            }
            if gone.len() == before {
                return Err(wake.unwrap_or(now));
            }
            // Those given up on no longer hold the log: look again.
        }
    }

    /// Charges each reader writers wait or waited for the time since it
    /// was last charged, up to `now`, and forgets the stalls of those that
    /// moved on.
    fn settle(&mut self, now: Instant) {
        let State {
            readers,
            addr_charged,
            base,
            ..
        } = self;
        for r in readers.iter_mut() {
            let Some(mut st) = r.stall else { continue };
            let _ = charge(r, addr_charged, st.charged, now);
            st.charged = now;
            let at = r.cursor.at.load(Ordering::Relaxed);
            r.stall = (st.at == at && at == *base).then_some(st);
        }
    }

    /// A writer stopped waiting: with none left, no reader is waited for.
    fn unwait(&mut self) {
        self.waiting -= 1;
        if self.waiting == 0 {
            // A write cancelled while waiting pays too.
            self.settle(Instant::now());
            for r in &mut self.readers {
                r.stall = None;
            }
            self.addr_charged.clear();
        }
    }
}

/// Charges `r` the time writers waited for it, `from` (when it was last
/// charged) to `now`; its peer address only what it was not charged for
/// that time already (`addrs`). What is left of its allowance (`None`:
/// spent).
fn charge(
    r: &Reader,
    addrs: &mut HashMap<(usize, IpAddr), Instant>,
    from: Instant,
    now: Instant,
) -> Option<Duration> {
    let addr_from = match r.lateness.addr() {
        Some(key) => {
            let was = addrs.insert(key, now);
            was.map_or(from, |t| t.max(from))
        }
        None => from,
    };
    r.lateness.charge(
        now.saturating_duration_since(from),
        now.saturating_duration_since(addr_from),
    )
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
                    waiting: 0,
                    addr_charged: HashMap::new(),
                }),
                subscribers: Subscribers::new(0),
                progress: Notify::new(),
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

    /// Applies a change, once its log has room for it (module doc of
    /// `driver/reader_lateness.rs`: how long a writer waits for a
    /// subscriber that lags).
    async fn change(&self, key: K, value: Option<V>) -> Option<V> {
        // Weighed outside the lock (user code: `Serialize`, and
        // `Deserialize` of the copy `codec::held_weight` decodes), if anybody
        // subscribed; a value that cannot be encoded fails its delivery
        // anyway.
        let weigh = |key: &K, value: &Option<V>| {
            let change = (key.clone(), value.clone());
            let weight = crate::codec::held_weight(&change).unwrap_or(0);
            (change, weight)
        };
        let mut weight = (self.inner.subscribers.len() > 0).then(|| weigh(&key, &value));
        let mut change = Some((key, value));
        let mut waiter = None;
        let mut gone = Vec::new();
        let (old, head) = loop {
            // Made before the log is looked at: `notify_waiters` wakes it
            // from now on, polled or not (and it costs no lock until then).
            let progress = self.inner.progress.notified();
            let wake = {
                let mut s = self.inner.write();
                if weight.is_none() && !s.readers.is_empty() {
                    None
                } else {
                    let size = weight.as_ref().map_or(0, |w| w.1);
                    match s.room(size, &mut gone) {
                        Ok(()) => {
                            let (key, value) = change.take().expect("applied once");
                            let old = self.apply(&mut s, weight.take(), key, value);
                            break (old, s.head());
                        }
                        Err(wake) => {
                            if waiter.is_none() {
                                s.waiting += 1;
                                waiter = Some(Waiter(&self.inner));
                            }
                            Some(wake)
                        }
                    }
                }
            };
            drop(std::mem::take(&mut gone));
            let Some(wake) = wake else {
                // A subscriber attached since: weighed now, the lock taken
                // again (logged at no weight, a change made as each of many
                // subscribers attached went uncounted).
                if let Some((key, value)) = &change {
                    weight = Some(weigh(key, value));
                }
                continue;
            };
            tokio::select! {
                () = progress => {}
                () = crate::rt::time::sleep_until(wake) => {}
            }
        };
        drop(waiter);
        drop(gone);
        // Outside the lock: subscribers read the change from the log.
        self.inner.subscribers.advance(head);
        old
    }

    /// Logs (if anybody reads the log) and applies a change.
    fn apply(
        &self,
        s: &mut State<K, V>,
        weight: Option<((K, Option<V>), usize)>,
        key: K,
        value: Option<V>,
    ) -> Option<V> {
        if s.readers.is_empty() {
            s.base = s.head() + 1;
            s.log.clear();
            s.log_bytes = 0;
        } else {
            let (change, size) = weight.unwrap_or_else(|| ((key.clone(), value.clone()), 0));
            s.log.push_back((change, size));
            s.log_bytes += size;
            // Not past the bounds once there was room (`State::room`); a
            // reader past them would be dropped on its next read.
            while s.log.len() > SUBSCRIBER_QUEUE
                || (s.log_bytes > SUBSCRIBER_QUEUE_BYTES && s.log.len() > 1)
            {
                s.pop();
            }
            if s.head() % TRIM_EVERY == 0 {
                s.trim();
            }
        }
        match value {
            Some(v) => s.entries.insert(key, v),
            None => s.entries.remove(&key),
        }
    }
}

/// A writer waiting for room in the log, counted until dropped (when
/// done, or with its call).
struct Waiter<'a, K, V>(&'a Map<K, V>);

impl<K, V> Drop for Waiter<'_, K, V> {
    fn drop(&mut self) {
        self.0.write().unwait();
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
    fn attach(&self, cursor: &Arc<Cursor>, conn: Option<&Arc<crate::driver::Shared>>) -> u64 {
        let reader = Reader {
            cursor: cursor.clone(),
            lateness: ReaderLateness::new(conn.cloned()),
            stall: None,
        };
        let mut s = self.write();
        s.readers.push(reader);
        s.head()
    }
    fn detach(&self, cursor: &Arc<Cursor>) {
        let mut s = self.write();
        let at = s
            .readers
            .iter()
            .position(|r| Arc::ptr_eq(&r.cursor, cursor));
        let gone = at.map(|i| s.readers.swap_remove(i));
        s.trim();
        drop(s);
        drop(gone);
        self.progress.notify_waiters();
    }
    fn advanced(&self) {
        self.progress.notify_waiters();
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
        Ok(self.change(key, Some(value)).await)
    }
    async fn get(&self, key: K) -> Result<Option<V>, Error> {
        Ok(self.inner.read().entries.get(&key).cloned())
    }
    async fn remove(&self, key: K) -> Result<Option<V>, Error> {
        Ok(self.change(key, None).await)
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
