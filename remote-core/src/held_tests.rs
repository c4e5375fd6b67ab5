use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{ended, first_poll, hand_off, handed, hold, let_go, own_bytes, since_now, Kept};

/// A count that says when it is given back.
fn count(given_back: &Arc<AtomicUsize>) -> Kept {
    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    Box::new(Count(given_back.clone()))
}

fn back(n: &Arc<AtomicUsize>) -> usize {
    n.load(Ordering::SeqCst)
}

/// Outside a handler a count is given back at once; in a handler's first
/// poll it is held, and handed to its task at the end of it.
#[test]
fn a_first_poll_holds_what_it_decoded_for_its_task() {
    let n = Arc::new(AtomicUsize::new(0));
    hold(count(&n), (10, 1), since_now());
    assert_eq!(back(&n), 1, "held outside a handler");
    assert_eq!(own_bytes(1), 0);
    let ((), held) = first_poll(|| {
        hold(count(&n), (10, 1), since_now());
        assert_eq!(back(&n), 1);
        assert_eq!(own_bytes(1), 10);
    });
    assert!(held.is_some());
    assert_eq!(back(&n), 1);
    drop(held);
    assert_eq!(back(&n), 2);
    // Out of the first poll again: given back at once.
    hold(count(&n), (10, 1), since_now());
    assert_eq!(back(&n), 3);
}

/// A reply to a call started after an earlier reply was decoded lets
/// that one go (the handler moved on); replies to calls awaited together
/// are all held (red-team pass 48: held as the latest only, a handler
/// joining 16 callbacks held 134 MB against a 16 MiB budget).
#[test]
fn calls_awaited_together_hold_every_reply_and_a_later_call_lets_them_go() {
    let n = Arc::new(AtomicUsize::new(0));
    let ((), held) = first_poll(|| {
        // Three calls started together, answered one after another.
        let started = [since_now(), since_now(), since_now()];
        for since in started {
            hold(count(&n), (100, 1), since);
        }
        assert_eq!(back(&n), 0, "replies awaited together are all held");
        assert_eq!(own_bytes(1), 300);
        // A call started now, after them: waiting for room, it lets them
        // go.
        let next = since_now();
        let_go(next);
        assert_eq!(back(&n), 3);
        hold(count(&n), (100, 1), next);
        // Another call, one after another: its reply replaces it.
        hold(count(&n), (100, 1), since_now());
        assert_eq!(back(&n), 4);
        assert_eq!(own_bytes(1), 100);
    });
    drop(held);
    assert_eq!(back(&n), 5);
}

/// Work handed to a blocking thread shares the handler's holding: what
/// the handler holds stays held when the work makes no call (taken over
/// and dropped there, a reply the handler still held counted nothing:
/// red-team pass 48), and a call made there lets it go as the handler's
/// own would. When the handler ends, what it held goes, even while
/// handed work it did not wait for still shares it.
#[test]
fn work_handed_to_a_blocking_thread_shares_the_handlers_holding() {
    let n = Arc::new(AtomicUsize::new(0));
    let (shared, held) = first_poll(|| {
        hold(count(&n), (1, 1), since_now());
        hand_off()
    });
    let held = held.expect("the first poll held a count");
    handed(shared.clone(), || ());
    assert_eq!(back(&n), 0, "the work made no call");
    let since = since_now();
    handed(shared.clone(), || hold(count(&n), (1, 1), since));
    assert_eq!(back(&n), 1, "the work's call moved on");
    assert_eq!(held.lock().unwrap().len(), 1);
    // The handler ends while `shared` (detached work) lives on.
    ended(Some(held));
    assert_eq!(back(&n), 2);
    drop(shared);
}

/// A first poll that panics gives back what it held, and leaves no first
/// poll behind.
#[test]
fn a_panicking_first_poll_gives_back_what_it_held() {
    let n = Arc::new(AtomicUsize::new(0));
    let panicked = std::panic::catch_unwind(|| {
        first_poll(|| {
            hold(count(&n), (1, 1), since_now());
            panic!("in the first poll");
        })
    });
    assert!(panicked.is_err());
    assert_eq!(back(&n), 1);
    hold(count(&n), (1, 1), since_now());
    assert_eq!(back(&n), 2, "still in a first poll");
}
