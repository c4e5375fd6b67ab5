//! Subscriptions to a shared collection.
//!
//! A collection keeps an ordered feed of its changes (the list's own items;
//! the map's short change log). Each subscriber is a task that follows the
//! feed from its own cursor and calls its listener once per change, in
//! order. A writer only appends to the feed and bumps a watch value after
//! releasing the collection's lock: its cost does not grow with the number
//! of subscribers, and no subscriber's item is copied under the lock.
//!
//! Subscriptions are counted per connection of the listener (a proxy's
//! connection; local listeners are not counted) against
//! [`Limits::max_subscriptions_per_connection`](crate::Limits). A
//! subscription ends when its listener fails a call, when the listener's
//! connection closes (at once, not at the next change), when it fell too
//! far behind a feed that forgets old changes, or with the collection. A
//! proxy listener's call fails at `max_deadline`, or once its connection
//! answered no notification for `default_deadline` (`answered`): a
//! notification may wait at the peer, unstarted, behind the others.
//!
//! A map's log is bounded: a write past its bounds waits for room
//! (`map.rs`, `State::room`), woken as cursors advance ([`Feed::advanced`])
//! or readers leave, for as long as the slowest readers' lateness
//! allowance lasts (`driver/reader_lateness.rs`); then the feed gives up
//! on them (`Cursor::dropped`).
//!
//! A proxy listener's notification waits, before its change is copied,
//! for room in its connection's output and in the memory budget
//! (`driver/room.rs`): a subscriber that reads nothing holds up only its
//! own notifications, and the server holds no more of them than the
//! budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{BoxFuture, Error, Interface, Remote};

/// The next change of a feed, as seen from one cursor.
pub(super) enum Next<E> {
    /// The change at the cursor.
    Ready(E),
    /// The cursor is at the head: nothing new yet.
    NotYet,
    /// The change at the cursor was forgotten: the reader fell too far behind.
    Lagged,
}

/// A subscriber's place in a feed.
#[derive(Default)]
pub(super) struct Cursor {
    /// The next change to deliver.
    pub(super) at: AtomicU64,
    /// Cancelled when the feed gives up on the subscriber (it held its
    /// writers up for as long as it may): its task ends at once, a
    /// notification in flight abandoned.
    pub(super) dropped: CancellationToken,
}

/// A collection's ordered change feed, read by subscriber tasks.
pub(super) trait Feed: Send + Sync + Sized + 'static {
    /// What subscribes.
    type Listener: ?Sized + Interface;
    /// One change, as delivered.
    type Event: Send + 'static;
    /// The collection's subscribers.
    fn subscribers(&self) -> &Subscribers<Self::Listener>;
    /// Registers a reader's cursor (its listener a proxy on `conn`, or
    /// local); returns the feed's head (where the reader starts: it sees
    /// every change from now on).
    fn attach(&self, cursor: &Arc<Cursor>, conn: Option<&Arc<crate::driver::Shared>>) -> u64;
    /// Forgets a reader's cursor.
    fn detach(&self, cursor: &Arc<Cursor>);
    /// A reader's cursor moved on (writers waiting for room may go on).
    fn advanced(&self) {}
    /// The change at position `at`.
    fn read(&self, at: u64) -> Next<Self::Event>;
    /// What the change at position `at` weighs held (`codec::held_weight`),
    /// found without copying it: the room a notification of it reserves
    /// in its listener's memory budget before it is copied.
    fn weight(&self, at: u64) -> Next<usize>;
    /// Tells `listener` about `event`.
    fn deliver(
        listener: &Remote<Self::Listener>,
        event: Self::Event,
    ) -> BoxFuture<'static, Result<(), Error>>;
}

/// Who a subscription is for: a proxy's (connection, object id), or a local
/// object's address (connection 0). Subscribing the same one twice is a
/// no-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    conn: usize,
    object: usize,
}

struct Registry<L: ?Sized> {
    /// Each subscription's listener. Holding it keeps a proxy's connection
    /// state alive, so its address (the `conn` key) is not reused while
    /// the entry exists.
    listeners: HashMap<Identity, Remote<L>>,
    per_conn: HashMap<usize, usize>,
}

/// The subscribers of one collection, and the watch that wakes them.
pub(super) struct Subscribers<L: ?Sized> {
    head: watch::Sender<u64>,
    registry: Mutex<Registry<L>>,
}

impl<L: ?Sized + Interface> Subscribers<L> {
    /// No subscribers; the feed's head is at `head`.
    pub(super) fn new(head: u64) -> Self {
        Subscribers {
            head: watch::Sender::new(head),
            registry: Mutex::new(Registry {
                listeners: HashMap::new(),
                per_conn: HashMap::new(),
            }),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry<L>> {
        // No user code runs under this lock.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current subscriptions.
    pub(super) fn len(&self) -> usize {
        self.registry().listeners.len()
    }

    /// The feed's head moved to `head` (call after releasing the
    /// collection's lock; out-of-order calls keep the highest).
    pub(super) fn advance(&self, head: u64) {
        self.head.send_if_modified(|h| {
            let moved = head > *h;
            if moved {
                *h = head;
            }
            moved
        });
    }

    fn remove(&self, id: Identity) {
        let mut r = self.registry();
        if r.listeners.remove(&id).is_some() && id.conn != 0 {
            if let Some(n) = r.per_conn.get_mut(&id.conn) {
                *n -= 1;
                if *n == 0 {
                    r.per_conn.remove(&id.conn);
                }
            }
        }
    }
}

/// Subscribes `listener` to `feed`'s changes from now on.
///
/// Idempotent: a listener already subscribed (the same local object, or a
/// proxy for the same object on the same connection) stays subscribed once
/// and `Ok` is returned. Over the listener's connection's
/// `max_subscriptions_per_connection`, fails with `limit_exceeded`.
pub(super) fn subscribe<F: Feed>(
    feed: &Arc<F>,
    listener: Remote<F::Listener>,
) -> Result<(), Error> {
    let subs = feed.subscribers();
    let handle = listener.handle();
    let id = match handle {
        Some(h) => Identity {
            conn: Arc::as_ptr(h.shared()) as usize,
            object: h.object_id() as usize,
        },
        None => Identity {
            conn: 0,
            object: Arc::as_ptr(listener.as_arc()) as *const () as usize,
        },
    };
    let mut reg = subs.registry();
    if reg.listeners.contains_key(&id) {
        return Ok(());
    }
    if let Some(h) = handle {
        let limit = h.shared().limits.max_subscriptions_per_connection;
        let have = reg.per_conn.get(&id.conn).copied().unwrap_or(0);
        if have >= limit {
            return Err(Error::limit(
                "max_subscriptions_per_connection",
                limit as u64,
                format!("this connection already holds {have} subscriptions to this collection"),
            ));
        }
        *reg.per_conn.entry(id.conn).or_default() += 1;
    }
    let cursor = Arc::new(Cursor::default());
    let conn = handle.map(|h| h.shared().clone());
    cursor
        .at
        .store(feed.attach(&cursor, conn.as_ref()), Ordering::Relaxed);
    reg.listeners.insert(id, listener.clone());
    drop(reg);
    let leave = Leave {
        feed: Arc::downgrade(feed),
        id,
        cursor,
    };
    crate::rt::spawn(follow(leave, listener, subs.head.subscribe(), conn));
    Ok(())
}

/// Ends a subscription when its task ends, however it ends.
struct Leave<F: Feed> {
    feed: Weak<F>,
    id: Identity,
    cursor: Arc<Cursor>,
}

impl<F: Feed> Drop for Leave<F> {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.upgrade() {
            feed.subscribers().remove(self.id);
            feed.detach(&self.cursor);
        }
    }
}

/// One subscriber: delivers every change from its cursor on, in order.
/// `conn` is the connection of a proxy listener: each change waits for
/// room in its output before it is taken from the feed
/// (`driver/room.rs`), and the subscription ends when it closes. It also
/// ends, a notification in flight abandoned, when the feed gives up on it
/// (`Cursor::dropped`).
async fn follow<F: Feed>(
    leave: Leave<F>,
    listener: Remote<F::Listener>,
    mut head: watch::Receiver<u64>,
    conn: Option<Arc<crate::driver::Shared>>,
) {
    let closed = closed_future(
        conn.as_ref().map(|c| c.closed_token().clone()),
        leave.cursor.dropped.clone(),
    );
    tokio::pin!(closed);
    loop {
        if leave.cursor.dropped.is_cancelled() {
            return;
        }
        let at = leave.cursor.at.load(Ordering::Relaxed);
        // A proxy's notification first waits for room in its connection's
        // output and reserves the change's weight in the budget, before the
        // change is copied (`driver/room.rs`).
        let reserved = match &conn {
            Some(conn) => {
                let Some(feed) = leave.feed.upgrade() else {
                    return; // the collection is gone
                };
                let weight = feed.weight(at);
                drop(feed);
                match weight {
                    Next::Ready(weight) => tokio::select! {
                        biased;
                        () = &mut closed => return,
                        reserved = conn.reserve_output(weight) => Some(reserved),
                    },
                    Next::Lagged => return,
                    Next::NotYet => None,
                }
            }
            None => None,
        };
        let Some(feed) = leave.feed.upgrade() else {
            return; // the collection is gone
        };
        let next = feed.read(at);
        drop(feed);
        match next {
            Next::Ready(event) => {
                let mut delivery: BoxFuture<'static, Result<(), Error>> = match &conn {
                    // A proxy's call may wait at the peer, unstarted, for
                    // as long as its listeners hold the room there: its
                    // deadline is the longest, and `answered` gives up on
                    // it sooner only while its connection answers nothing.
                    Some(conn) => Box::pin(crate::with_timeout(
                        conn.limits.max_deadline,
                        F::deliver(&listener, event),
                    )),
                    None => F::deliver(&listener, event),
                };
                // Its frame is queued on the first poll, and counts itself
                // from then on: the room reserved for it is given back.
                let first =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(delivery.as_mut().poll(cx)))
                        .await;
                drop(reserved);
                let delivered = match (first, &conn) {
                    (std::task::Poll::Ready(r), _) => r,
                    (std::task::Poll::Pending, conn) => {
                        let waited = async {
                            match conn {
                                Some(conn) => answered(conn, delivery).await,
                                None => delivery.await,
                            }
                        };
                        tokio::select! {
                            biased;
                            () = &mut closed => return,
                            delivered = waited => delivered,
                        }
                    }
                };
                if delivered.is_err() {
                    return; // gone or failing: unsubscribe
                }
                if let Some(conn) = &conn {
                    conn.notifications_answered.fetch_add(1, Ordering::Release);
                }
                leave.cursor.at.store(at + 1, Ordering::Relaxed);
                if let Some(feed) = leave.feed.upgrade() {
                    feed.advanced();
                }
            }
            Next::Lagged => return,
            Next::NotYet => {
                tokio::select! {
                    biased;
                    () = &mut closed => return,
                    moved = head.wait_for(|h| *h > at) => {
                        if moved.is_err() {
                            return; // the collection is gone
                        }
                    }
                }
            }
        }
    }
}

/// Waits for a proxy listener's answer to a notification (`delivery`, sent
/// with the longest deadline, `max_deadline`), giving up with
/// `deadline_exceeded` once `default_deadline` passed with no notification
/// answered on its connection (by any listener of any collection).
///
/// A peer may hold a call back, unstarted, while its running handlers hold
/// its room (PROTOCOL.md §9: before its first reply, 8 at the defaults),
/// and its time then counts from the end of that wait there; but the
/// caller's deadline runs from the sending. With `default_deadline` as the
/// notification's own deadline, 16 listeners of one connection each
/// answering in 6 s lost the 7 subscriptions whose first notifications
/// waited behind the others (each answered 12 s after it was sent). A
/// connection whose listeners answer, however slowly, is only slowed down;
/// one that answers nothing for `default_deadline` (silent, or whose
/// listeners all hang) loses its subscriptions as before.
async fn answered(
    conn: &crate::driver::Shared,
    mut delivery: BoxFuture<'static, Result<(), Error>>,
) -> Result<(), Error> {
    use crate::rt::time::{sleep_until, Instant};
    let patience = conn.limits.default_deadline;
    let mut seen = conn.notifications_answered.load(Ordering::Acquire);
    loop {
        let until = crate::driver::deadline::after(Instant::now(), patience);
        tokio::select! {
            biased;
            delivered = &mut delivery => return delivered,
            () = sleep_until(until) => {
                let now = conn.notifications_answered.load(Ordering::Acquire);
                if now == seen {
                    return Err(Error::DeadlineExceeded(patience));
                }
                seen = now;
            }
        }
    }
}

/// Resolves when the listener's connection closes (never for a local
/// one), or the feed gives up on the subscriber (`dropped`).
async fn closed_future(closed: Option<CancellationToken>, dropped: CancellationToken) {
    let closed = async {
        match closed {
            Some(t) => t.cancelled_owned().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = closed => {}
        () = dropped.cancelled_owned() => {}
    }
}
