//! What the code serving a call knows about it: the peer of its connection
//! ([`Peer::current`]) and the deadline that calls made from it inherit
//! ([`crate::remaining`]). One task-local holds both, so a handler's poll
//! enters one scope, not two; a thread-local holds them on the blocking
//! thread that runs a `CallCx::blocking` closure.

use std::cell::{Cell, RefCell};
use std::future::Future;

use crate::peer::Peer;
use crate::rt::time::Instant;

/// The call being served, as the task (or blocking thread) sees it.
struct Ambient {
    /// Set in a handler; `None` in a `with_timeout` outside one, or in a
    /// task spawned to carry a deadline over. A `Cell`, so an inline first
    /// poll's lent peer goes back to its lender ([`sync_scope_lent`]).
    peer: Cell<Option<Peer>>,
    deadline: Instant,
}

tokio::task_local! {
    static AMBIENT: Ambient;
}

thread_local! {
    static BLOCKING: RefCell<Option<(Peer, Instant)>> = const { RefCell::new(None) };
}

/// The deadline inherited by a call made now, if any.
pub(crate) fn deadline() -> Option<Instant> {
    AMBIENT
        .try_with(|a| a.deadline)
        .ok()
        .or_else(|| BLOCKING.with(|b| b.borrow().as_ref().map(|(_, d)| *d)))
}

/// The peer of the call a task serves, not looking at the blocking thread.
fn task_peer() -> Option<Peer> {
    AMBIENT
        .try_with(|a| {
            let peer = a.peer.take();
            let copy = peer.clone();
            a.peer.set(peer);
            copy
        })
        .ok()
        .flatten()
}

impl Peer {
    /// The peer of the connection whose call is being served by the
    /// current task or blocking closure; `None` outside a method handler.
    /// Like [`remaining`](crate::remaining), it is set while a handler
    /// runs, including its first (inline) poll and
    /// `CallCx::blocking` closures.
    ///
    /// ```
    /// assert!(remote_core::Peer::current().is_none());
    /// ```
    pub fn current() -> Option<Peer> {
        task_peer().or_else(|| BLOCKING.with(|b| b.borrow().as_ref().map(|(p, _)| p.clone())))
    }
}

/// Runs `fut` (a handler's later polls) serving a call of `peer`'s, with
/// `deadline` inherited.
pub(crate) fn scope<F: Future>(
    peer: Peer,
    deadline: Instant,
    fut: F,
) -> impl Future<Output = F::Output> {
    let peer = Some(peer);
    AMBIENT.scope(
        Ambient {
            peer: Cell::new(peer),
            deadline,
        },
        fut,
    )
}

/// Runs `f` (a handler's first poll) serving a call of `*peer`'s, with
/// `deadline` inherited. The peer is lent, not cloned: it is back in
/// `peer` when `f` returns (a reference count less to touch per call),
/// and gone if `f` panics.
pub(crate) fn sync_scope_lent<R>(
    peer: &mut Option<Peer>,
    deadline: Instant,
    f: impl FnOnce() -> R,
) -> R {
    let lent = Ambient {
        peer: Cell::new(peer.take()),
        deadline,
    };
    AMBIENT.sync_scope(lent, || {
        let r = f();
        *peer = AMBIENT.with(|a| a.peer.take());
        r
    })
}

/// Runs `fut` with `deadline` inherited and the peer of the call this task
/// serves (read now, so call it where `fut` will run: in an `async` body).
pub(crate) fn deadline_scope_here<F: Future>(
    deadline: Instant,
    fut: F,
) -> impl Future<Output = F::Output> {
    let peer = task_peer();
    AMBIENT.scope(
        Ambient {
            peer: Cell::new(peer),
            deadline,
        },
        fut,
    )
}

/// Runs `fut` (the body of a task spawned to carry a deadline over, which
/// serves no call) with `deadline` inherited.
pub(crate) fn deadline_scope<F: Future>(
    deadline: Instant,
    fut: F,
) -> impl Future<Output = F::Output> {
    AMBIENT.scope(
        Ambient {
            peer: Cell::new(None),
            deadline,
        },
        fut,
    )
}

/// Runs `f` on a blocking thread serving a call of `peer`'s, with
/// `deadline` inherited.
pub(crate) fn blocking_scope<R>(peer: Peer, deadline: Instant, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(Peer, Instant)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            BLOCKING.with(|b| *b.borrow_mut() = prev);
        }
    }
    let prev = BLOCKING.with(|b| b.borrow_mut().replace((peer, deadline)));
    let _restore = Restore(prev);
    f()
}
