//! Where the replies to our calls wait for their callers: one slot per call
//! in a table the connection keeps, with the caller's waker, instead of a
//! `oneshot` channel (an allocation) per call.
//!
//! The caller opens a slot when it sends the call ([`Replies::open`]) and
//! its [`Key`] goes into the call's `Waiter`; the connection delivers the
//! outcome into the slot and wakes the caller ([`Replies::deliver`]); the
//! caller takes it ([`Replies::poll`]) or, dropped first, closes the slot
//! ([`Replies::close`]). A key names one call only: a slot reused by a later
//! call has a new generation, so a late delivery to a closed slot is
//! dropped. The reader hands over the replies of a run of frames together
//! ([`Deliveries`], [`Replies::deliver_all`]) when it next waits: one lock
//! for the run, and on several workers the callers, woken together, make
//! their next calls together, so that these leave in one write rather
//! than a few each. The table's lock is a leaf: nothing else is locked and no
//! value is dropped while it is held (a reply holds references whose
//! destructors may make or drop calls). It grows to the most calls waiting
//! at once (bounded by `max_outgoing_calls`) and is freed with the
//! connection.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use super::control::Incoming;
use super::shared::lock;
use super::teardown::{drop_caught, drop_each_caught};
use crate::Error;

/// A call's outcome: `None` if the connection dropped the call without one
/// (the caller reports the connection's loss).
pub(crate) type Outcome = Option<Result<Incoming, Error>>;

/// Names one call's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    index: usize,
    generation: u64,
}

#[derive(Default)]
pub(crate) struct Replies(Mutex<Table>);

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    /// Indices of vacant slots.
    free: Vec<usize>,
    /// The generation of the next slot opened.
    next: u64,
}

impl Table {
    /// `key`'s slot, if it is still that call's.
    fn slot(&mut self, key: Key) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index)
            .filter(|s| s.generation == key.generation)
    }
}

struct Slot {
    generation: u64,
    state: State,
}

// Unboxed on purpose: boxing the outcome would put back the allocation per
// call this table removes; the table holds only the calls waiting at once.
#[allow(clippy::large_enum_variant)]
enum State {
    Vacant,
    Waiting(Waker),
    Ready(Outcome),
}

/// Replies the reader took from a run of frames, waiting to be handed to
/// their callers ([`Replies::deliver_all`]) when the reader next waits for
/// input, or once [`Deliveries::FULL`] have gathered. A run's only reply
/// (a lone call's) is held inline; the room a burst grew (at most `FULL`
/// replies) is given back at the reader's next timer turn
/// ([`shed`](Self::shed)), so an idle connection holds none.
///
/// Only on a runtime with several workers: on one thread the callers run
/// after the reader waits anyway, and the batch would only add moves of
/// each outcome ([`Deliveries::new`]).
#[derive(Default)]
pub(crate) struct Deliveries {
    /// Whether replies are batched at all (otherwise each is handed over
    /// where it is read).
    batch: bool,
    first: Option<(Key, Outcome)>,
    more: Vec<(Key, Outcome)>,
    wakers: Vec<Waker>,
}

impl Deliveries {
    /// Replies held at most before they are handed over: a long run of
    /// frames does not keep its first callers waiting for its end.
    pub(crate) const FULL: usize = 64;

    /// Batches replies if `batch` (a runtime with several workers).
    pub(crate) fn new(batch: bool) -> Self {
        Deliveries {
            batch,
            ..Default::default()
        }
    }

    /// Whether replies wait here (or are handed over at once).
    pub(crate) fn batches(&self) -> bool {
        self.batch
    }

    /// Adds a reply; `true` if [`FULL`](Self::FULL) are now waiting.
    pub(crate) fn push(&mut self, key: Key, outcome: Outcome) -> bool {
        if self.first.is_none() {
            self.first = Some((key, outcome));
            return Self::FULL == 1;
        }
        self.more.push((key, outcome));
        self.more.len() + 1 >= Self::FULL
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Gives back the room a burst grew (nothing is waiting then: the
    /// reader hands its replies over before it waits).
    pub(crate) fn shed(&mut self) {
        if self.is_empty() {
            self.more = Vec::new();
            self.wakers = Vec::new();
        }
    }
}

/// What a reply whose caller is gone is called in a destructor's panic.
const GONE: &str = "a reply whose caller is gone";

/// Puts `outcome` in `key`'s slot if its caller waits there, returning its
/// waker; otherwise gives the outcome back (the caller closed the slot, or
/// it already has its outcome: the first one stays).
fn put(t: &mut Table, key: Key, outcome: Outcome) -> Result<Waker, Outcome> {
    match t.slot(key) {
        Some(Slot {
            state: state @ State::Waiting(_),
            ..
        }) => match std::mem::replace(state, State::Ready(outcome)) {
            State::Waiting(waker) => Ok(waker),
            // Just matched as waiting.
            _ => Err(None),
        },
        _ => Err(outcome),
    }
}

/// Wakes a caller; a waker that panics (a caller's own executor's) is
/// logged, not passed on.
fn wake_caught(waker: Waker, peer: &str) {
    let woken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
    if let Err(panic) = woken {
        let msg = super::panics::panic_error(panic).message;
        tracing::error!(name: "remote.waker_panicked", peer = %peer, "a caller's waker panicked: {msg}");
    }
}

impl Replies {
    /// A slot for a new call, whose caller `waker` wakes.
    pub(crate) fn open(&self, waker: &Waker) -> Key {
        let mut t = lock(&self.0);
        let generation = t.next;
        t.next += 1;
        let slot = Slot {
            generation,
            state: State::Waiting(waker.clone()),
        };
        let index = match t.free.pop() {
            Some(i) => {
                t.slots[i] = slot;
                i
            }
            None => {
                // One slot for a connection's first call (an idle
                // connection stays small), doubling from there.
                if t.slots.capacity() == 0 {
                    t.slots.reserve_exact(1);
                }
                t.slots.push(slot);
                t.slots.len() - 1
            }
        };
        Key { index, generation }
    }

    /// Hands a call its outcome and wakes its caller. `false` (and the
    /// outcome dropped, outside the lock) if the caller is gone.
    pub(crate) fn deliver(&self, key: Key, outcome: Outcome) -> bool {
        let put = put(&mut lock(&self.0), key, outcome);
        match put {
            Ok(waker) => {
                waker.wake();
                true
            }
            Err(undelivered) => {
                drop(undelivered);
                false
            }
        }
    }

    /// Hands over every reply in `d` under one lock, then wakes their
    /// callers; replies whose callers are gone are dropped after, outside
    /// the lock. Never unwinds (it also runs while the reader unwinds,
    /// `reader.rs`): a panicking waker or destructor is caught and logged
    /// for `peer`, and the other callers are still woken.
    pub(crate) fn deliver_all(&self, d: &mut Deliveries, peer: &str) {
        let Some((key, outcome)) = d.first.take() else {
            return;
        };
        // A lone reply: the single hand-over, without the batch's
        // bookkeeping.
        if d.more.is_empty() {
            let put = put(&mut lock(&self.0), key, outcome);
            match put {
                Ok(waker) => wake_caught(waker, peer),
                Err(late) => drop_caught(peer, GONE, late),
            }
            return;
        }
        // Outcomes whose callers are gone (rare: no allocation otherwise).
        let mut late = Vec::new();
        {
            let mut guard = lock(&self.0);
            let all = std::iter::once((key, outcome)).chain(d.more.drain(..));
            for (key, outcome) in all {
                match put(&mut guard, key, outcome) {
                    Ok(waker) => d.wakers.push(waker),
                    Err(outcome) => late.push(outcome),
                }
            }
        }
        for waker in d.wakers.drain(..) {
            wake_caught(waker, peer);
        }
        if !late.is_empty() {
            drop_each_caught(peer, GONE, late);
        }
    }

    /// The call's outcome if it has arrived (the slot is then vacated);
    /// otherwise remembers `cx`'s waker.
    pub(crate) fn poll(&self, key: Key, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut guard = lock(&self.0);
        let t = &mut *guard;
        let Some(s) = t.slot(key) else {
            return Poll::Ready(None);
        };
        match &mut s.state {
            State::Waiting(w) => {
                if !w.will_wake(cx.waker()) {
                    w.clone_from(cx.waker());
                }
                Poll::Pending
            }
            State::Ready(_) => {
                let old = std::mem::replace(&mut s.state, State::Vacant);
                t.free.push(key.index);
                drop(guard);
                match old {
                    State::Ready(outcome) => Poll::Ready(outcome),
                    _ => Poll::Ready(None),
                }
            }
            State::Vacant => Poll::Ready(None),
        }
    }

    /// The caller is gone: vacates its slot (an outcome already there is
    /// dropped outside the lock).
    pub(crate) fn close(&self, key: Key) {
        let old = {
            let mut guard = lock(&self.0);
            let t = &mut *guard;
            let old = match t.slot(key) {
                Some(s) => std::mem::replace(&mut s.state, State::Vacant),
                None => State::Vacant,
            };
            if !matches!(old, State::Vacant) {
                t.free.push(key.index);
            }
            old
        };
        drop(old);
    }

    /// Slots in use (tests).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        let t = lock(&self.0);
        t.slots.len() - t.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::tests_wake::counting_waker as waker;

    fn lost() -> Outcome {
        Some(Err(Error::ConnectionLost("test".into())))
    }

    #[test]
    fn a_delivered_outcome_wakes_the_caller_once_and_is_taken_once() {
        let r = Replies::default();
        let (count, w) = waker();
        let key = r.open(&w);
        let mut cx = Context::from_waker(&w);
        assert!(r.poll(key, &mut cx).is_pending());
        assert!(r.deliver(key, lost()));
        assert_eq!(count.get(), 1);
        assert!(matches!(
            r.poll(key, &mut cx),
            Poll::Ready(Some(Err(Error::ConnectionLost(_))))
        ));
        assert_eq!(r.in_use(), 0);
    }

    #[test]
    fn a_late_delivery_never_reaches_the_next_call_in_the_same_slot() {
        let r = Replies::default();
        let (_c, w) = waker();
        let old = r.open(&w);
        r.close(old);
        let new = r.open(&w);
        assert_eq!(new.index, old.index, "the slot is reused");
        assert!(!r.deliver(old, lost()), "the old call's reply is dropped");
        let mut cx = Context::from_waker(&w);
        assert!(
            r.poll(new, &mut cx).is_pending(),
            "the new call still waits"
        );
        assert_eq!(r.in_use(), 1);
    }

    #[test]
    fn closing_a_slot_with_an_outcome_frees_it() {
        let r = Replies::default();
        let (_c, w) = waker();
        let key = r.open(&w);
        assert!(r.deliver(key, lost()));
        r.close(key);
        assert_eq!(r.in_use(), 0);
        r.close(key);
        assert_eq!(r.in_use(), 0, "closing twice frees once");
    }

    #[test]
    fn a_batch_wakes_each_waiting_caller_once_and_drops_the_rest() {
        let r = Replies::default();
        let (a, wa) = waker();
        let (b, wb) = waker();
        let (gone, wg) = waker();
        let (ka, kb, kg) = (r.open(&wa), r.open(&wb), r.open(&wg));
        r.close(kg);
        let mut d = Deliveries::new(true);
        assert!(!d.push(ka, lost()));
        assert!(!d.push(kg, lost()));
        assert!(!d.push(kb, None));
        assert_eq!((a.get(), b.get()), (0, 0), "nothing is handed over before");
        r.deliver_all(&mut d, "test");
        assert!(d.is_empty());
        assert_eq!((a.get(), b.get(), gone.get()), (1, 1, 0));
        let mut cx = Context::from_waker(&wa);
        assert!(matches!(r.poll(ka, &mut cx), Poll::Ready(Some(Err(_)))));
        assert!(matches!(r.poll(kb, &mut cx), Poll::Ready(None)));
        assert_eq!(r.in_use(), 0, "the closed slot took nothing");
        // A reply already handed over (e.g. by a deadline's sweep) stays.
        let kc = r.open(&wa);
        assert!(r.deliver(kc, None));
        d.push(kc, lost());
        r.deliver_all(&mut d, "test");
        assert!(matches!(r.poll(kc, &mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_batch_says_when_it_is_full() {
        let r = Replies::default();
        let (_c, w) = waker();
        let mut d = Deliveries::new(true);
        let full = (0..Deliveries::FULL).map(|_| d.push(r.open(&w), None));
        assert_eq!(
            full.filter(|f| *f).count(),
            1,
            "only the last push fills it"
        );
    }

    /// One of our objects whose destructor panics.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("a destructor that panics");
        }
    }

    impl crate::interface::Dispatch for Bomb {
        fn interface_name(&self) -> &'static str {
            "Bomb"
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn call(
            &self,
            _: &str,
            _: crate::interface::Args<'_>,
            _: crate::interface::CallCx,
        ) -> Result<crate::interface::CallFuture, Error> {
            Err(Error::Protocol("not called".into()))
        }
    }

    /// A reply holding the last reference to a [`Bomb`].
    fn carrying_bomb() -> Outcome {
        Some(Ok(Incoming {
            frame: bytes::Bytes::new(),
            result: Ok(0..0),
            refs: Default::default(),
            owns: vec![(
                crate::proto::ObjectId(1),
                std::sync::Arc::new(Bomb) as std::sync::Arc<dyn crate::interface::Dispatch>,
            )],
            heavy: None,
        }))
    }

    // Found by a red-team pass: the batch dropped a gone caller's reply
    // before waking the others, and a panic there (or in a waker) left
    // them waiting for good (their calls are out of the table the close
    // fails). It runs while the reader unwinds too, so it must not unwind.
    #[test]
    fn a_panicking_destructor_or_waker_in_a_batch_still_wakes_the_others() {
        let r = Replies::default();
        let (gone, wg) = waker();
        let (a, wa) = waker();
        let (b, wb) = waker();
        let bad = Waker::from(std::sync::Arc::new(PanicsOnWake));
        let (kg, ka, kp, kb) = (r.open(&wg), r.open(&wa), r.open(&bad), r.open(&wb));
        r.close(kg);
        let mut d = Deliveries::new(true);
        d.push(kg, carrying_bomb());
        d.push(ka, None);
        d.push(kp, None);
        d.push(kb, None);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.deliver_all(&mut d, "test")
        }));
        assert!(unwound.is_ok(), "nothing unwinds out of the hand-over");
        assert_eq!((gone.get(), a.get(), b.get()), (0, 1, 1));
        // A lone reply whose caller is gone, with a panicking destructor.
        let k = r.open(&wa);
        r.close(k);
        d.push(k, carrying_bomb());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.deliver_all(&mut d, "test")
        }));
        assert!(unwound.is_ok());
        assert!(d.is_empty());
    }

    struct PanicsOnWake;

    impl std::task::Wake for PanicsOnWake {
        fn wake(self: std::sync::Arc<Self>) {
            panic!("a waker that panics");
        }
    }

    #[test]
    fn a_new_waker_replaces_the_old_one() {
        let r = Replies::default();
        let (first, w1) = waker();
        let (second, w2) = waker();
        let key = r.open(&w1);
        assert!(r.poll(key, &mut Context::from_waker(&w2)).is_pending());
        assert!(r.deliver(key, None));
        assert_eq!(first.get(), 0);
        assert_eq!(second.get(), 1);
    }
}
