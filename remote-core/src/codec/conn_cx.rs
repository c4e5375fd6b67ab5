//! Which connection the encode running on this thread sends references on
//! ([`super::export`] registers them there).
//!
//! The connection is lent to the thread for the encode's duration
//! (`scoped-tls`: a pointer set and reset, no reference count touched per
//! encode), and nothing of it stays on the thread afterwards: a closed
//! connection's memory is not held by whichever thread encoded for it
//! last. An export (rare next to encodes) clones the `Arc` for its own
//! use.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::driver::Shared;

scoped_tls::scoped_thread_local! {
    /// The connection of the innermost encode on this thread.
    static CONN: Arc<Shared>
}

thread_local! {
    /// Whether an encode runs (and `CONN` is its connection): `false` while
    /// it is suspended.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Puts back whether an encode runs when a scope ends (also on a panic in
/// serde code).
struct RestoreActive(bool);

impl Drop for RestoreActive {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.0));
    }
}

/// Runs `f` with `conn` as the running encode's connection; the enclosing
/// encode's (or a suspension's) state is back when it returns or unwinds.
#[inline]
pub(super) fn enter<R>(conn: &Arc<Shared>, f: impl FnOnce() -> R) -> R {
    let _restore = RestoreActive(ACTIVE.with(|a| a.replace(true)));
    CONN.set(conn, f)
}

/// The connection of the encode running on this thread, if one runs.
pub(super) fn running() -> Option<Arc<Shared>> {
    (ACTIVE.with(Cell::get) && CONN.is_set()).then(|| CONN.with(Arc::clone))
}

/// No encode runs until this is dropped (an encode that may not hold
/// references, or an export, which must not see its own encode). Not
/// `Send`: it restores this thread's state, on this thread.
pub(super) struct Suspended(RestoreActive, PhantomData<*const ()>);

impl Suspended {
    /// The suspended encode's connection, if an encode was running.
    pub(super) fn conn(&self) -> Option<Arc<Shared>> {
        // `is_set` holds whenever an encode was running; checked anyway so
        // a misuse is an error, never a panic.
        (self.0 .0 && CONN.is_set()).then(|| CONN.with(Arc::clone))
    }
}

/// Suspends the running encode (if any) until the result is dropped.
pub(super) fn suspend() -> Suspended {
    Suspended(
        RestoreActive(ACTIVE.with(|a| a.replace(false))),
        PhantomData,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Connection, ConnectionBuilder};

    /// The running encode's connection, as an export sees it.
    fn current() -> Option<Arc<Shared>> {
        suspend().conn()
    }

    fn is(conn: Option<Arc<Shared>>, expected: &Arc<Shared>) -> bool {
        conn.is_some_and(|c| Arc::ptr_eq(&c, expected))
    }

    #[tokio::test]
    async fn an_encode_sees_its_own_connection_nested_or_after_another() {
        let b = || ConnectionBuilder::new();
        let (x, _x) = Connection::pair(b(), b()).await.unwrap();
        let (y, _y) = Connection::pair(b(), b()).await.unwrap();
        let (a, c) = (&x.shared, &y.shared);
        assert!(current().is_none(), "no encode runs");
        enter(a, || {
            assert!(is(current(), a));
            enter(c, || {
                // Nested for another connection, then back.
                assert!(is(current(), c));
                {
                    let _s = suspend();
                    assert!(current().is_none(), "suspended: no connection");
                    // An encode inside the suspension is an outermost one.
                    enter(a, || assert!(is(current(), a)));
                    assert!(current().is_none(), "still suspended after it");
                }
                assert!(is(current(), c), "the suspension restored `c`'s encode");
            });
            assert!(is(current(), a), "the nested encode restored `a`'s");
            enter(a, || {
                assert!(is(current(), a), "nested for the same connection")
            });
            assert!(is(current(), a));
        });
        assert!(current().is_none(), "no encode runs after the outermost");
        // The next encode, for either connection, sees its own.
        for conn in [c, a, a, c] {
            enter(conn, || assert!(is(current(), conn)));
        }
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn a_panicking_encode_restores_the_enclosing_state() {
        let (x, _y) = Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new())
            .await
            .unwrap();
        let a = &x.shared;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            enter(a, || {
                let _s = suspend();
                enter(a, || panic!("serde code panicked"));
            })
        }));
        assert!(panicked.is_err());
        assert!(current().is_none(), "the unwind left an encode running");
        assert!(!CONN.is_set(), "the unwind left the connection lent");
    }

    #[tokio::test]
    async fn an_encode_keeps_nothing_of_its_connection() {
        let (x, _y) = Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new())
            .await
            .unwrap();
        let a = &x.shared;
        let counts = |a: &Arc<Shared>| (Arc::strong_count(a), Arc::weak_count(a));
        let before = counts(a);
        enter(a, || {
            assert_eq!(
                counts(a),
                before,
                "lending the connection counted a reference"
            );
        });
        // Neither a strong nor a weak reference stays on this thread: a
        // closed connection's allocation is not held by whichever thread
        // encoded for it last.
        assert_eq!(counts(a), before, "the encode kept a reference");
    }
}
