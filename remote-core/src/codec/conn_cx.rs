//! Which connection the encode running on this thread sends references on
//! ([`super::export`] registers them there).
//!
//! The thread keeps the last encode's connection as a `Weak` after the
//! encode ends, so the next encode for the same connection (the common
//! case: a connection's calls and replies, one after another) compares a
//! pointer and sets a flag: no reference count is touched per encode. An
//! export (rare next to encodes) upgrades the `Weak` for its own use. The
//! `Weak` keeps only the connection's allocation, not what it holds, and
//! is replaced by the next encode for another connection (or dropped with
//! the thread): at most one per thread.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use crate::driver::Shared;

thread_local! {
    /// The running encode's connection, or the last one's while none runs.
    static CONN: Cell<Option<Weak<Shared>>> = const { Cell::new(None) };
    /// Whether an encode runs (and `CONN` is its connection).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// What to put back when an encode's (or a suspension's) scope ends.
enum Restore {
    /// The encode was the outermost: none runs after it.
    Inactive,
    /// Nested in an encode for the same connection: nothing changed.
    Unchanged,
    /// Nested in an encode for another connection, or suspending one:
    /// that connection, and whether its encode was running.
    Prev(Option<Weak<Shared>>, bool),
}

impl Drop for Restore {
    fn drop(&mut self) {
        match self {
            Restore::Inactive => ACTIVE.with(|a| a.set(false)),
            Restore::Unchanged => {}
            Restore::Prev(conn, active) => {
                let conn = conn.take();
                CONN.with(|c| c.set(conn));
                ACTIVE.with(|a| a.set(*active));
            }
        }
    }
}

/// An encode's connection, set until this is dropped (also on a panic in
/// serde code). Not `Send`: it restores this thread's state, on this
/// thread.
pub(super) struct Entered {
    _restore: Restore,
    _here: PhantomData<*const ()>,
}

/// Makes `conn` the running encode's connection.
pub(super) fn enter(conn: &Arc<Shared>) -> Entered {
    let nested = ACTIVE.with(|a| a.replace(true));
    let same = CONN.with(|c| {
        let cached = c.take();
        let same = cached
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(conn)));
        c.set(cached);
        same
    });
    let restore = match (nested, same) {
        (false, true) => Restore::Inactive,
        (false, false) => {
            // Another connection's cached `Weak` is dropped here.
            CONN.with(|c| c.set(Some(Arc::downgrade(conn))));
            Restore::Inactive
        }
        (true, true) => Restore::Unchanged,
        (true, false) => Restore::Prev(CONN.with(|c| c.replace(Some(Arc::downgrade(conn)))), true),
    };
    Entered {
        _restore: restore,
        _here: PhantomData,
    }
}

/// No encode runs until this is dropped (an encode that may not hold
/// references, or an export, which must not see its own encode). Not
/// `Send`, as [`Entered`].
pub(super) struct Suspended(Restore, PhantomData<*const ()>);

impl Suspended {
    /// The suspended encode's connection, if an encode was running.
    pub(super) fn conn(&self) -> Option<Arc<Shared>> {
        match &self.0 {
            Restore::Prev(Some(conn), true) => conn.upgrade(),
            _ => None,
        }
    }
}

/// Suspends the running encode (if any) until the result is dropped.
pub(super) fn suspend() -> Suspended {
    let active = ACTIVE.with(|a| a.replace(false));
    Suspended(Restore::Prev(CONN.with(Cell::take), active), PhantomData)
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
        {
            let _e = enter(a);
            assert!(is(current(), a));
            {
                // Nested for another connection, then back.
                let _e = enter(c);
                assert!(is(current(), c));
                {
                    let _s = suspend();
                    assert!(current().is_none(), "suspended: no connection");
                    // An encode inside the suspension is an outermost one.
                    let _e = enter(a);
                    assert!(is(current(), a));
                }
                assert!(is(current(), c), "the suspension restored `c`'s encode");
            }
            assert!(is(current(), a), "the nested encode restored `a`'s");
            {
                let _e = enter(a);
                assert!(is(current(), a), "nested for the same connection");
            }
            assert!(is(current(), a));
        }
        assert!(current().is_none(), "the kept connection is not current");
        // The next encode, for either connection, sees its own.
        for conn in [c, a, a, c] {
            let _e = enter(conn);
            assert!(is(current(), conn));
        }
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn the_kept_connection_holds_only_its_allocation() {
        let (x, y) = Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new())
            .await
            .unwrap();
        let weak = Arc::downgrade(&x.shared);
        drop(enter(&x.shared));
        x.close();
        y.close();
        drop((x, y));
        // Everything else lets go of the connection as it closes; the
        // thread's kept `Weak` does not keep it alive.
        let freed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while weak.upgrade().is_some() {
                tokio::task::yield_now().await;
            }
        });
        assert!(freed.await.is_ok(), "the closed connection was never freed");
        assert!(current().is_none());
    }
}
