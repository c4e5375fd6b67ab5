//! A review of how late holders may acknowledge pushed invalidations
//! (PROTOCOL.md §3.9, `src/driver/lateness.rs`), after d4bdde4 (review
//! rv57):
//!
//! 1. `invalidation_ack_timeout = Duration::MAX` (wait as long as it
//!    takes) must not make writes panic computing their deadlines.
//! 2. Concurrent writes: each wait read what was left of the holder's
//!    allowance when it started, and was charged only when it ended, so
//!    writes made while the first late wait was under way each waited the
//!    whole timeout (20 writes 50 ms apart: 39.8 s in total against a
//!    documented 10.25 s). A late wait now reserves the rest of the
//!    timeout when its late phase starts, and gives back what it did not
//!    use.
//! 3. Honest holders behind one address (a NAT, a proxy, an app server's
//!    pool) were each charged to the address, once per holder per write,
//!    and never forgiven: 20 acknowledging in 300 ms were not waited for
//!    from the 7th write on, for 10 minutes. An address is now charged
//!    once per write (the largest lateness among its holders), and every
//!    allowance refills at an eighth of the time.

#[path = "support/late_holder.rs"]
mod late_holder;
#[path = "support/pipe.rs"]
mod pipe;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use late_holder::{holder, tcp_holders, Doc, Page};
use remote_core::{Limits, Remote};

/// An unbounded timeout: writes wait, and do not panic.
#[tokio::test]
async fn an_unbounded_ack_timeout_does_not_panic_writes() {
    let root: Arc<dyn Doc> = Arc::new(Page);
    let limits = Limits {
        invalidation_ack_timeout: Duration::MAX,
        ..Limits::default()
    };
    let _conn = holder(&root, limits, Duration::from_millis(1)).await;
    let root2 = root.clone();
    let write =
        tokio::spawn(async move { remote_core::cache::invalidate(&root2, &["text"]).await });
    let report = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the write ends")
        .expect("the write does not panic");
    assert_eq!(report.notified, 1);
}

/// Concurrent writes against one just-in-time holder are held up, in
/// total, by at most the allowance (and what refilled meanwhile) beyond a
/// prompt acknowledgement each: before, every one waited 1.99 s.
#[tokio::test(start_paused = true)]
async fn concurrent_writes_are_held_up_a_bounded_total() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    const MAX_MISSED: u32 = 3;
    const WRITES: usize = 20;
    let root: Arc<dyn Doc> = Arc::new(Page);
    let limits = Limits {
        invalidation_ack_timeout: TIMEOUT,
        invalidation_max_missed_acks: MAX_MISSED,
        ..Limits::default()
    };
    // Hostile: acknowledges each push 10 ms before the timeout.
    let _conn = holder(&root, limits, TIMEOUT - Duration::from_millis(10)).await;
    // 20 writes (honest writers on other connections), 50 ms apart.
    let t0 = tokio::time::Instant::now();
    let mut all = Vec::new();
    for _ in 0..WRITES {
        let root = root.clone();
        all.push(tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            remote_core::cache::invalidate(&root, &["text"]).await;
            started.elapsed()
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut took = Vec::new();
    for w in all {
        took.push(w.await.unwrap());
    }
    let total: Duration = took.iter().sum();
    let waited_long = took.iter().filter(|d| **d > Duration::from_secs(1)).count();
    println!(
        "{WRITES} concurrent writes held up {total:?} in total, {waited_long} over 1 s: {took:?}"
    );
    // The documented bound: MAX_MISSED timeouts' worth, and what refilled
    // (an eighth of the time the writes took, under 3 s), beyond a prompt
    // acknowledgement (an eighth of the timeout) each. Here, reserving
    // 31.25 ms slices: the first 15 share the allowance until it runs out
    // and stop together (314 to 961 ms each), the next 4 get a sliver,
    // the last is not waited for (about 10.1 s; 9.6 s with slices of
    // 250 ms).
    let elapsed = tokio::time::Instant::now() - t0;
    let bound = WRITES as u32 * (TIMEOUT / 8) + MAX_MISSED * (TIMEOUT - TIMEOUT / 8) + elapsed / 8;
    assert!(waited_long <= MAX_MISSED as usize, "{took:?}");
    assert!(
        total <= bound,
        "held up {total:?} in total, bound {bound:?}"
    );
}

/// Honest holders sharing an address (a NAT, a proxy, one app server's
/// pool): each acknowledges every push 300 ms after it is sent (a mobile
/// round trip; well inside the 2 s timeout, and it never misses one).
/// Lateness beyond 250 ms was charged to the *address* once per holder
/// per write: 20 such holders used up its 5.25 s allowance in 6 writes,
/// and from then on no write waited for any of them (nor for any
/// connection from that address for 10 minutes). Now the address pays
/// about 50 ms a write, as for one such holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_holders_behind_one_address_are_waited_for() {
    const HOLDERS: usize = 20;
    const WRITES: usize = 10;
    let root: Arc<dyn Doc> = Arc::new(Page);
    let served = root.clone();
    let server = remote_core::Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(served.clone()));
    let ackers = tcp_holders(&server, HOLDERS, "text", |_, _| Duration::from_millis(300)).await;
    let mut reports = Vec::new();
    for _ in 0..WRITES {
        let report = remote_core::cache::invalidate(&root, &["text"]).await;
        assert_eq!(report.notified, HOLDERS);
        reports.push((report.unacknowledged, report.timed_out));
    }
    println!("(unacknowledged, timed out) per write: {reports:?}");
    for a in ackers {
        a.abort();
    }
    assert!(
        reports.iter().all(|r| r.0 == 0),
        "writes stopped waiting for honest holders acknowledging in 300 ms: {reports:?}"
    );
}

/// The other side of charging an address once per write: hostile holders
/// behind one address taking turns to acknowledge just in time (the
/// others promptly) are bounded as one holder is. Their address's
/// allowance pays for each write's lateness; each connection's own would
/// have let every write wait (each is late for one write in five).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_behind_one_address_taking_turns_to_be_late_are_bounded_as_one() {
    const HOLDERS: usize = 5;
    const WRITES: usize = 10;
    const MAX_MISSED: u32 = 2;
    let root: Arc<dyn Doc> = Arc::new(Page);
    let limits = Limits {
        invalidation_ack_timeout: Duration::from_millis(200),
        invalidation_max_missed_acks: MAX_MISSED,
        ..Limits::default()
    };
    let served = root.clone();
    let server = remote_core::Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(served.clone()));
    // Holder `i` is late for the writes whose token is `i` modulo 5.
    let ackers = tcp_holders(&server, HOLDERS, "text", |i, token| {
        if token as usize % HOLDERS == i {
            Duration::from_millis(180)
        } else {
            Duration::from_millis(1)
        }
    })
    .await;
    let started = std::time::Instant::now();
    let mut waited = Vec::new();
    for _ in 0..WRITES {
        let report = remote_core::cache::invalidate(&root, &["text"]).await;
        assert_eq!(report.notified, HOLDERS);
        // All were waited for, or none (they share the address).
        let w = report.unacknowledged < HOLDERS || report.timed_out > 0;
        assert!(w || report.unacknowledged == HOLDERS, "{report:?}");
        waited.push(w);
    }
    for a in ackers {
        a.abort();
    }
    // 2 × 175 ms of allowance for the address: two writes late by 155 ms,
    // one cut short by what is left, draining it; one more for each 1.4 s
    // the test took (an eighth of it refilled: none, unless the machine
    // is very slow).
    let refills = (started.elapsed().as_millis() / 1400) as usize;
    let n = waited.iter().filter(|w| **w).count();
    assert!(
        n <= MAX_MISSED as usize + 1 + refills,
        "writes waited for {HOLDERS} holders behind one address: {waited:?}"
    );
}
