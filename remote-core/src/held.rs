//! Where the counts of heavy replies in the memory budget
//! (`driver::heavy_reply`) are kept while the values they decoded may be
//! held: by the method handler that made the calls (its first poll, its
//! task, a blocking handler's or closure's thread), by a stream's pull
//! for the batch it fills, and nowhere else.
//!
//! A handler holds the counts of the replies it decoded until it ends, or
//! until it moves on: a reply to a call it *started* after an earlier
//! reply was decoded lets that earlier one go, when it is decoded or
//! waits for room ([`let_go`]). So a handler that asks for large values
//! one after another, dropping each, holds one at a time (kept for every
//! one, an honest handler that asked a callback for 4.9 MB three times
//! over held the whole 8 MiB budget and then waited for room only it
//! could give: a red-team pass), while one that awaits several calls
//! together (`join!`, `select!`, a `FuturesUnordered`) holds every reply
//! they return (its latest one only, a handler joining 16 callbacks held
//! 134 MB against a 16 MiB budget that counted 9.8 MB: red-team pass 48).
//! A call's start is a number drawn from one counter of decodes
//! ([`since_now`]), so telling the two apart costs a call one load. A
//! cached hit, or a pipelined call's typed error, starts and ends where
//! it is decoded.
//!
//! The runtime cannot see which values a handler still holds, so the rule
//! errs both ways, and says so (SECURITY.md):
//! - replies to calls awaited together count while the handler may hold
//!   them, even if it dropped them: a heavy reply that cannot fit in the
//!   budget beside them ([`own_bytes`]) fails at once with
//!   `limit_exceeded` (it waited for room only its own handler held, to
//!   its deadline: a review);
//! - branches of one handler that each start a call after another's
//!   reply was decoded let go of each other's replies.
//!
//! Work a handler hands to a blocking thread (`blocking::spawn_blocking`)
//! shares its holding: a call made there lets the handler's earlier
//! replies go as the handler's own would, and what is left stays the
//! handler's when the work ends (taken over and dropped there, a reply
//! the handler still held counted nothing: red-team pass 48).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

/// What is kept alive for as long as a decoded value is held: the count
/// of a heavy reply in the memory budget (`driver::heavy_reply`), given
/// back when dropped.
pub(crate) type Kept = Box<dyn Send>;

/// One count a handler holds.
pub(crate) struct Count {
    /// The decode it came from ([`since_now`]).
    seq: u64,
    /// Its bytes in the budget, and which budget (its address: a
    /// handler may hold replies counted in another connection's, a
    /// client's it made calls on).
    n: usize,
    budget: usize,
    /// Given back when dropped.
    _kept: Kept,
}

/// A handler's counts; shared with work it hands to a blocking thread.
pub(crate) type Holding = Arc<Mutex<Vec<Count>>>;

/// Decodes of replies held so far, in the whole process: a call started
/// at `n` (its [`since_now`]) was started after the decodes numbered
/// below `n`, and before the others. (64 bits: never wraps.)
static DECODES: AtomicU64 = AtomicU64::new(0);

/// Where a call started now stands among decodes ([`hold`], [`let_go`]).
#[inline]
pub(crate) fn since_now() -> u64 {
    DECODES.load(Ordering::Relaxed)
}

tokio::task_local! {
    /// Around a spawned handler (and a call a blocking thread makes, run
    /// in a task): its holding, made when first needed. It starts with
    /// what its first poll held ([`first_poll`]).
    static HELD: Cell<Option<Holding>>;
    /// Set around a pull of a stream's batch ([`captured`]).
    static CAPTURE: RefCell<Vec<Kept>>;
}

thread_local! {
    /// How many handlers' first polls, run by a reader ([`first_poll`]),
    /// are under way on this thread (nested, the innermost is polled).
    /// Apart from [`FIRST_HELD`] so that a first poll that holds nothing,
    /// the usual kind, touches nothing with a destructor.
    static FIRST_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The holdings of those first polls that have one, by depth.
    static FIRST_HELD: RefCell<Vec<(u32, Holding)>> = const { RefCell::new(Vec::new()) };
    /// Whether [`FIRST_HELD`] has any.
    static FIRST_ANY: Cell<bool> = const { Cell::new(false) };
    /// A blocking handler's or closure's holding, on its thread.
    static BLOCKING_HELD: RefCell<Option<Holding>> = const { RefCell::new(None) };
}

/// The holding of the innermost first poll under way at `depth`, made if
/// `make`.
fn first_holding(depth: u32, make: bool) -> Option<Holding> {
    FIRST_HELD.with(|c| {
        let mut all = c.borrow_mut();
        if let Some((_, h)) = all.last().filter(|(d, _)| *d == depth) {
            return Some(h.clone());
        }
        if !make {
            return None;
        }
        let h = Holding::default();
        all.push((depth, h.clone()));
        FIRST_ANY.with(|a| a.set(true));
        Some(h)
    })
}

/// At the end of the first poll at `depth`: its holding, if it has one.
#[inline]
fn first_done(depth: u32) -> Option<Holding> {
    FIRST_DEPTH.with(|d| d.set(depth - 1));
    if !FIRST_ANY.with(Cell::get) {
        return None;
    }
    first_held_done(depth)
}

#[cold]
fn first_held_done(depth: u32) -> Option<Holding> {
    FIRST_HELD.with(|c| {
        let mut all = c.borrow_mut();
        let h = match all.last() {
            Some((d, _)) if *d == depth => all.pop().map(|(_, h)| h),
            _ => None,
        };
        FIRST_ANY.with(|a| a.set(!all.is_empty()));
        h
    })
}

/// The slot `slot` holds, made if `make` and there is none.
fn made(slot: &mut Option<Holding>, make: bool) -> Option<Holding> {
    if slot.is_none() && make {
        *slot = Some(Holding::default());
    }
    slot.clone()
}

/// The holding of the handler running here (its first poll, its task, or
/// a blocking thread serving it), made if `make`; `None` elsewhere.
fn holding(make: bool) -> Option<Holding> {
    let depth = FIRST_DEPTH.with(Cell::get);
    if depth > 0 {
        return first_holding(depth, make);
    }
    if let Ok(h) = HELD.try_with(|c| {
        let mut slot = c.take();
        let h = made(&mut slot, make);
        c.set(slot);
        h
    }) {
        return h;
    }
    if crate::ambient::on_blocking_thread() || BLOCKING_HELD.with(|c| c.borrow().is_some()) {
        return BLOCKING_HELD.with(|c| made(&mut c.borrow_mut(), make));
    }
    None
}

fn lock(h: &Holding) -> std::sync::MutexGuard<'_, Vec<Count>> {
    h.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lets go of the counts in `h` decoded before `since`.
fn forget_before(h: &Holding, since: u64) {
    let gone: Vec<Count> = {
        let mut held = lock(h);
        let (gone, kept) = std::mem::take(&mut *held)
            .into_iter()
            .partition(|c| c.seq < since);
        *held = kept;
        gone
    };
    // Given back outside the lock.
    drop(gone);
}

/// A handler has ended (its task, its first poll, a blocking handler's
/// closure): what it held goes, also where work it handed to a blocking
/// thread and did not wait for still shares it (kept, 4.9 MB stayed
/// counted after such a handler returned, until the work ended: a
/// review).
pub(crate) fn ended(h: Option<Holding>) {
    if let Some(h) = h {
        let gone = std::mem::take(&mut *lock(&h));
        drop(gone);
    }
}

/// The bytes the handler running here holds of its replies in `budget`
/// (its address; summed over every budget, a count in a client
/// connection's refused a reply in the server's, a review).
pub(crate) fn own_bytes(budget: usize) -> usize {
    holding(false).map_or(0, |h| {
        lock(&h)
            .iter()
            .filter(|c| c.budget == budget)
            .map(|c| c.n)
            .sum()
    })
}

/// Keeps `charged`, `n` bytes counted in `budget` (its address) for a
/// reply just decoded (to a call started at `since`; a cached hit or a
/// pipelined call's typed
/// error starts and ends where it is decoded), for as long as what
/// decoded it may hold the value: around a stream's pull, for the pulling
/// stream to keep with the batch ([`captured`]); in a method handler,
/// until it ends or moves on (the module's docs); elsewhere (a task of
/// the application's own, even one a handler spawned) it is dropped now.
pub(crate) fn hold(charged: Kept, (n, budget): (usize, usize), since: u64) {
    let mut charged = Some(charged);
    let _ = CAPTURE.try_with(|held| held.borrow_mut().extend(charged.take()));
    let Some(kept) = charged else { return };
    let Some(h) = holding(true) else { return };
    forget_before(&h, since);
    let seq = DECODES.fetch_add(1, Ordering::Relaxed);
    lock(&h).push(Count {
        seq,
        n,
        budget,
        _kept: kept,
    });
}

/// Before a reply to a call started at `since` waits for room: the
/// handler lets go of the replies decoded before that call started.
pub(crate) fn let_go(since: u64) {
    if let Some(h) = holding(false) {
        forget_before(&h, since);
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
    /// [`in_task`]'s future.
    pub(crate) struct InTask<F: Future> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<Cell<Option<Holding>>, F>,
    }

    impl<F: Future> PinnedDrop for InTask<F> {
        fn drop(this: Pin<&mut Self>) {
            // The handler ended (or was stopped): its holding goes.
            ended(this.project().inner.take_value().and_then(Cell::into_inner));
        }
    }
}

impl<F: Future> Future for InTask<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

/// Runs `fut` (a handler's later polls, in its task) holding `held`,
/// what its first poll held ([`first_poll`]), until it ends.
pub(crate) fn in_task<F: Future>(held: Option<Holding>, fut: F) -> InTask<F> {
    InTask {
        inner: HELD.scope(Cell::new(held), fut),
    }
}

/// Runs `f`, a handler's first poll, and returns with its output what it
/// holds, for its task to hold on ([`in_task`]) if it runs on. (Given
/// back at once, a cached hit decoded there and held by the handler
/// while it waited on counted nothing: a review, 100 handlers held 103 MB
/// against a 16 MiB budget.)
#[inline]
pub(crate) fn first_poll<R>(f: impl FnOnce() -> R) -> (R, Option<Holding>) {
    /// Ends the first poll, also on a panic (dropping what it held).
    struct Done(u32);
    impl Drop for Done {
        fn drop(&mut self) {
            ended(first_done(self.0));
        }
    }
    let depth = FIRST_DEPTH.with(|d| {
        let depth = d.get() + 1;
        d.set(depth);
        depth
    });
    let done = Done(depth);
    let out = f();
    std::mem::forget(done);
    (out, first_done(depth))
}

/// Work a handler hands to a blocking thread
/// (`blocking::spawn_blocking`) shares its holding ([`handed`]): a call
/// made there may let its earlier replies go while it waits for room
/// (held by the handler, which awaits the work, the call waited for room
/// only the handler could give, until its deadline: a red-team pass).
/// Call it in the handler (its task, or a blocking handler's thread).
pub(crate) fn hand_off() -> Option<Holding> {
    holding(true)
}

/// Runs `f` on a blocking thread sharing `held`, a handler's holding
/// ([`hand_off`]), as the thread's for the calls `f` makes
/// ([`for_blocking_thread`]).
pub(crate) fn handed<R>(held: Option<Holding>, f: impl FnOnce() -> R) -> R {
    if held.is_none() {
        return f();
    }
    let _restore = on_thread(held, false);
    f()
}

/// Sets the blocking thread's holding to `held` until the guard drops,
/// then puts back the one before (nested: a blocking handler's closure);
/// if `owner` (a blocking handler's or closure's own), what it holds then
/// goes ([`ended`]).
pub(crate) fn on_thread(held: Option<Holding>, owner: bool) -> impl Drop {
    struct Restore(Option<Holding>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let held = BLOCKING_HELD.with(|c| c.replace(self.0.take()));
            if self.1 {
                ended(held);
            }
        }
    }
    Restore(BLOCKING_HELD.with(|c| c.replace(held)), owner)
}

/// Runs `fut`, a call a blocking thread makes (in a task, while the
/// thread waits), with the thread's holding, if it serves a handler: what
/// the call decodes is held there, and it lets go of what it moved on
/// from as a handler's task does (kept apart on the thread, a blocking
/// handler making heavy calls one after another waited for room only it
/// held, until its deadline; and handed back to the thread with nothing
/// let go, 300 calls of 49 KB replies each, dropped, held 14.7 MB counted:
/// a review). A stream's pull keeps its batch's counts itself
/// ([`captured`]). Call it on the blocking thread.
pub(crate) fn for_blocking_thread<F: Future>(
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<Cell<Option<Holding>>, F> {
    let held =
        if crate::ambient::on_blocking_thread() || BLOCKING_HELD.with(|c| c.borrow().is_some()) {
            BLOCKING_HELD.with(|c| made(&mut c.borrow_mut(), true))
        } else {
            None
        };
    HELD.scope(Cell::new(held), fut)
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
