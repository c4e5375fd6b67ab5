//! Call deadlines: a task-local (and, on blocking threads, thread-local)
//! deadline that outgoing calls inherit, kept with the peer being served
//! (`ambient.rs`).

use std::future::Future;
use std::time::Duration;

use crate::rt::time::Instant;

/// The deadline inherited by a call made now, if any.
pub(crate) fn current_deadline() -> Option<Instant> {
    crate::ambient::deadline()
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
    crate::ambient::deadline_scope_here(deadline, fut).await
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

/// Runs `fut` (the body of a task spawned to carry a deadline over) with
/// `deadline` inherited.
pub(crate) fn scope<F: Future>(deadline: Instant, fut: F) -> impl Future<Output = F::Output> {
    crate::ambient::deadline_scope(deadline, fut)
}
