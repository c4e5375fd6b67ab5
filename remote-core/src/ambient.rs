//! What the code serving a call knows about it: the peer of its connection
//! ([`Peer::current`]) and the deadline that calls made from it inherit
//! ([`crate::remaining`]). One task-local holds both, so a handler's poll
//! enters one scope, not two; a thread-local holds them on the blocking
//! thread that runs a `CallCx::blocking` closure. What heavy replies
//! decoded in a handler count in the memory budget is held beside them
//! (`held.rs`).

use std::cell::RefCell;
use std::future::Future;

use crate::held::Holding;
use crate::peer::Peer;
use crate::rt::time::Instant;

/// The call being served, as the task (or blocking thread) sees it.
struct Ambient {
    /// Set in a handler; `None` in a `with_timeout` outside one, or in a
    /// task spawned to carry a deadline over.
    peer: Option<Peer>,
    deadline: Instant,
}

tokio::task_local! {
    static AMBIENT: Ambient;
}

thread_local! {
    static BLOCKING: RefCell<Option<(Peer, Instant)>> = const { RefCell::new(None) };
}

/// Whether this is a blocking thread serving a call ([`blocking_scope`]).
pub(crate) fn on_blocking_thread() -> bool {
    BLOCKING.with(|b| b.borrow().is_some())
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
    AMBIENT.try_with(|a| a.peer.clone()).ok().flatten()
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
/// `deadline` inherited, holding `held` (what its first poll held:
/// [`sync_scope`]; `held.rs`).
pub(crate) fn scope<F: Future>(
    peer: Peer,
    deadline: Instant,
    held: Option<Holding>,
    fut: F,
) -> impl Future<Output = F::Output> {
    crate::held::in_task(
        held,
        AMBIENT.scope(
            Ambient {
                peer: Some(peer),
                deadline,
            },
            fut,
        ),
    )
}

/// Runs `f` (a handler's first poll) serving a call of `peer`'s, with
/// `deadline` inherited. Returns with its output what it holds of the
/// replies it decoded, for its task to hold if it runs on (`held.rs`).
pub(crate) fn sync_scope<R>(
    peer: Peer,
    deadline: Instant,
    f: impl FnOnce() -> R,
) -> (R, Option<Holding>) {
    crate::held::first_poll(|| {
        AMBIENT.sync_scope(
            Ambient {
                peer: Some(peer),
                deadline,
            },
            f,
        )
    })
}

/// Runs `fut` with `deadline` inherited and the peer of the call this task
/// serves (read now, so call it where `fut` will run: in an `async` body).
pub(crate) fn deadline_scope_here<F: Future>(
    deadline: Instant,
    fut: F,
) -> impl Future<Output = F::Output> {
    AMBIENT.scope(
        Ambient {
            peer: task_peer(),
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
            peer: None,
            deadline,
        },
        fut,
    )
}

/// Runs `f` on a blocking thread serving a call of `peer`'s, with
/// `deadline` inherited, and a holding of its own (`held.rs`).
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
    // What the closure held goes at its end; its caller's (if nested) is
    // back.
    let _held = crate::held::on_thread(None, true);
    f()
}
