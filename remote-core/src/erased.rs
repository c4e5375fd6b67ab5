//! Type-erased helpers for generated code: the work that does not depend on
//! a method's types is done by functions compiled once in this crate, so a
//! `#[remote]` trait costs its user's build only the type-specific rest.

use std::any::Any;

use crate::interface::{BoxFuture, CallCx};

/// A boxed blocking job with a boxed result.
type BlockingJob = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// [`CallCx::blocking`] for generated dispatchers: runs `f` as one boxed
/// job type, so tokio's blocking-task code is compiled once here rather than
/// once per blocking method.
pub async fn blocking<R: Send + 'static>(cx: &CallCx, f: impl FnOnce() -> R + Send + 'static) -> R {
    let r = blocking_erased(cx, Box::new(move || Box::new(f()) as Box<dyn Any + Send>)).await;
    match r.downcast::<R>() {
        Ok(r) => *r,
        // The job above returns an `R`.
        Err(_) => unreachable!("a blocking job returned another type"),
    }
}

/// Boxed, so the future's `poll` (and tokio's blocking-task code under it)
/// is compiled here: an `async fn`'s body would be compiled again in every
/// crate that awaits it.
fn blocking_erased(cx: &CallCx, f: BlockingJob) -> BoxFuture<'_, Box<dyn Any + Send>> {
    Box::pin(cx.blocking(f))
}
