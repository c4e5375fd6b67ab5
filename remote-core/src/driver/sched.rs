//! Run turns for method handlers, shared by every connection of a server
//! (`Limits::max_running_handlers`; see [`crate::Priority`] for the
//! user's view).
//!
//! A handler is polled only while it holds a turn: its first poll, inline
//! on the connection's reader, and every later poll of its task. A turn is
//! held for one poll only, never across an `await`, so handlers that wait
//! on each other cannot deadlock on turns.
//!
//! The fast path is one compare-and-swap on [`Sched::state`] to take a
//! turn and one to give it back. When every turn is taken, a handler
//! waits in a queue: one FIFO per connection and class, connections of a
//! class served round-robin, classes strictly highest first. A turn given
//! back while handlers wait passes straight to the next one (the count
//! does not drop, so a newcomer cannot take it first). A reader that finds
//! no turn does not wait: the call is spawned already queued, so the
//! reader goes on reading (cancels and other replies are still seen), and
//! the queued call counts in `max_calls_in_flight` and the output share
//! like any running handler, so the queue is bounded by those limits.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::Priority;

/// Set in [`Sched::state`] while handlers wait (so the fast path fails).
const WAITERS: usize = 1 << (usize::BITS - 1);

/// The run turns of one server (or one standalone connection).
#[derive(Debug)]
pub(crate) struct Sched {
    /// Turns taken, with [`WAITERS`] set while the queue is not empty. It
    /// changes only by compare-and-swap without the lock while `WAITERS`
    /// is clear, and only under the lock while it is set.
    state: AtomicUsize,
    max: usize,
    queue: Mutex<Queue>,
    next_conn: AtomicU64,
}

/// A handler waiting for a turn.
#[derive(Debug, Default)]
struct Waiter {
    /// Set (under the queue lock) when a turn was passed to it.
    granted: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct Queue {
    /// By class, lowest first.
    classes: [Class; Priority::COUNT],
    waiting: usize,
}

/// One class's waiting handlers.
#[derive(Debug, Default)]
struct Class {
    /// Connections with handlers waiting, in the order they get turns.
    ring: VecDeque<u64>,
    /// Each such connection's waiting handlers, first served first.
    conns: HashMap<u64, VecDeque<Arc<Waiter>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under this lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sched {
    /// `max` turns at once (at least one).
    pub(crate) fn new(max: usize) -> Arc<Sched> {
        Arc::new(Sched {
            state: AtomicUsize::new(0),
            max: max.clamp(1, WAITERS - 1),
            queue: Mutex::new(Queue::default()),
            next_conn: AtomicU64::new(0),
        })
    }

    /// A key for one more connection's queue.
    pub(crate) fn conn_key(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Handlers waiting for a turn now.
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.queue).waiting
    }

    /// Takes a turn if one is free and nobody waits for one.
    pub(crate) fn try_turn(&self) -> Option<Turn<'_>> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & WAITERS != 0 || s >= self.max {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Some(Turn(self)),
                Err(now) => s = now,
            }
        }
    }

    /// Gives a turn back, passing it to the next waiting handler if any.
    fn release(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & WAITERS == 0 {
            match self
                .state
                .compare_exchange_weak(s, s - 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
        let mut q = lock(&self.queue);
        match q.pop() {
            Some(w) => {
                // The turn passes on: the count stays.
                w.granted.store(true, Ordering::Release);
                if q.waiting == 0 {
                    self.state.fetch_and(!WAITERS, Ordering::AcqRel);
                }
                drop(q);
                w.waker.wake();
            }
            None => {
                // Everyone who waited left meanwhile.
                let s = self.state.load(Ordering::Acquire);
                self.state.store((s & !WAITERS) - 1, Ordering::Release);
            }
        }
    }

    /// Queues a handler of connection `conn` in `class`; at the front of
    /// the connection's queue if `front` (a handler already started, so
    /// it finishes before its connection's next calls start). The waiter
    /// is granted at once if a turn is free and nobody else waits.
    fn enqueue(&self, conn: u64, class: Priority, front: bool) -> Arc<Waiter> {
        let w = Arc::new(Waiter::default());
        let mut q = lock(&self.queue);
        // From here until the lock is released the state only changes
        // under it: the fast paths see WAITERS and back off.
        let s = self.state.fetch_or(WAITERS, Ordering::AcqRel) & !WAITERS;
        if q.waiting == 0 && s < self.max {
            // A turn was given back between the failed fast path and now.
            self.state.store(s + 1, Ordering::Release);
            w.granted.store(true, Ordering::Release);
            return w;
        }
        q.push(conn, class as usize, w.clone(), front);
        w
    }

    /// A waiter leaves (its handler was dropped): out of the queue, or
    /// its turn passed on if it had been granted one.
    fn leave(&self, conn: u64, class: Priority, w: &Arc<Waiter>) {
        let mut q = lock(&self.queue);
        if w.granted.load(Ordering::Acquire) {
            drop(q);
            self.release();
            return;
        }
        q.remove(conn, class as usize, w);
        if q.waiting == 0 {
            self.state.fetch_and(!WAITERS, Ordering::AcqRel);
        }
    }
}

impl Queue {
    fn push(&mut self, conn: u64, class: usize, w: Arc<Waiter>, front: bool) {
        let c = &mut self.classes[class];
        let fifo = c.conns.entry(conn).or_insert_with(|| {
            c.ring.push_back(conn);
            VecDeque::new()
        });
        if front {
            fifo.push_front(w);
        } else {
            fifo.push_back(w);
        }
        self.waiting += 1;
    }

    /// The next handler to run: highest class first, then the connection
    /// whose turn it is (which then goes to the back of the ring).
    fn pop(&mut self) -> Option<Arc<Waiter>> {
        for c in self.classes.iter_mut().rev() {
            let Some(conn) = c.ring.pop_front() else {
                continue;
            };
            let fifo = c.conns.get_mut(&conn)?;
            let w = fifo.pop_front();
            if fifo.is_empty() {
                c.conns.remove(&conn);
            } else {
                c.ring.push_back(conn);
            }
            self.waiting -= 1;
            return w;
        }
        None
    }

    fn remove(&mut self, conn: u64, class: usize, w: &Arc<Waiter>) {
        let c = &mut self.classes[class];
        let Some(fifo) = c.conns.get_mut(&conn) else {
            return;
        };
        let Some(i) = fifo.iter().position(|x| Arc::ptr_eq(x, w)) else {
            return;
        };
        fifo.remove(i);
        self.waiting -= 1;
        if fifo.is_empty() {
            c.conns.remove(&conn);
            c.ring.retain(|&k| k != conn);
        }
    }
}

/// A run turn, given back on drop.
#[derive(Debug)]
pub(crate) struct Turn<'a>(&'a Sched);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// One connection's place in its server's scheduler.
#[derive(Debug)]
pub(crate) struct ConnSched {
    pub(crate) sched: Arc<Sched>,
    key: u64,
}

impl ConnSched {
    pub(crate) fn new(sched: Arc<Sched>) -> Self {
        let key = sched.conn_key();
        ConnSched { sched, key }
    }

    /// A turn for a handler's inline first poll, if one is free at once.
    #[inline]
    pub(crate) fn try_turn(&self) -> Option<Turn<'_>> {
        self.sched.try_turn()
    }

    /// Runs `fut` one turn per poll, in `class`; `queued` if it is to
    /// wait for its first turn now (its reader found none free), so its
    /// place in the queue is the order the calls arrived in.
    pub(crate) fn fair<F: Future>(&self, fut: F, class: Priority, queued: bool) -> Fair<F> {
        let wait = queued.then(|| self.sched.enqueue(self.key, class, false));
        Fair {
            fut,
            sched: self.sched.clone(),
            conn: self.key,
            class,
            wait,
        }
    }
}

pin_project_lite::pin_project! {
    /// A handler that is polled only in a run turn.
    pub(crate) struct Fair<F> {
        #[pin]
        fut: F,
        sched: Arc<Sched>,
        conn: u64,
        class: Priority,
        wait: Option<Arc<Waiter>>,
    }

    impl<F> PinnedDrop for Fair<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(w) = this.wait.take() {
                this.sched.leave(*this.conn, *this.class, &w);
            }
        }
    }
}

impl<F: Future> Future for Fair<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let turn = loop {
            match this.wait {
                Some(w) => {
                    if !w.granted.load(Ordering::Acquire) {
                        w.waker.register(cx.waker());
                        // Granted between the check and the registration?
                        if !w.granted.load(Ordering::Acquire) {
                            return Poll::Pending;
                        }
                    }
                    // The turn passed to us is ours to give back.
                    *this.wait = None;
                    break Turn(this.sched);
                }
                None => match this.sched.try_turn() {
                    Some(t) => break t,
                    None => {
                        let w = this.sched.enqueue(*this.conn, *this.class, true);
                        *this.wait = Some(w);
                    }
                },
            }
        };
        let r = this.fut.poll(cx);
        drop(turn);
        r
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures_util::FutureExt;

    use super::*;

    /// A handler that records its name in `log` when polled.
    fn job(
        log: &Arc<Mutex<Vec<&'static str>>>,
        name: &'static str,
    ) -> impl Future<Output = ()> + Unpin {
        let log = log.clone();
        futures_util::future::lazy(move |_| log.lock().unwrap().push(name))
    }

    #[test]
    fn turns_are_free_until_all_are_taken() {
        let s = Sched::new(2);
        let a = s.try_turn().unwrap();
        let b = s.try_turn().unwrap();
        assert!(s.try_turn().is_none());
        drop(a);
        let _c = s.try_turn().unwrap();
        drop(b);
        assert_eq!(s.state.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn waiting_handlers_take_turns_round_robin_by_class() {
        let s = Sched::new(1);
        let (a, b, admin) = (
            ConnSched::new(s.clone()),
            ConnSched::new(s.clone()),
            ConnSched::new(s.clone()),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = s.try_turn().unwrap();
        let mut queued = Vec::new();
        for name in ["a1", "a2", "a3"] {
            queued.push(a.fair(job(&log, name), Priority::Normal, true));
        }
        queued.push(b.fair(job(&log, "b1"), Priority::Normal, true));
        queued.push(a.fair(job(&log, "low"), Priority::Low, true));
        queued.push(admin.fair(job(&log, "admin"), Priority::High, true));
        queued.push(b.fair(job(&log, "b2"), Priority::Normal, true));
        assert_eq!(s.waiting(), 7);
        // Nobody runs while the turn is held, and a newcomer must queue.
        for f in &mut queued {
            assert!(f.now_or_never().is_none());
        }
        assert!(s.try_turn().is_none());
        assert!(log.lock().unwrap().is_empty());

        drop(held);
        // One turn: the granted handler runs and passes it on.
        let mut left: Vec<_> = queued.into_iter().map(Some).collect();
        while left.iter().any(Option::is_some) {
            for slot in &mut left {
                if let Some(f) = slot {
                    if f.now_or_never().is_some() {
                        *slot = None;
                    }
                }
            }
        }
        assert_eq!(
            *log.lock().unwrap(),
            ["admin", "a1", "b1", "a2", "b2", "a3", "low"]
        );
        assert_eq!(s.waiting(), 0);
        assert!(s.try_turn().is_some(), "the turn came back");
    }

    #[test]
    fn a_waiter_that_leaves_passes_its_turn_on() {
        let s = Sched::new(1);
        let (a, b) = (ConnSched::new(s.clone()), ConnSched::new(s.clone()));
        let ran = Arc::new(AtomicUsize::new(0));
        let count = |ran: &Arc<AtomicUsize>| {
            let ran = ran.clone();
            futures_util::future::lazy(move |_| ran.fetch_add(1, Ordering::SeqCst))
        };
        let held = s.try_turn().unwrap();
        let never = a.fair(count(&ran), Priority::Normal, true);
        let granted_then_dropped = a.fair(count(&ran), Priority::Normal, true);
        let mut last = b.fair(count(&ran), Priority::Normal, true);
        // Left before its turn: out of the queue.
        drop(never);
        assert_eq!(s.waiting(), 2);
        drop(held); // granted to `granted_then_dropped`...
        assert_eq!(s.waiting(), 1);
        drop(granted_then_dropped); // ...which passes it on unused.
        assert_eq!((&mut last).now_or_never(), Some(0), "the first to run");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(s.state.load(Ordering::Relaxed), 0, "no turn leaked");
    }

    #[test]
    fn a_started_handler_goes_before_its_connections_new_calls() {
        // A handler already started queues at the front of its connection.
        let s = Sched::new(1);
        let a = ConnSched::new(s.clone());
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = s.try_turn().unwrap();
        let mut new_call = a.fair(job(&log, "new"), Priority::Normal, true);
        let mut started = a.fair(job(&log, "started"), Priority::Normal, false);
        assert!((&mut started).now_or_never().is_none()); // queues at the front
        drop(held);
        assert!((&mut new_call).now_or_never().is_none());
        assert!((&mut started).now_or_never().is_some());
        assert!((&mut new_call).now_or_never().is_some());
        assert_eq!(*log.lock().unwrap(), ["started", "new"]);
    }
}
