//! Stack for a call whose arguments are large inline.
//!
//! Between a call's decode and its handler's first poll, a debug build
//! keeps the arguments on several frames: the decode's slot and result,
//! the tuple taken apart, the handler's future made on the stack and
//! moved into its box, the method's own future made in the first poll
//! (whose frame is as large on every poll). An interface with 256 KiB of
//! inline arguments overflowed a 2 MiB tokio worker stack on any call
//! (red-team pass 41), which aborts the process.
//!
//! The `#[remote]` dispatcher runs each method in a function of its own
//! (so a call's frames hold its own method's arguments, not every
//! method's). A method whose arguments hold [`BIG`] bytes or more inline
//! (`Wire::INLINE`) makes its handler's future, and polls it every time,
//! with room for [`COPIES`] of them, and a blocking method's body runs on
//! the blocking pool's thread with that room: on a new stack segment if
//! the thread has not that much left. Methods with smaller arguments pay
//! nothing: the test is on constants.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::stack::{with_room, LEVEL_BASE};
use crate::interface::{CallFuture, Reply};
use crate::Wire;

/// Arguments holding this much inline or more get room of their own.
const BIG: usize = 16 << 10;

/// Copies of the arguments a debug build's frames hold at once.
const COPIES: usize = 16;

/// The room a call with arguments `A` needs, if they are large.
#[inline]
fn need<A: Wire>() -> Option<usize> {
    (A::INLINE >= BIG).then(|| LEVEL_BASE.saturating_add(COPIES.saturating_mul(A::INLINE)))
}

/// Runs `f` (a call's decode and the making of its handler's future) with
/// room for its arguments `A`. Hidden API, for `#[remote]`'s dispatcher.
#[inline]
pub fn dispatch_on_stack<A: Wire, R>(f: impl FnOnce() -> R) -> R {
    match need::<A>() {
        None => f(),
        Some(need) => with_room(need, f),
    }
}

/// `fut`, each of whose polls runs with room for the arguments `A`: a
/// debug build's poll frame is as large on every poll as on the first,
/// which makes the method's own future, holding them (red-team pass 43:
/// a handler of 512 KiB arguments that awaited overflowed on its second
/// poll). Hidden API, for `#[remote]`'s dispatcher.
#[inline]
pub fn future_on_stack<A: Wire>(fut: CallFuture) -> CallFuture {
    match need::<A>() {
        None => fut,
        Some(need) => Box::pin(OnStack { fut, need }),
    }
}

/// A handler's future polled with `need` bytes of stack.
struct OnStack {
    fut: CallFuture,
    need: usize,
}

impl Future for OnStack {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = &mut *self;
        let fut = &mut this.fut;
        with_room(this.need, || fut.as_mut().poll(cx))
    }
}

/// Runs a blocking method's body `f` (on the blocking pool's thread) on
/// its arguments `A`, kept boxed until then so that the frames between
/// (the pool's and the closures') hold a pointer and not the arguments,
/// with room for them (red-team pass 43: 1 MiB of arguments overflowed
/// a 2 MiB blocking thread). Hidden API, for `#[remote]`'s dispatcher.
#[inline]
pub fn blocking_on_stack<A: Wire, R>(args: Box<A>, f: impl FnOnce(A) -> R) -> R {
    dispatch_on_stack::<A, R>(move || f(*args))
}
