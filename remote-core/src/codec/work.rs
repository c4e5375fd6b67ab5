//! The CPU time a call's decode may spend on serde's copies of its own
//! buffer.
//!
//! serde decodes an untagged or internally tagged value nested in another
//! from a copy of its part of the buffer, and copies it again for each
//! variant it tries. Tries of nested such types multiply, and are capped
//! per node of the buffer (`ATTEMPTS_PER_NODE` in `weigh.rs`); but each
//! try may copy a large part of the buffer: a 32 KB call 17 deep, with its
//! bulk at the bottom, took 100 s of a server thread within that cap
//! (red-team pass 38). The copies are made by serde's private
//! deserializer, out of sight; what is known is that each copies at most
//! the call's whole buffer.
//!
//! Nor is a try's cost bounded by nodes: a failed try formats serde's
//! error, which quotes a string whole (6 bytes per byte escaped), and a
//! 1 MB string under 12 nested levels took 122 s within that cap, the
//! buffer 200 nodes (red-team pass 40).
//!
//! So the thread's CPU time is read at a call's first nested try, at the
//! 2nd, 4th, ... up to every [`TRIES_EVERY`] tries, and whenever the tries
//! may have copied [`CHECK_EVERY`] nodes more (each counted at the whole
//! buffer); a decode that has spent more than [`BASE`] plus [`PER_NODE`]
//! per node of its buffers since the first reading is stopped, and the
//! call is answered `limit_exceeded`. Checked at doubling tries, an
//! expensive try is caught at once; past 64, a run of tries each under a
//! 64th of the allowance overshoots it by at most the allowance. The bound
//! is on the thread's own CPU time, not the wall clock, so a loaded
//! machine does not make an ordinary decode look slow.

use std::cell::Cell;
use std::time::Duration;

/// Nodes of potential copying between readings of the clock...
pub(super) const CHECK_EVERY: u64 = 1 << 20;

/// ...and tries, once past this many.
pub(super) const TRIES_EVERY: u64 = 64;

/// The CPU time any decode may spend on copies...
pub(super) const BASE: Duration = Duration::from_millis(200);

/// ...plus this per node of its buffer (about ten times what an ordinary
/// decode through serde's buffer takes per node in a release build).
pub(super) const PER_NODE: Duration = Duration::from_micros(1);

/// The running dispatch's potential copying, on its thread.
struct Work {
    /// Nested tries so far, and nodes they may have copied.
    tries: Cell<u64>,
    copies: Cell<u64>,
    /// When the clock is read next, in `tries` or `copies`.
    next_try: Cell<u64>,
    next: Cell<u64>,
    /// The thread's CPU time at the first reading.
    since: Cell<Option<Duration>>,
}

thread_local! {
    static WORK: Work = const {
        Work {
            tries: Cell::new(0),
            copies: Cell::new(0),
            next_try: Cell::new(1),
            next: Cell::new(CHECK_EVERY),
            since: Cell::new(None),
        }
    };
}

/// A try of a buffered type nested in another, from a buffer of `copied`
/// nodes (at most what it copies), with `nodes` nodes in all the call's
/// buffers so far: `false` once the decode has spent more CPU time than
/// `BASE` plus `PER_NODE` per node.
pub(super) fn nested_try(copied: usize, nodes: usize) -> bool {
    WORK.with(|w| {
        let tries = w.tries.get() + 1;
        w.tries.set(tries);
        let copies = w.copies.get().saturating_add(copied as u64);
        w.copies.set(copies);
        if tries < w.next_try.get() && copies < w.next.get() {
            return true;
        }
        w.next_try.set(if tries < TRIES_EVERY {
            tries * 2
        } else {
            tries + TRIES_EVERY
        });
        w.next.set(copies.saturating_add(CHECK_EVERY));
        let now = thread_cpu();
        let Some(since) = w.since.get() else {
            w.since.set(Some(now));
            return true;
        };
        let allowed =
            BASE.saturating_add(PER_NODE.saturating_mul(nodes.try_into().unwrap_or(u32::MAX)));
        now.saturating_sub(since) <= allowed
    })
}

/// Forgets the running dispatch's copying (it ended).
pub(super) fn reset() {
    WORK.with(|w| {
        w.tries.set(0);
        w.copies.set(0);
        w.next_try.set(1);
        w.next.set(CHECK_EVERY);
        w.since.set(None);
    });
}

/// The CPU time this thread has run.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
))]
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Elsewhere, the wall clock since a fixed point of the process: an upper
/// bound of the thread's CPU time.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
)))]
fn thread_cpu() -> Duration {
    static START: std::sync::OnceLock<web_time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(web_time::Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_read_at_doubling_tries_and_past_a_buffers_worth_of_copies() {
        reset();
        // The first try starts the clock; then tries 2, 4, 8, ... 64, and
        // every 64 tries after.
        assert!(nested_try(1, 1));
        let first = WORK.with(|w| w.since.get()).expect("a first reading");
        let mut readings = vec![];
        for t in 2..=256u64 {
            let before = WORK.with(|w| w.next_try.get());
            assert!(nested_try(1, 1));
            if before == t {
                readings.push(t);
            }
        }
        assert_eq!(readings, [2, 4, 8, 16, 32, 64, 128, 192, 256]);
        // A try that may have copied a buffer's worth reads it too.
        let next = WORK.with(|w| w.next_try.get());
        assert!(next > 258);
        assert!(nested_try(CHECK_EVERY as usize, 1));
        assert_eq!(WORK.with(|w| w.next_try.get()), 257 + TRIES_EVERY);
        // Past the allowance for a one-node buffer, the next reading stops
        // the decode.
        while thread_cpu().saturating_sub(first) <= BASE + PER_NODE {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        WORK.with(|w| w.copies.set(w.next.get()));
        assert!(!nested_try(1, 1));
        reset();
        assert!(nested_try(1, 1));
        WORK.with(|w| assert_eq!((w.tries.get(), w.copies.get()), (1, 1)));
    }

    #[test]
    fn the_thread_cpu_clock_moves_with_work() {
        let a = thread_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let b = thread_cpu();
        assert!(b > a, "{a:?} then {b:?} after work ({x})");
    }
}
