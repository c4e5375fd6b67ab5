//! The reader's control queue: [`Control`] messages from `Drop`s and other
//! tasks, polled on every turn of the read loop.
//!
//! An unbounded tokio channel did this, and an empty one cost about 250
//! instructions a poll (its coop budget check, the list pop, re-registering
//! the waker), every turn. Here an atomic flag says whether anything is
//! queued; an empty poll is one load and an `AtomicWaker` registration
//! (made only when the reader is about to wait: `try_recv` first).
//! Not using tokio's coop budget is deliberate: a poll never returns
//! `Pending` while something is queued, and every `Pending` leaves the
//! waker registered (skipping an mpsc poll on a flag was tried and reverted
//! because tokio's budget could return `Pending` without registering).
//! The waker is registered on every `Pending`, not once until a wake-up: a
//! send's wake can arrive late, after the reader took its message and
//! registered again, and would then take the new registration with it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::control::Control;
use super::shared::lock;

/// A queue this long or longer, once empty, gives its memory back.
const SHRINK_ABOVE: usize = 256;

struct Queue {
    items: Mutex<Items>,
    /// Something is queued (changed only under the `items` lock).
    ready: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Default)]
struct Items {
    queue: VecDeque<Control>,
    closed: bool,
}

/// Sends [`Control`] messages to the reader (cloned by every sender).
#[derive(Clone)]
pub(crate) struct CtlTx(Arc<Queue>);

impl std::fmt::Debug for CtlTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CtlTx")
    }
}

/// The reader's end.
pub(crate) struct CtlRx {
    queue: Arc<Queue>,
}

/// A new queue.
pub(crate) fn channel() -> (CtlTx, CtlRx) {
    let queue = Arc::new(Queue {
        items: Mutex::new(Items::default()),
        ready: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    (CtlTx(queue.clone()), CtlRx { queue })
}

impl CtlTx {
    /// Queues `c` for the reader; `Err(c)` once the reader has closed the
    /// queue. Never blocks on the reader (a short lock, no I/O).
    pub(crate) fn send(&self, c: Control) -> Result<(), Control> {
        let q = &*self.0;
        let wake = {
            let mut items = lock(&q.items);
            if items.closed {
                return Err(c);
            }
            items.queue.push_back(c);
            !q.ready.swap(true, Ordering::AcqRel)
        };
        if wake {
            q.waker.wake();
        }
        Ok(())
    }
}

impl CtlTx {
    /// Whether a message is queued that the reader has not taken yet (so
    /// it will run its loop, and write what is deferred to it, soon).
    /// Sequentially consistent with the reader's taking of the last one
    /// (`direct.rs` relies on it).
    pub(crate) fn pending(&self) -> bool {
        self.0.ready.load(Ordering::SeqCst)
    }
}

impl CtlRx {
    /// The next message, or `Pending` with this task's waker registered.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Control>> {
        if let Some(c) = self.pop() {
            return Poll::Ready(Some(c));
        }
        self.queue.waker.register(cx.waker());
        // A send between the check above and the registration.
        if let Some(c) = self.pop() {
            return Poll::Ready(Some(c));
        }
        Poll::Pending
    }

    /// The next message if one is queued; registers no waker.
    #[inline]
    pub(crate) fn try_recv(&mut self) -> Option<Control> {
        self.pop()
    }

    /// Inline: an empty queue (nearly every poll) costs one load here.
    #[inline]
    fn pop(&mut self) -> Option<Control> {
        if !self.queue.ready.load(Ordering::Acquire) {
            return None;
        }
        self.pop_locked()
    }

    #[inline(never)]
    fn pop_locked(&mut self) -> Option<Control> {
        let q = &*self.queue;
        let mut items = lock(&q.items);
        let c = items.queue.pop_front();
        if items.queue.is_empty() {
            q.ready.store(false, Ordering::SeqCst);
            if items.queue.capacity() > SHRINK_ABOVE {
                items.queue.shrink_to(SHRINK_ABOVE / 4);
            }
        }
        c
    }

    /// Refuses later sends and drops what is queued.
    pub(crate) fn close(&mut self) {
        let dropped = {
            let mut items = lock(&self.queue.items);
            items.closed = true;
            self.queue.ready.store(false, Ordering::Release);
            std::mem::take(&mut items.queue)
        };
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::tests_wake::WakeCount;
    use std::task::Waker;

    #[test]
    fn an_empty_poll_waits_and_a_send_wakes_it() {
        let (tx, mut rx) = channel();
        let count = Arc::new(WakeCount::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.send(Control::Rearm).unwrap();
        assert_eq!(count.get(), 1);
        // A second send before the reader looks wakes nobody again.
        tx.send(Control::Closed).unwrap();
        assert_eq!(count.get(), 1);
        assert!(matches!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Some(Control::Rearm))
        ));
        assert!(matches!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Some(Control::Closed))
        ));
        // Empty again: the waker is registered again, and the next send
        // wakes it.
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.send(Control::Rearm).unwrap();
        assert_eq!(count.get(), 2);
    }

    #[test]
    fn a_late_wake_does_not_take_the_next_registration() {
        let (tx, mut rx) = channel();
        let count = Arc::new(WakeCount::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        // A send on another thread, stopped between queueing its message
        // (under the lock) and waking the reader.
        {
            let mut items = lock(&tx.0.items);
            items.queue.push_back(Control::Rearm);
            tx.0.ready.store(true, Ordering::Release);
        }
        // The reader, polled for another reason, takes the message and
        // finds the queue empty again.
        assert!(matches!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Some(Control::Rearm))
        ));
        assert!(rx.poll_recv(&mut cx).is_pending());
        // The stopped send's wake arrives now.
        tx.0.waker.wake();
        assert_eq!(count.get(), 1);
        // The woken reader finds nothing and waits again...
        assert!(rx.poll_recv(&mut cx).is_pending());
        // ...and the next send must still wake it.
        tx.send(Control::Closed).unwrap();
        assert_eq!(count.get(), 2, "the next send's wake was lost");
    }

    #[test]
    fn a_send_from_another_thread_is_never_lost() {
        for _ in 0..200 {
            let (tx, mut rx) = channel();
            let count = Arc::new(WakeCount::default());
            let waker = Waker::from(count.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(rx.poll_recv(&mut cx).is_pending());
            let sender = std::thread::spawn(move || {
                for i in 0..10 {
                    tx.send(Control::BlockingDone(i)).unwrap();
                }
            });
            let mut got = 0;
            let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while got < 10 {
                let before = count.get();
                match rx.poll_recv(&mut cx) {
                    Poll::Ready(Some(Control::BlockingDone(i))) => {
                        assert_eq!(i, got);
                        got += 1;
                    }
                    Poll::Ready(other) => panic!("unexpected {other:?}"),
                    Poll::Pending => {
                        // More sends are coming, so a `Pending` must be
                        // followed by a wake-up (as a task would need).
                        while count.get() == before {
                            assert!(std::time::Instant::now() < end, "a lost wake-up");
                            std::thread::yield_now();
                        }
                    }
                }
            }
            sender.join().unwrap();
            assert!(rx.poll_recv(&mut cx).is_pending());
        }
    }

    #[test]
    fn after_close_sends_are_refused_and_the_queue_is_empty() {
        let (tx, mut rx) = channel();
        tx.send(Control::Rearm).unwrap();
        rx.close();
        assert!(tx.send(Control::Rearm).is_err());
        let waker = Waker::from(Arc::new(WakeCount::default()));
        assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
    }
}
