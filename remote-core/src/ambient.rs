//! What the code serving a call knows about it: the peer of its connection
//! ([`Peer::current`]) and the deadline that calls made from it inherit
//! ([`crate::remaining`]). One task-local holds both, so a handler's poll
//! enters one scope, not two; a thread-local holds them on the blocking
//! thread that runs a `CallCx::blocking` closure. Another task-local,
//! around a spawned handler, keeps what heavy replies decoded in it count
//! in the memory budget until the handler ends ([`hold`]).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

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
    /// Around a spawned handler: the count of the latest heavy reply
    /// decoded in it ([`hold`]), given back when it ends. (Apart from
    /// `AMBIENT`, which a handler's first poll also sets and whose value
    /// moves in and out of the task-local on every poll: a handler done
    /// in its first poll, the usual kind, could not await a reply.)
    static HELD: Cell<Option<Kept>>;
    /// Set around a pull of a stream's batch ([`captured`]).
    static CAPTURE: RefCell<Vec<Kept>>;
}

/// What is kept alive for as long as a decoded value is held: the count
/// of a heavy reply in the memory budget (`driver::heavy_reply`), given
/// back when dropped.
pub(crate) type Kept = Box<dyn Send>;

/// Keeps `charged`, the count of a heavy reply just decoded, for as long
/// as what decoded it holds the value: around a stream's pull, for the
/// pulling stream to keep with the batch ([`captured`]); in a method
/// handler (its task, or a blocking handler's or closure's thread), until
/// the handler ends or decodes its next heavy reply ([`let_go`]), as it
/// holds its arguments; elsewhere (a task of the application's own, even
/// one a handler spawned) it is dropped now.
///
/// A handler holds the count of its *latest* heavy reply only: kept for
/// every one, an honest handler that asked a callback for 4.9 MB three
/// times over, dropping each, held the whole 8 MiB budget and then waited
/// for room only it could give (a red-team pass).
pub(crate) fn hold(charged: Kept) {
    let mut charged = Some(charged);
    let _ = CAPTURE.try_with(|held| held.borrow_mut().extend(charged.take()));
    if charged.is_some() {
        let _ = HELD.try_with(|held| drop(held.replace(charged.take())));
    }
    if charged.is_some() && BLOCKING.with(|b| b.borrow().is_some()) {
        BLOCKING_HELD.with(|held| drop(held.replace(charged.take())));
    }
}

/// Before a handler waits for room for a heavy reply: the count it holds
/// of the one before ([`hold`]) goes.
pub(crate) fn let_go() {
    let _ = HELD.try_with(|held| drop(held.take()));
    if BLOCKING.with(|b| b.borrow().is_some()) {
        BLOCKING_HELD.with(|held| drop(held.take()));
    }
}

pin_project_lite::pin_project! {
    /// [`captured`]'s future.
    pub(crate) struct Captured<F: Future> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<RefCell<Vec<Kept>>, F>,
    }
}

impl<F: Future> Future for Captured<F> {
    type Output = (F::Output, Vec<Kept>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        let out = ready!(inner.as_mut().poll(cx));
        let held = inner.take_value().map(RefCell::into_inner);
        Poll::Ready((out, held.unwrap_or_default()))
    }
}

/// Runs `fut` (a stream's pull), and returns with its output the counts
/// of the heavy replies it decoded ([`hold`]).
pub(crate) fn captured<F: Future>(fut: F) -> Captured<F> {
    Captured {
        inner: CAPTURE.scope(RefCell::default(), fut),
    }
}

pin_project_lite::pin_project! {
    /// [`for_blocking_thread`]'s future.
    pub(crate) struct ForBlocking<F: Future> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<Cell<Option<Kept>>, Captured<F>>,
    }
}

impl<F: Future> Future for ForBlocking<F> {
    type Output = (F::Output, Vec<Kept>, Option<Kept>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        let (out, kept) = ready!(inner.as_mut().poll(cx));
        let held = inner.take_value().and_then(Cell::into_inner);
        Poll::Ready((out, kept, held))
    }
}

/// Runs `fut`, a call a blocking thread makes (in a task, while the
/// thread waits): the count that thread holds ([`hold`]) goes with it,
/// to be let go if it waits for room for a heavy reply ([`let_go`]), as a
/// handler's task lets go of its own (kept on the thread, a blocking
/// handler making heavy calls one after another waited for room only it
/// held, until its deadline). Returns with its output the counts of the
/// heavy replies it decoded, and the thread's count if not let go: give
/// both to [`back_on_blocking_thread`]. Call it on the blocking thread.
pub(crate) fn for_blocking_thread<F: Future>(fut: F) -> ForBlocking<F> {
    let held = BLOCKING_HELD.with(Cell::take);
    ForBlocking {
        inner: HELD.scope(Cell::new(held), captured(fut)),
    }
}

/// Work a handler hands to a blocking thread
/// (`blocking::spawn_blocking`): the count it holds ([`hold`]) goes with
/// it, to be held there ([`handed`]) and let go if a call made there waits
/// for room for a heavy reply (held by the handler, which awaits the work,
/// the call waited for room only the handler could give, until its
/// deadline: a red-team pass). Call it in the handler (its task, or a
/// blocking handler's thread).
pub(crate) fn hand_off() -> Option<Kept> {
    let held = HELD.try_with(Cell::take).ok().flatten();
    if held.is_some() || BLOCKING.with(|b| b.borrow().is_none()) {
        return held;
    }
    BLOCKING_HELD.with(Cell::take)
}

/// Runs `f` on a blocking thread, holding `held` ([`hand_off`]) as the
/// thread's count for the calls `f` makes ([`for_blocking_thread`]);
/// whatever of it is left goes when `f` returns.
pub(crate) fn handed<R>(held: Option<Kept>, f: impl FnOnce() -> R) -> R {
    if held.is_none() {
        return f();
    }
    struct Restore(Option<Kept>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let held = BLOCKING_HELD.with(|h| h.replace(self.0.take()));
            drop(held);
        }
    }
    let prev = BLOCKING_HELD.with(|h| h.replace(held));
    let _restore = Restore(prev);
    f()
}

/// Back on the blocking thread after [`for_blocking_thread`]: its count,
/// then the latest heavy reply's, held there.
pub(crate) fn back_on_blocking_thread(held: Option<Kept>, kept: Vec<Kept>) {
    // Only a thread in `blocking_scope` had one to give.
    if held.is_some() {
        BLOCKING_HELD.with(|h| drop(h.replace(held)));
    }
    kept.into_iter().for_each(hold);
}

thread_local! {
    static BLOCKING: RefCell<Option<(Peer, Instant)>> = const { RefCell::new(None) };
    /// A blocking handler's or closure's [`HELD`].
    static BLOCKING_HELD: Cell<Option<Kept>> = const { Cell::new(None) };
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
/// `deadline` inherited.
pub(crate) fn scope<F: Future>(
    peer: Peer,
    deadline: Instant,
    fut: F,
) -> impl Future<Output = F::Output> {
    HELD.scope(
        Cell::new(None),
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
/// `deadline` inherited.
pub(crate) fn sync_scope<R>(peer: Peer, deadline: Instant, f: impl FnOnce() -> R) -> R {
    AMBIENT.sync_scope(
        Ambient {
            peer: Some(peer),
            deadline,
        },
        f,
    )
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
/// `deadline` inherited.
pub(crate) fn blocking_scope<R>(peer: Peer, deadline: Instant, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(Peer, Instant)>, Option<Kept>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            BLOCKING.with(|b| *b.borrow_mut() = prev);
            // What the closure held goes; its caller's (if nested) is back.
            let held = BLOCKING_HELD.with(|h| h.replace(self.1.take()));
            drop(held);
        }
    }
    let prev = BLOCKING.with(|b| b.borrow_mut().replace((peer, deadline)));
    let held = BLOCKING_HELD.with(Cell::take);
    let _restore = Restore(prev, held);
    f()
}
