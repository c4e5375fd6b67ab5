//! Who still uses a connection from this side: every [`Connection`] clone
//! and every proxy's [`Handle`] hold a [`UserRef`]. When the last one is
//! dropped and nothing else can reach the connection (this side serves no
//! root, the peer holds none of its objects, and no call runs either
//! way), the connection closes with a goodbye, as a dropped socket would,
//! instead of holding both sides' resources until the peer's
//! `idle_timeout`.
//!
//! A side that serves a root never closes so (the peer may call it at any
//! time), and its proxies' drops queue nothing: a server's imported
//! callbacks come and go at no cost. Elsewhere the check runs on the
//! reader task (a [`Control::Unused`] message):
//! `Drop` takes no lock here, as a proxy may be dropped while this
//! connection's core lock is held. It runs again when the peer releases
//! one of this side's objects and when a handler of the peer's call stops,
//! while no user is left.
//!
//! [`Connection`]: crate::Connection
//! [`Handle`]: crate::Handle

use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::control::Control;
use super::shared::Shared;

/// One user's hold on a connection (see the module docs).
pub(crate) struct UserRef(Arc<Shared>);

impl UserRef {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.users.fetch_add(1, Ordering::Relaxed);
        UserRef(shared)
    }

    /// The connection itself, not counted as a user.
    pub(crate) fn arc(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl Clone for UserRef {
    fn clone(&self) -> Self {
        UserRef::new(self.0.clone())
    }
}

impl Deref for UserRef {
    type Target = Arc<Shared>;

    fn deref(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl Drop for UserRef {
    #[inline]
    fn drop(&mut self) {
        if self.0.users.fetch_sub(1, Ordering::AcqRel) == 1 && !self.0.serves_root {
            last_user_gone(&self.0);
        }
    }
}

/// Out of line: the drop above is on every proxy's path.
#[cold]
#[inline(never)]
fn last_user_gone(shared: &Shared) {
    // Queued for the reader (the queue's lock is held for the push
    // alone), which looks.
    let _ = shared.ctl.send(Control::Unused);
}

impl Shared {
    /// Whether no [`UserRef`] is left, on a side that serves no root
    /// (one that does never closes for lack of users).
    pub(crate) fn unused(&self) -> bool {
        !self.serves_root && self.users.load(Ordering::Acquire) == 0
    }

    /// Closes the connection if no user is left and nothing else can
    /// reach it (see the module docs). On the reader task, or where the
    /// core lock is not held.
    pub(crate) fn close_if_unused(&self) {
        if !self.unused() || self.is_closed() || !self.core().unreachable() {
            return;
        }
        let reason = "every Connection and proxy of this side was dropped";
        let _ = self.send_goodbye(reason);
        self.close(crate::Error::ConnectionLost(format!(
            "closed locally: {reason}"
        )));
    }
}
