//! Bounds on blocking methods: how many closures run at once per
//! connection (`max_blocking_calls`) and per server
//! (`max_server_blocking_calls`) and per peer address of a server
//! (`max_blocking_calls_per_peer`), and keeping a call counted in
//! `max_calls_in_flight` until its closure has really returned.
//!
//! A blocking closure cannot be stopped: aborting its handler (a cancel, a
//! deadline) only drops the async task awaiting it. So the closure itself
//! holds its slots, and the call's `call_done` waits for both the handler
//! and every closure it started to end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::control::Control;
use crate::proto::CallId;

/// The blocking slots shared by every connection of one server (or owned
/// by one standalone connection).
#[derive(Debug)]
pub(crate) struct ServerBlocking {
    slots: Arc<Semaphore>,
    /// Each peer address's slots, while a connection from it holds them.
    per_peer: Mutex<HashMap<IpAddr, Weak<Semaphore>>>,
    per_peer_max: usize,
}

impl ServerBlocking {
    /// A group allowing `max` blocking closures at once, `per_peer_max` of
    /// them from one peer address.
    pub(crate) fn new(max: usize, per_peer_max: usize) -> Arc<Self> {
        Arc::new(ServerBlocking {
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            per_peer: Mutex::new(HashMap::new()),
            per_peer_max: per_peer_max.clamp(1, Semaphore::MAX_PERMITS),
        })
    }

    /// The slots shared by the connections from peer address `key` (made
    /// on first use, dropped with the last connection holding them).
    pub(crate) fn for_peer(&self, key: IpAddr) -> Arc<Semaphore> {
        crate::per_peer::shared(&self.per_peer, key, || Semaphore::new(self.per_peer_max))
    }
}

/// A call whose handler or blocking closures are still running.
#[derive(Debug)]
struct Pending {
    id: CallId,
    closures: usize,
    handler_done: bool,
}

/// One connection's blocking slots and the calls whose closures run on.
#[derive(Debug)]
pub(crate) struct ConnBlocking {
    conn: Arc<Semaphore>,
    /// The peer address's slots (server connections over TCP, TLS, wss).
    peer: Option<Arc<Semaphore>>,
    server: Arc<ServerBlocking>,
    /// Calls (by sequence number) with a blocking closure running.
    pending: Mutex<HashMap<u64, Pending>>,
    /// `pending.len()`, read without the lock on the hot path.
    count: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under this lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnBlocking {
    pub(crate) fn new(
        max_per_conn: usize,
        peer: Option<Arc<Semaphore>>,
        server: Arc<ServerBlocking>,
    ) -> Self {
        ConnBlocking {
            conn: Arc::new(Semaphore::new(
                max_per_conn.clamp(1, Semaphore::MAX_PERMITS),
            )),
            peer,
            server,
            pending: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
        }
    }

    /// Waits for a connection slot, then a peer address slot, then a
    /// server slot (in that order, so one connection's or address's queue
    /// never holds slots it cannot use).
    pub(crate) async fn acquire(&self) -> Slots {
        // The semaphores are never closed, so acquiring cannot fail.
        let conn = self.conn.clone().acquire_owned().await.ok();
        let peer = match &self.peer {
            Some(p) => p.clone().acquire_owned().await.ok(),
            None => None,
        };
        let server = self.server.slots.clone().acquire_owned().await.ok();
        Slots {
            _conn: conn,
            _peer: peer,
            _server: server,
        }
    }

    /// Records that call `(id, seq)` starts a blocking closure; the
    /// returned hold ends it (from the closure's thread).
    pub(crate) fn hold(
        &self,
        (id, seq): (CallId, u64),
        ctl: super::ctl_queue::CtlTx,
    ) -> ClosureHold {
        let mut pending = lock(&self.pending);
        pending
            .entry(seq)
            .or_insert(Pending {
                id,
                closures: 0,
                handler_done: false,
            })
            .closures += 1;
        self.count.store(pending.len(), Ordering::Release);
        ClosureHold { ctl, seq }
    }

    /// Whether any blocking closure of this connection's calls runs.
    pub(crate) fn any_running(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// The handler of call `seq` has stopped. Returns `true` if the call
    /// is done now (no closure of it still runs); otherwise it is done
    /// when its last closure returns.
    pub(crate) fn handler_done(&self, seq: u64) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return true;
        }
        match lock(&self.pending).get_mut(&seq) {
            Some(p) => {
                p.handler_done = true;
                false
            }
            None => true,
        }
    }

    /// A closure of call `seq` returned. Returns the call's id if that
    /// makes the call done (its handler had already stopped).
    pub(crate) fn closure_done(&self, seq: u64) -> Option<CallId> {
        let mut pending = lock(&self.pending);
        let p = pending.get_mut(&seq)?;
        p.closures = p.closures.saturating_sub(1);
        if p.closures > 0 {
            return None;
        }
        let p = pending.remove(&seq)?;
        self.count.store(pending.len(), Ordering::Release);
        p.handler_done.then_some(p.id)
    }

    /// Blocking closures running now on this connection.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        lock(&self.pending).values().map(|p| p.closures).sum()
    }
}

/// A connection slot, a peer address slot and a server slot, held by a
/// running closure.
#[derive(Debug)]
pub(crate) struct Slots {
    _conn: Option<OwnedSemaphorePermit>,
    _peer: Option<OwnedSemaphorePermit>,
    _server: Option<OwnedSemaphorePermit>,
}

/// Keeps a call counted while its blocking closure runs.
#[derive(Debug)]
pub(crate) struct ClosureHold {
    ctl: super::ctl_queue::CtlTx,
    seq: u64,
}

impl Drop for ClosureHold {
    fn drop(&mut self) {
        // Queued: the connection task settles the count.
        let _ = self.ctl.send(Control::BlockingDone(self.seq));
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn a_call_is_done_only_when_its_handler_and_closures_are() {
        let (tx, mut rx) = super::super::ctl_queue::channel();
        let b = ConnBlocking::new(2, None, ServerBlocking::new(4, 4));
        // No closure: the handler's end is the call's end.
        assert!(b.handler_done(1));

        // Handler first, then the closure.
        let hold = b.hold((CallId(7), 2), tx.clone());
        assert_eq!(b.running(), 1);
        assert!(!b.handler_done(2));
        drop(hold);
        assert!(matches!(rx.try_recv(), Some(Control::BlockingDone(2))));
        assert_eq!(b.closure_done(2), Some(CallId(7)));
        assert_eq!(b.running(), 0);

        // Closure first, then the handler.
        let hold = b.hold((CallId(8), 3), tx);
        drop(hold);
        assert_eq!(b.closure_done(3), None);
        assert!(b.handler_done(3));
    }

    #[tokio::test]
    async fn slots_are_bounded_per_connection_and_per_server() {
        let server = ServerBlocking::new(3, 3);
        let a = ConnBlocking::new(2, None, server.clone());
        let b = ConnBlocking::new(2, None, server);
        let a1 = a.acquire().await;
        let _a2 = a.acquire().await;
        // The connection's own bound.
        assert!(a.acquire().now_or_never().is_none());
        let _b1 = b.acquire().await;
        // The server's bound (3) is reached although b has a slot left.
        let mut waiting = Box::pin(b.acquire());
        assert!((&mut waiting).now_or_never().is_none());
        drop(a1);
        let _b2 = waiting.await;
    }

    #[tokio::test]
    async fn slots_are_bounded_per_peer_address() {
        let server = ServerBlocking::new(8, 2);
        let key: IpAddr = [10, 0, 0, 1].into();
        let a = ConnBlocking::new(2, Some(server.for_peer(key)), server.clone());
        let b = ConnBlocking::new(2, Some(server.for_peer(key)), server.clone());
        let other = ConnBlocking::new(2, Some(server.for_peer([10, 0, 0, 2].into())), server);
        let a1 = a.acquire().await;
        let _b1 = b.acquire().await;
        // The address's bound (2) is reached although b has a slot left...
        let mut waiting = Box::pin(b.acquire());
        assert!((&mut waiting).now_or_never().is_none());
        // ...and another address still gets one.
        let _o1 = other.acquire().await;
        drop(a1);
        let _b2 = waiting.await;
    }
}
