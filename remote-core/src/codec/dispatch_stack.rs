//! Stack for a call whose arguments are large inline.
//!
//! Between a call's decode and its handler's first poll, a debug build
//! keeps the arguments on several frames: the decode's slot and result,
//! the tuple taken apart, the handler's future made on the stack and
//! moved into its box, the method's own future made in the first poll. An
//! interface with 256 KiB of inline arguments overflowed a 2 MiB tokio
//! worker stack on any call (red-team pass 41), which aborts the process.
//! The `#[remote]` dispatcher runs each method in a function of its own
//! (so a call's frames hold its own method's arguments, not every
//! method's), and a method whose arguments hold [`BIG`] bytes or more
//! inline (`Wire::INLINE`) makes its future, and polls it the first time,
//! with room for [`COPIES`] of them: on a new stack segment if the thread
//! has not that much left. Methods with smaller arguments pay nothing:
//! the test is on constants.

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

/// `fut`, whose first poll (which makes the method's own future, holding
/// the arguments `A`) runs with room for them. Hidden API, for
/// `#[remote]`'s dispatcher.
#[inline]
pub fn future_on_stack<A: Wire>(fut: CallFuture) -> CallFuture {
    match need::<A>() {
        None => fut,
        Some(need) => Box::pin(FirstPoll {
            fut,
            need: Some(need),
        }),
    }
}

/// A handler's future whose first poll runs with `need` bytes of stack.
struct FirstPoll {
    fut: CallFuture,
    need: Option<usize>,
}

impl Future for FirstPoll {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = &mut *self;
        match this.need.take() {
            Some(need) => {
                let fut = &mut this.fut;
                with_room(need, || fut.as_mut().poll(cx))
            }
            None => this.fut.as_mut().poll(cx),
        }
    }
}
