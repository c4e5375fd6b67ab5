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
    /// decoded in it ([`hold`]), given back when it ends; it starts with
    /// what its first poll held (`FIRST_HELD`). (Apart from `AMBIENT`,
    /// which a handler's first poll also sets and whose value moves in and
    /// out of the task-local on every poll: a handler done in its first
    /// poll, the usual kind, could not await a reply.)
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
/// handler (its first poll, then its task; or a blocking handler's or
/// closure's thread), until
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
    if let Some(c) = charged.take() {
        charged = first_poll_holds(Some(c)).err().flatten();
    }
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
    let _ = first_poll_holds(None);
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
    let first = FIRST_HELD.with(|first| {
        let held = first.take();
        first.set(held.as_ref().map(|_| None));
        held.flatten()
    });
    if first.is_some() {
        return first;
    }
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
    /// In a handler's first poll, run by the reader ([`sync_scope`]): the
    /// count of the latest heavy reply decoded in it (`Some(None)`: none
    /// yet). `None` anywhere else.
    static FIRST_HELD: Cell<Option<Option<Kept>>> = const { Cell::new(None) };
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
/// `deadline` inherited, holding `held` (what its first poll held:
/// [`sync_scope`]).
pub(crate) fn scope<F: Future>(
    peer: Peer,
    deadline: Instant,
    held: Option<Kept>,
    fut: F,
) -> impl Future<Output = F::Output> {
    HELD.scope(
        Cell::new(held),
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
/// `deadline` inherited. Returns with its output the count of the latest
/// heavy reply decoded in it ([`hold`]), for the handler's task to hold
/// ([`scope`]) if it runs on: given back at once, a cached hit decoded
/// there and held by the handler while it waited on counted nothing (a
/// review: 100 handlers held 36 MB against a 16 MiB budget).
pub(crate) fn sync_scope<R>(
    peer: Peer,
    deadline: Instant,
    f: impl FnOnce() -> R,
) -> (R, Option<Kept>) {
    /// Puts back what was there before (also on a panic, dropping what
    /// the poll held).
    struct Restore(Option<Option<Kept>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let held = FIRST_HELD.with(|first| first.replace(self.0.take()));
            drop(held);
        }
    }
    let _restore = Restore(FIRST_HELD.with(|first| first.replace(Some(None))));
    let out = AMBIENT.sync_scope(
        Ambient {
            peer: Some(peer),
            deadline,
        },
        f,
    );
    let held = FIRST_HELD.with(|first| first.replace(Some(None))).flatten();
    (out, held)
}

/// In a handler's first poll ([`sync_scope`]): holds `new` as the count
/// of its latest heavy reply, giving back the one before. `Err` with `new`
/// anywhere else.
fn first_poll_holds(new: Option<Kept>) -> Result<(), Option<Kept>> {
    FIRST_HELD.with(|first| match first.take() {
        Some(before) => {
            first.set(Some(new));
            drop(before);
            Ok(())
        }
        None => Err(new),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::{hand_off, hold, let_go, sync_scope, Kept};
    use crate::peer::Peer;
    use crate::rt::time::Instant;

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

    fn first_poll<R>(f: impl FnOnce() -> R) -> (R, Option<Kept>) {
        let peer = Peer::new("test".into(), None, None, 1 << 20, None);
        sync_scope(peer, Instant::now(), f)
    }

    /// A handler's first poll holds its latest heavy reply's count, for
    /// its task to hold on; elsewhere a count is given back at once.
    #[test]
    fn a_first_poll_holds_its_latest_count_for_its_task() {
        let back = Arc::new(AtomicUsize::new(0));
        hold(count(&back));
        assert_eq!(back.load(Ordering::SeqCst), 1, "held outside a handler");
        let ((), held) = first_poll(|| {
            hold(count(&back));
            hold(count(&back));
            // The one before is given back.
            assert_eq!(back.load(Ordering::SeqCst), 2);
        });
        assert!(held.is_some());
        assert_eq!(back.load(Ordering::SeqCst), 2);
        drop(held);
        assert_eq!(back.load(Ordering::SeqCst), 3);
        // Out of the first poll again: given back at once.
        hold(count(&back));
        assert_eq!(back.load(Ordering::SeqCst), 4);
    }

    /// A first poll lets go of its count before waiting for room, and
    /// hands it to work it gives a blocking thread; a panic in it gives
    /// the count back.
    #[test]
    fn a_first_poll_lets_go_hands_off_and_gives_back_on_a_panic() {
        let back = Arc::new(AtomicUsize::new(0));
        let ((), held) = first_poll(|| {
            hold(count(&back));
            let_go();
            assert_eq!(back.load(Ordering::SeqCst), 1);
        });
        assert!(held.is_none());
        let (handed, held) = first_poll(|| {
            hold(count(&back));
            hand_off()
        });
        assert!(handed.is_some() && held.is_none());
        drop(handed);
        assert_eq!(back.load(Ordering::SeqCst), 2);
        let panicked = std::panic::catch_unwind(|| {
            first_poll(|| {
                hold(count(&back));
                panic!("in the first poll");
            })
        });
        assert!(panicked.is_err());
        assert_eq!(back.load(Ordering::SeqCst), 3);
        hold(count(&back));
        assert_eq!(back.load(Ordering::SeqCst), 4, "still in a first poll");
    }
}
