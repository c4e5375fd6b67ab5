//! Call deadlines: a task-local (and, on blocking threads, thread-local)
//! deadline that outgoing calls inherit.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use crate::rt::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

thread_local! {
    static BLOCKING_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The deadline inherited by a call made now, if any.
pub(crate) fn current_deadline() -> Option<Instant> {
    DEADLINE
        .try_with(|d| *d)
        .ok()
        .or_else(|| BLOCKING_DEADLINE.with(Cell::get))
}

/// Runs `fut` with calls inside it limited to `timeout` from now (never
/// later than a deadline inherited from an enclosing call).
///
/// ```no_run
/// # async fn demo() {
/// use std::time::Duration;
/// let answer = remote_core::with_timeout(Duration::from_millis(200), async {
///     // every remote call made here must finish within 200 ms
///     42
/// })
/// .await;
/// assert_eq!(answer, 42);
/// # }
/// ```
pub async fn with_timeout<F: Future>(timeout: Duration, fut: F) -> F::Output {
    let mut deadline = after(Instant::now(), timeout);
    if let Some(inherited) = current_deadline() {
        deadline = deadline.min(inherited);
    }
    DEADLINE.scope(deadline, fut).await
}

/// `now + d`, saturating ([`crate::proto::later`] on tokio's clock): a
/// duration too long for the clock means about 30 years, i.e. never.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    Instant::from_std(crate::proto::later(now.into_std(), d))
}

/// Time left before the deadline of the call being served here (or of an
/// enclosing [`with_timeout`]); `None` outside both.
///
/// ```
/// assert_eq!(remote_core::remaining(), None);
/// ```
pub fn remaining() -> Option<Duration> {
    current_deadline().map(|d| d.saturating_duration_since(Instant::now()))
}

/// Runs `fut` with `deadline` as the inherited deadline.
pub(crate) fn scope<F: Future>(deadline: Instant, fut: F) -> impl Future<Output = F::Output> {
    DEADLINE.scope(deadline, fut)
}

/// Runs `f` (first poll of a handler) with `deadline` inherited.
pub(crate) fn sync_scope<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    DEADLINE.sync_scope(deadline, f)
}

/// Sets the deadline for a blocking thread while `f` runs.
pub(crate) fn blocking_scope<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    let prev = BLOCKING_DEADLINE.with(|c| c.replace(Some(deadline)));
    struct Reset(Option<Instant>);
    impl Drop for Reset {
        fn drop(&mut self) {
            BLOCKING_DEADLINE.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(prev);
    f()
}
