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

/// When the frames being handled arrived: the clock is read once per read
/// from the peer (when a frame of it first needs the time), not once per
/// frame, so a read that brought 64 calls starts their 64 deadlines from
/// one clock read. A frame's deadline counts from its arrival, as its
/// caller's does from its sending.
#[derive(Debug, Default)]
pub(crate) struct Arrival(Option<Instant>);

impl Arrival {
    /// The time of the read that brought the frame being handled.
    pub(crate) fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }

    /// New bytes were read (or reading resumed after a wait of ours): the
    /// next frame reads the clock again.
    pub(crate) fn reset(&mut self) {
        self.0 = None;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_one_read_share_its_arrival_and_a_new_read_reads_the_clock_again() {
        let mut a = Arrival::default();
        let first = a.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(a.now(), first, "the clock is read once per read");
        a.reset();
        assert!(a.now() > first, "a new read has its own arrival");
    }
}
