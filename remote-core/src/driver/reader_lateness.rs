//! How long writers to a shared collection wait for a subscriber that
//! lags behind its change log (`collections/map.rs`) before it is
//! dropped: the time they wait is paid from the subscriber's lateness
//! allowance (`lateness.rs`), the same buckets a late acknowledgement of
//! pushed invalidations is paid from.
//!
//! A proxy listener's wait is charged to its connection's bucket and its
//! peer address's (a peer that reconnects gets no fresh allowance; its
//! subscribers waited for at once are charged once), all of it: there is
//! no prompt part (the wait is for room, shared by every writer waiting,
//! and charged once, not per writer, from when writers first wait for the
//! subscriber at the log's oldest change until it delivers it). A local listener has a
//! bucket of its own, sized as a connection's at the default limits
//! (5.25 s, refilling at an eighth of wall time). Writers also stop
//! waiting for a subscriber that delivered nothing for its patience: its
//! connection's `invalidation_ack_timeout` (2 s by default; a local
//! listener's: [`LOCAL_PATIENCE`]).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lateness::{nanos, Allowance, Bucket};
use super::shared::{lock, Shared};
use crate::rt::time::Instant;

/// How long writers wait for a local listener that delivers nothing.
pub(crate) const LOCAL_PATIENCE: Duration = Duration::from_secs(2);

/// Who pays for the time writers wait for one subscriber.
pub(crate) struct ReaderLateness {
    conn: Option<Arc<Shared>>,
    /// A local listener's own bucket.
    own: Mutex<Bucket>,
    allowance: Allowance,
    patience: Duration,
}

impl ReaderLateness {
    /// For a subscriber whose listener is a proxy on `conn`, or local.
    pub(crate) fn new(conn: Option<Arc<Shared>>) -> Self {
        let (allowance, patience) = match &conn {
            Some(s) => (s.allowance(), s.limits.invalidation_ack_timeout),
            None => (Allowance::of(&crate::Limits::default()), LOCAL_PATIENCE),
        };
        ReaderLateness {
            conn,
            own: Mutex::default(),
            allowance,
            patience,
        }
    }

    /// How long writers wait for the subscriber to deliver anything.
    pub(crate) fn patience(&self) -> Duration {
        self.patience
    }

    /// The peer address whose bucket is charged too (of which server):
    /// several of its subscribers waited for at once are charged once.
    pub(crate) fn addr(&self) -> Option<(usize, IpAddr)> {
        super::lateness::AddrWait::key_of(self.conn.as_deref()?)
    }

    /// Charges `late` of waiting to the subscriber's connection's bucket
    /// (a local listener's own), and `addr_late` to its peer address's
    /// (if it has one: `addr_late` is `late` less what was charged to the
    /// address for another of its subscribers over the same time): what is
    /// left of the allowance, or `None` once either is drained (writers no
    /// longer wait for it).
    pub(crate) fn charge(&self, late: Duration, addr_late: Duration) -> Option<Duration> {
        let now = Instant::now();
        let a = self.allowance;
        let left = match &self.conn {
            None => lock(&self.own).charge(a, now, nanos(late)),
            Some(s) => {
                let conn = lock(&s.pushes.late).charge(a, now, nanos(late));
                let addr = match &s.peer_misses {
                    Some((misses, addr)) => misses.charge(*addr, a, now, nanos(addr_late)),
                    None => conn,
                };
                conn.zip(addr).map(|(c, p)| c.min(p))
            }
        };
        left.map(Duration::from_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_local_readers_allowance_is_spent_by_waits_and_refills() {
        let r = ReaderLateness::new(None);
        assert_eq!(r.patience(), LOCAL_PATIENCE);
        assert_eq!(r.addr(), None);
        // 5.25 s at the default limits.
        let left = r.charge(Duration::from_secs(5), Duration::ZERO);
        assert_eq!(left, Some(Duration::from_millis(250)));
        assert_eq!(r.charge(Duration::from_millis(300), Duration::ZERO), None);
        assert_eq!(r.charge(Duration::ZERO, Duration::ZERO), None, "drained");
        // One missed timeout's worth (1.75 s) is back 14 s later.
        tokio::time::advance(Duration::from_secs(14)).await;
        let left = r.charge(Duration::ZERO, Duration::ZERO);
        assert_eq!(left, Some(Duration::from_millis(1750)));
    }
}
