//! The state shared by a connection's tasks, proxies and handlers, and its
//! lowest-level operations: queueing frames for the writer, closing, and
//! counting exports. What reacts to the peer's frames is in `conn/`.

use std::any::TypeId;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio_util::sync::CancellationToken;

use super::blocking_pool::ConnBlocking;
use super::budget::Budget;
use super::control::{Control, Core};
use super::sched::ConnSched;
use super::share::OutputShare;
use super::teardown::drop_each_caught;
use crate::interface::Interface;
use crate::peer::Peer;
use crate::proto::{ExportKey, ObjectId, TableError};
use crate::stats::Meter;
use crate::transport::TlsIdentity;
use crate::{Error, Limits};

use super::direct::{Out, Pen, Woken};
use super::kept::{Kept, LARGE_FRAME};

/// Whether a queued frame is a reply to an incoming call, counted in the
/// connection's statistics: `Some(None)` a return, `Some(Some(i))` an
/// error of kind `ERROR_KINDS[i]`, `None` not a reply.
type Replied = Option<Option<usize>>;

/// State shared by a connection's tasks, proxies and handlers.
pub(crate) struct Shared {
    pub(super) core: Mutex<Core>,
    /// Frames waiting to be written, appended in order, and the write
    /// token (`direct.rs`); the token holder swaps the queue with its own
    /// (emptied) buffer, so no frame is allocated or channelled on its own.
    pub(crate) out: Mutex<Out>,
    /// The socket's writing half, used by the write token's holder only.
    pub(crate) pen: Mutex<Pen>,
    /// The reader task writes what is queued at its next wait (`direct.rs`).
    pub(crate) deferred: AtomicBool,
    /// Replies handed to our callers since the reader last waited, and
    /// whether that batch held several (`direct.rs`): callers are then
    /// about to call again together, so none writes alone.
    pub(crate) batch_replies: AtomicUsize,
    pub(crate) burst: AtomicBool,
    /// Set while a reply of this connection counted whatever the budget's
    /// room is held (`heavy_reply.rs`): one at a time.
    pub(crate) over_room: Arc<AtomicBool>,
    /// Set when `out` went from empty to not empty; the writer clears it.
    pub(crate) out_ready: AtomicBool,
    /// Set (under the `out` lock) when the writer has ended: nothing more
    /// is queued or counted.
    pub(crate) writer_gone: AtomicBool,
    /// Bytes queued and not yet written (in `out`, the pen or the writer's
    /// batch): `queued_in - queued_out`, two totals with one writer each,
    /// so neither is changed by an atomic read-modify-write. `queued_in`
    /// grows under the `out` lock; `queued_out` grows by what the write
    /// token's holder wrote (the token passes under that lock too).
    pub(super) queued_in: AtomicUsize,
    pub(super) queued_out: AtomicUsize,
    /// Capacity of `out`, the pen's and the writer's batch buffers, counted
    /// in the budget (memory held, not just bytes queued).
    pub(super) out_charged: AtomicUsize,
    /// Bytes of partly received frames reserved in the budget.
    pub(crate) buffered_input: AtomicUsize,
    /// Bytes the transport counted in the budget for a message it handed
    /// the reader (`transport/ws_meter.rs`): the reader's reservation for
    /// the frame takes them over (`Input::reserve`), or the transport
    /// gives back what is left once the reader has all of it.
    pub(crate) read_credit: Arc<AtomicUsize>,
    /// What the transport gathers of a message, if it does (set when the
    /// connection opens).
    pub(crate) gathering: std::sync::OnceLock<Arc<dyn super::io_types::Gathering>>,
    /// The memory budget this connection counts against (its server's).
    pub(crate) budget: Arc<Budget>,
    /// Accepted by a server (the short unauthenticated idle timeout applies).
    pub(crate) server_side: bool,
    pub(crate) out_waker: futures_util::task::AtomicWaker,
    /// Mirrors `closed` without the token's lock, for the hot path.
    pub(super) is_closed: AtomicBool,
    pub(crate) ctl: super::ctl_queue::CtlTx,
    pub(crate) limits: Limits,
    pub(super) closed: CancellationToken,
    /// The reader and writer tasks, counted down as they end
    /// (`teardown.rs`): a server keeps the connection's slot until both did.
    pub(super) io_tasks: super::teardown::IoTasks,
    pub(super) close_reason: Mutex<Option<Error>>,
    /// Spawned handlers by sequence number (ids may be reused by the
    /// peer); `None` marks one that stopped before it was recorded.
    pub(super) running: Mutex<crate::proto::IdMap<u64, Option<super::conn::Spawned>>>,
    pub(crate) runtime: crate::rt::RuntimeHandle,
    pub(super) peer: String,
    /// The peer's verified TLS certificate, if the transport was TLS.
    pub(super) tls_identity: Option<TlsIdentity>,
    /// Who the peer is; set when the handshake completed.
    pub(crate) info: OnceLock<Peer>,
    /// Blocking-method slots, and calls whose closures outlive their handler.
    pub(crate) blocking: ConnBlocking,
    /// Running handlers and their estimated replies, against this
    /// connection's share of the budget.
    pub(crate) output_share: OutputShare,
    /// The root interface the peer announced in its hello, if it did.
    pub(crate) peer_root: OnceLock<crate::fingerprint::RootInfo>,
    /// Results of `#[remote(cache(..))]` methods, made on first use.
    pub(crate) cache: std::sync::OnceLock<crate::cache::ClientCache>,
    /// The bound it shares with the caches of the server's other
    /// connections, on a server.
    pub(crate) cache_pool: Option<Arc<crate::weighed::Pool>>,
    /// Whether a pending write tells that the peer reads nothing
    /// (`transport/progress.rs`): only then does `pressure_stall_timeout`
    /// apply (`stall.rs`).
    pub(crate) writes_show_reading: bool,
    /// This connection's place among its server's run turns.
    pub(crate) sched: ConnSched,
    /// Calls, errors and bytes counted (`Connection::stats`).
    pub(crate) meter: Meter,
    /// The `remote.connection` span (disabled without a subscriber).
    pub(crate) span: tracing::Span,
    /// Invalidations pushed to the peer and its acknowledgements.
    pub(crate) pushes: super::pushes::Pushes,
    /// The server's buckets of late acknowledgements per peer address
    /// (`lateness.rs`), and this peer's address (a server's TCP, TLS and
    /// WebSocket connections).
    pub(crate) peer_misses: Option<(Arc<super::lateness::PeerMisses>, std::net::IpAddr)>,
    /// Memoised replies: the server's cache, or this connection's own.
    pub(crate) memo: OnceLock<Arc<crate::memo::MemoCache>>,
    /// The deadline timer of our calls (run by the reader task).
    pub(crate) expiry: super::expiry::Expiry,
    /// Where the replies to our calls wait for their callers.
    pub(crate) replies: super::replies::Replies,
    /// Large buffers kept for the next large frame (`kept.rs`).
    pub(crate) kept: Kept,
    /// `Connection` clones and proxies of this side (`users.rs`).
    pub(crate) users: std::sync::atomic::AtomicUsize,
    /// Whether this side serves a root (then it never closes for lack
    /// of users, `users.rs`).
    pub(crate) serves_root: bool,
    /// Shared collections' notifications the peer's listeners answered on
    /// this connection: the progress a notification waiting for its own
    /// answer looks for (`collections/subscribers.rs`).
    pub(crate) notifications_answered: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("closed", &self.closed.is_cancelled())
            .finish()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the protected
    // state inconsistent (no user code runs under them), so poisoning is
    // ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] if the lock is free at once, poisoning ignored likewise;
/// `None` while someone holds it.
pub(super) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

impl Shared {
    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    pub(crate) fn closed_token(&self) -> &CancellationToken {
        &self.closed
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.info.get().is_some_and(Peer::is_authenticated)
    }

    /// Who the peer is (its address only, before the handshake completed).
    pub(crate) fn peer_info(&self) -> Peer {
        self.info.get().cloned().unwrap_or_else(|| {
            let hold = super::heavy_reply::hold_fn(&self.budget, &self.peer);
            Peer::new(
                self.peer.clone(),
                None,
                None,
                self.limits.max_frame_len,
                Some(hold),
            )
        })
    }

    /// The peer's address, as the transport gave it.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Bytes queued for the peer and not yet written.
    pub(crate) fn queued_output(&self) -> usize {
        // `queued_out` first: it never passes the `queued_in` of a frame
        // written, and that store happened before its writer's (Release /
        // Acquire), so the later look at `queued_in` sees at least as much.
        let written = self.queued_out.load(Ordering::Acquire);
        let queued = self.queued_in.load(Ordering::Acquire);
        queued.wrapping_sub(written)
    }

    /// Adds `n` to the bytes queued; `out` is locked (its one writer).
    fn queued_more(&self, n: usize) {
        let c = &self.queued_in;
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
    }

    /// The writer wrote `n` queued bytes.
    pub(crate) fn wrote(&self, n: usize) {
        self.meter.wrote(n);
        // The token's holder is the one writer of `queued_out`.
        let c = &self.queued_out;
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
        // A reader held back by this connection's queue re-checks, and so
        // do tasks waiting to call the peer (after `own.wake`'s fence).
        self.output_share.own.wake();
        self.output_share.callers.wake_fenced();
        // Invalidations held back for want of room (`pushes.rs`) go once
        // there is: the writer task sends them. Read after the fence
        // `wake` makes, which the pusher's re-check of the queue pairs with.
        if self.pushes.holds_back() {
            self.wake_writer();
        }
    }

    /// The writer freed an output buffer of `capacity` bytes.
    pub(crate) fn freed_output(&self, capacity: usize) {
        self.out_charged.fetch_sub(capacity, Ordering::AcqRel);
        self.budget.release(capacity);
    }

    /// A spare output buffer is kept (`kept.rs`): the reader watches the
    /// budget from now on, to give it back once a task waits for room.
    #[cold]
    pub(crate) fn kept_spare(&self) {
        let _ = self.ctl.send(Control::Kept);
    }

    /// The writer is done with an emptied batch buffer grown past what it
    /// keeps: kept as the spare for the next large encode (still counted,
    /// now as kept) if `keep` (it follows another large batch), or freed.
    pub(crate) fn retire_output(&self, buf: Vec<u8>, keep: bool) {
        let capacity = buf.capacity();
        let offered = if keep {
            self.kept.offer(&self.budget, buf)
        } else {
            Some(buf)
        };
        match offered {
            None => {
                self.out_charged.fetch_sub(capacity, Ordering::AcqRel);
                self.kept_spare();
            }
            Some(buf) => {
                drop(buf);
                self.freed_output(capacity);
            }
        }
    }

    /// The writer has ended: gives back everything still counted and
    /// refuses further frames.
    pub(crate) fn writer_ended(&self) {
        self.kept.close(&self.budget);
        let mut out = lock(&self.out);
        self.writer_gone.store(true, Ordering::Release);
        out.buf = Vec::new();
        // Nothing is queued from here on, nor written: the writer task
        // holds the token for good, so it is `queued_out`'s writer.
        let queued = self.queued_in.load(Ordering::Relaxed);
        self.queued_out.store(queued, Ordering::Release);
        drop(out);
        lock(&self.pen).buf = Vec::new();
        let n = self.out_charged.swap(0, Ordering::AcqRel);
        self.budget.release(n);
        self.output_share.own.wake();
    }

    /// Queues a complete frame for the writer. Never refused for size: a
    /// connection over its budgets stops being read instead (so no new
    /// handler starts), see `driver/budget.rs`.
    pub(crate) fn send(&self, frame: &[u8]) -> Result<(), Error> {
        self.queue(frame, false, None)
    }

    /// [`send`](Self::send) for an error reply to an incoming call of
    /// kind `kind`, counted in the connection's statistics if queued.
    pub(crate) fn send_error_frame(&self, frame: &[u8], kind: &str) -> Result<(), Error> {
        self.queue(frame, false, Some(Some(crate::stats::kind_index(kind))))
    }

    /// Queues a goodbye giving `reason`: the last frame the connection
    /// writes. A sender that has not yet seen the connection closed (it is
    /// marked closed just after) is refused from here on, so its frame
    /// cannot follow the goodbye.
    pub(crate) fn send_goodbye(&self, reason: &str) -> Result<(), Error> {
        self.queue(&crate::proto::encode::goodbye(reason), true, None)
    }

    /// [`send`](Self::send); `last` seals the queue behind `frame`;
    /// `reply` counts it as a reply ([`Replied`]).
    fn queue(&self, frame: &[u8], last: bool, reply: Replied) -> Result<(), Error> {
        if self.is_closed.load(Ordering::Acquire) {
            return Err(self.lost());
        }
        let mut out = lock(&self.out);
        if self.writer_gone.load(Ordering::Acquire) || out.sealed {
            drop(out);
            return Err(self.lost());
        }
        out.sealed = last;
        let was_empty = out.buf.is_empty();
        self.append(&mut out.buf, frame);
        self.count_reply(reply);
        let then = self.after_queue(&mut out, was_empty, false);
        self.went(out, then);
        Ok(())
    }

    /// Appends `frame` to the queue `out`, counting it.
    fn append(&self, out: &mut Vec<u8>, frame: &[u8]) {
        let before = out.capacity();
        if before - out.len() < frame.len() {
            // Grow by a quarter, not double: the memory held for a
            // large queue stays close to what is queued.
            let grow = frame.len().max(out.len() / 4).max(4096);
            out.reserve_exact(grow);
        }
        out.extend_from_slice(frame);
        let grown = out.capacity() - before;
        if grown > 0 {
            self.out_charged.fetch_add(grown, Ordering::AcqRel);
            self.budget.charge(grown);
        }
        self.queued_more(frame.len());
    }

    /// Does what [`after_queue`](Self::after_queue) decided, `out` locked.
    fn went(&self, out: MutexGuard<'_, Out>, then: Woken) {
        match then {
            Woken::Take => self.write_taken(out),
            Woken::Wake => {
                drop(out);
                // The writer takes everything queued when it wakes: one
                // wake-up per batch, not per frame.
                self.wake_writer();
            }
            Woken::ToReader => {
                drop(out);
                self.handed_to_reader();
            }
            Woken::Nothing => {}
        }
    }

    /// Queues a complete frame like [`send`](Self::send), taking `frame`'s
    /// buffer instead of copying it when it is large and nothing else is
    /// queued: a large value is not copied a second time on its way out.
    /// `frame` is left empty (with the small buffer it was swapped for)
    /// when taken, unchanged otherwise. Then, if `direct` and nobody is
    /// writing, writes the queue from this task as far as the socket takes
    /// it without waiting (`direct.rs`).
    pub(crate) fn send_vec_as(&self, frame: &mut Vec<u8>, direct: bool) -> Result<(), Error> {
        self.queue_vec(frame, direct, None)
    }

    /// [`send_vec_as`](Self::send_vec_as) for a reply to an incoming call:
    /// a return (`error` `None`) or an error of kind `ERROR_KINDS[i]`
    /// (`Some(i)`), counted in the connection's statistics if queued.
    pub(crate) fn send_reply_vec(
        &self,
        frame: &mut Vec<u8>,
        direct: bool,
        error: Option<usize>,
    ) -> Result<(), Error> {
        self.queue_vec(frame, direct, Some(error))
    }

    /// Counts a frame just queued as a reply, if it is one: under the
    /// `out` lock, which makes it the reply counters' one writer at a time
    /// (no atomic read-modify-write per reply).
    #[inline]
    fn count_reply(&self, reply: Replied) {
        if let Some(error) = reply {
            self.meter.replied_queued(error);
        }
    }

    fn queue_vec(&self, frame: &mut Vec<u8>, direct: bool, reply: Replied) -> Result<(), Error> {
        if self.is_closed.load(Ordering::Acquire) {
            return Err(self.lost());
        }
        let mut out = lock(&self.out);
        if self.writer_gone.load(Ordering::Acquire) || out.sealed {
            drop(out);
            return Err(self.lost());
        }
        let was_empty = out.buf.is_empty();
        if frame.len() < LARGE_FRAME || !was_empty {
            self.append(&mut out.buf, frame);
        } else {
            let before = out.buf.capacity();
            std::mem::swap(&mut out.buf, frame);
            frame.clear();
            // The budget counts the capacity held in `out`: the one taken
            // in, less the empty one handed back.
            let now = out.buf.capacity();
            if now >= before {
                self.out_charged.fetch_add(now - before, Ordering::AcqRel);
                self.budget.charge(now - before);
            } else {
                self.out_charged.fetch_sub(before - now, Ordering::AcqRel);
                self.budget.release(before - now);
            }
            self.queued_more(out.buf.len());
        }
        self.count_reply(reply);
        let then = self.after_queue(&mut out, was_empty, direct);
        self.went(out, then);
        Ok(())
    }

    /// Marks the connection closed (first reason wins) and stops its tasks.
    pub(crate) fn close(&self, reason: Error) {
        {
            let mut r = lock(&self.close_reason);
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.is_closed.store(true, Ordering::Release);
        // Wake both loops without them polling the token on every turn.
        let _ = self.ctl.send(Control::Closed);
        self.wake_writer();
        self.closed.cancel();
        self.output_share.callers.wake();
    }

    /// The error pending calls fail with.
    pub(crate) fn lost(&self) -> Error {
        match &*lock(&self.close_reason) {
            Some(Error::ConnectionLost(m)) => Error::ConnectionLost(m.clone()),
            Some(other) => Error::ConnectionLost(other.to_string()),
            None => Error::ConnectionLost("connection closed".into()),
        }
    }

    /// Exports a local object (one more send), returning its id.
    pub(crate) fn export<T: ?Sized + Interface>(&self, obj: &Arc<T>) -> Result<ObjectId, Error> {
        let key = ExportKey {
            addr: Arc::as_ptr(obj) as *const () as usize,
            interface: TypeId::of::<T>(),
        };
        self.core()
            .export(key, T::CACHED, || T::into_dispatch(obj.clone()))
            .map_err(|e| match e {
                TableError::PoolFull(max) => {
                    Error::limit("max_server_exports", max as u64, e.to_string())
                }
                TableError::PeerFull(max) => {
                    Error::limit("max_exports_per_peer", max as u64, e.to_string())
                }
                // 2^32 sends the peer never released (ours give receipts
                // back long before: `proto::GIVE_BACK_AT`).
                TableError::Overflow(_) => Error::Encode {
                    what: "reference",
                    message: e.to_string(),
                },
                _ => Error::limit("max_exports", self.limits.max_exports as u64, e.to_string()),
            })
    }

    /// The message counting sends of `ids` is about to be queued: the peer
    /// may use them from now on.
    pub(crate) fn exports_sent(&self, ids: &[ObjectId]) {
        let mut core = self.core();
        for &id in ids {
            core.export_sent(id);
        }
    }

    /// Gives back sends counted for a message that was never sent.
    pub(crate) fn unexport(&self, ids: &[ObjectId]) {
        let mut dropped = Vec::new();
        {
            let mut core = self.core();
            for &id in ids {
                if let Ok(Some(obj)) = core.undo_export(id) {
                    dropped.push(obj);
                }
            }
        }
        // Outside the lock (destructors may re-enter), one at a time (one
        // may panic).
        drop_each_caught(&self.peer, "an export whose message was not sent", dropped);
    }
}
