//! Connections: the shared state, the reader task, and the public handle.

use std::any::TypeId;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::rt::time::Instant;
use crate::rt::AbortHandle;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod builder;
mod connection;
mod panics;

pub use builder::ConnectionBuilder;
pub use connection::Connection;
use panics::install_panic_hook;
pub(crate) use panics::panic_error;

use super::blocking_pool::{ConnBlocking, ServerBlocking};
use super::budget::Budget;
use super::call::{Args, CallCx, Handle, Reply};
use super::input::Input;
use super::io::{write_loop, BoxRead, BoxWrite};
use super::reader::{handshake, hello, read_loop};
use super::sched::{ConnSched, Sched};
use super::share::OutputShare;
use super::teardown::{drop_caught, drop_each_caught};
use crate::auth::{exchange, Side};
use crate::interface::{Dispatch, Interface};
use crate::peer::Peer;
use crate::proto::{encode, CallId, Event, ExportKey, ImportRef, ObjectId, ReleaseSink, State};
use crate::stats::Meter;
use crate::transport::{ClientTls, TlsIdentity};
use crate::{Error, Limits, Remote, RemoteError};

pub(crate) type Waiter = oneshot::Sender<Result<Incoming, Error>>;
pub(crate) type Core = State<Arc<dyn Dispatch>, Waiter>;

/// A reply to one of our calls, still encoded.
pub(crate) struct Incoming {
    pub(crate) frame: Bytes,
    pub(crate) result: Result<Range<usize>, RemoteError>,
    pub(crate) refs: Vec<ImportRef>,
    pub(crate) owns: Vec<(ObjectId, Arc<dyn Dispatch>)>,
}

/// References resolved when a message arrived, held until it is decoded.
#[derive(Default)]
pub(crate) struct Held {
    pub(crate) refs: Vec<ImportRef>,
    pub(crate) owns: Vec<(ObjectId, Arc<dyn Dispatch>)>,
}

/// Work queued for the connection task (from `Drop`s and other tasks).
#[derive(Debug)]
pub(crate) enum Control {
    Release {
        id: ObjectId,
        generation: u64,
        count: u32,
    },
    Cancel {
        id: CallId,
        sent: bool,
    },
    CallDone(CallId, u64),
    /// A blocking closure of the call running as this sequence number
    /// returned.
    BlockingDone(u64),
    /// `Shared::close` was called: stop reading.
    Closed,
}

/// What kind of frame was handled (the idle timer ignores keepalive).
#[derive(Debug)]
pub(crate) enum Heard {
    /// Any message other than keepalive.
    Traffic,
    /// A ping (answered).
    Ping,
    /// A pong with this token.
    Pong(u32),
}

struct CtlSink(mpsc::UnboundedSender<Control>);

impl ReleaseSink for CtlSink {
    fn release(&self, id: ObjectId, generation: u64, count: u32) {
        // Lock-free queue push; the connection task sends the frame.
        let _ = self.0.send(Control::Release {
            id,
            generation,
            count,
        });
    }
}

/// A frame at least this long is handed to the writer by moving its
/// buffer, not copied ([`Shared::send_vec`]). Encode buffers this large are
/// not kept for reuse anyway (`call.rs` `with_scratch`).
const LARGE_FRAME: usize = 64 << 10;

/// State shared by a connection's tasks, proxies and handlers.
pub(crate) struct Shared {
    core: Mutex<Core>,
    /// Frames waiting for the writer, appended in order; the writer swaps
    /// it with its own (emptied) buffer, so no frame is allocated or
    /// channelled on its own.
    pub(crate) out: Mutex<Vec<u8>>,
    /// Set when `out` went from empty to not empty; the writer clears it.
    pub(crate) out_ready: AtomicBool,
    /// Set (under the `out` lock) when the writer has ended: nothing more
    /// is queued or counted.
    pub(crate) writer_gone: AtomicBool,
    /// Bytes queued and not yet written (in `out` or the writer's batch).
    queued: AtomicUsize,
    /// Capacity of `out` and the writer's batch buffer, counted in the
    /// budget (memory held, not just bytes queued).
    out_charged: AtomicUsize,
    /// Bytes of partly received frames reserved in the budget.
    pub(crate) buffered_input: AtomicUsize,
    /// The memory budget this connection counts against (its server's).
    pub(crate) budget: Arc<Budget>,
    /// Accepted by a server (the short unauthenticated idle timeout applies).
    pub(crate) server_side: bool,
    pub(crate) out_waker: futures_util::task::AtomicWaker,
    /// Mirrors `closed` without the token's lock, for the hot path.
    is_closed: AtomicBool,
    pub(crate) ctl: mpsc::UnboundedSender<Control>,
    pub(crate) limits: Limits,
    closed: CancellationToken,
    close_reason: Mutex<Option<Error>>,
    /// Spawned handlers by sequence number (ids may be reused by the peer).
    running: Mutex<crate::proto::IdMap<u64, AbortHandle>>,
    pub(crate) runtime: crate::rt::RuntimeHandle,
    peer: String,
    /// The peer's verified TLS certificate, if the transport was TLS.
    tls_identity: Option<TlsIdentity>,
    /// Who the peer is; set when the handshake completed.
    pub(crate) info: OnceLock<Peer>,
    /// Blocking-method slots, and calls whose closures outlive their handler.
    pub(crate) blocking: ConnBlocking,
    /// Running handlers and their estimated replies, against this
    /// connection's share of the budget.
    pub(crate) output_share: OutputShare,
    /// Results of `#[remote(cache(..))]` methods, made on first use.
    pub(crate) cache: std::sync::OnceLock<crate::cache::ClientCache>,
    /// This connection's place among its server's run turns.
    pub(crate) sched: ConnSched,
    /// Calls, errors and bytes counted (`Connection::stats`).
    pub(crate) meter: Meter,
    /// The `remote.connection` span (disabled without a subscriber).
    pub(crate) span: tracing::Span,
    /// Invalidations pushed to the peer and its acknowledgements.
    pub(crate) pushes: super::invalidate::Pushes,
    /// Memoised replies: the server's cache, or this connection's own.
    pub(crate) memo: OnceLock<Arc<crate::memo::MemoCache>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("closed", &self.closed.is_cancelled())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the protected
    // state inconsistent (no user code runs under them), so poisoning is
    // ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    /// The peer's address, as the transport gave it.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Who the peer is (its address only, before the handshake completed).
    pub(crate) fn peer_info(&self) -> Peer {
        self.info
            .get()
            .cloned()
            .unwrap_or_else(|| Peer::new(self.peer.clone(), None, None))
    }

    /// Bytes queued for the peer and not yet written.
    pub(crate) fn queued_output(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// The writer wrote `n` queued bytes.
    pub(crate) fn wrote(&self, n: usize) {
        self.meter.wrote(n);
        self.queued.fetch_sub(n, Ordering::AcqRel);
        // A reader held back by this connection's queue re-checks.
        self.budget.wake();
    }

    /// The writer freed an output buffer of `capacity` bytes.
    pub(crate) fn freed_output(&self, capacity: usize) {
        self.out_charged.fetch_sub(capacity, Ordering::AcqRel);
        self.budget.release(capacity);
    }

    /// The writer has ended: gives back everything still counted and
    /// refuses further frames.
    pub(crate) fn writer_ended(&self) {
        let mut out = lock(&self.out);
        self.writer_gone.store(true, Ordering::Release);
        *out = Vec::new();
        self.queued.store(0, Ordering::Release);
        let n = self.out_charged.swap(0, Ordering::AcqRel);
        self.budget.release(n);
    }

    /// Queues a complete frame for the writer. Never refused for size: a
    /// connection over its budgets stops being read instead (so no new
    /// handler starts), see `driver/budget.rs`.
    pub(crate) fn send(&self, frame: &[u8]) -> Result<(), Error> {
        if self.is_closed.load(Ordering::Acquire) {
            return Err(self.lost());
        }
        let was_empty = {
            let mut out = lock(&self.out);
            if self.writer_gone.load(Ordering::Acquire) {
                drop(out);
                return Err(self.lost());
            }
            let was_empty = out.is_empty();
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
            self.queued.fetch_add(frame.len(), Ordering::AcqRel);
            was_empty
        };
        if was_empty {
            // The writer takes everything queued when it wakes: one wake-up
            // per batch, not per frame.
            self.out_ready.store(true, Ordering::Release);
            self.out_waker.wake();
        }
        Ok(())
    }

    /// Queues a complete frame like [`send`](Self::send), taking `frame`'s
    /// buffer instead of copying it when it is large and nothing else is
    /// queued: a large value is not copied a second time on its way out.
    /// `frame` is left empty (with the small buffer it was swapped for)
    /// when taken, unchanged otherwise.
    pub(crate) fn send_vec(&self, frame: &mut Vec<u8>) -> Result<(), Error> {
        if frame.len() < LARGE_FRAME {
            return self.send(frame);
        }
        if self.is_closed.load(Ordering::Acquire) {
            return Err(self.lost());
        }
        {
            let mut out = lock(&self.out);
            if self.writer_gone.load(Ordering::Acquire) {
                drop(out);
                return Err(self.lost());
            }
            if !out.is_empty() {
                drop(out);
                return self.send(frame);
            }
            let before = out.capacity();
            std::mem::swap(&mut *out, frame);
            frame.clear();
            // The budget counts the capacity held in `out`: the one taken
            // in, less the empty one handed back.
            let now = out.capacity();
            if now >= before {
                self.out_charged.fetch_add(now - before, Ordering::AcqRel);
                self.budget.charge(now - before);
            } else {
                self.out_charged.fetch_sub(before - now, Ordering::AcqRel);
                self.budget.release(before - now);
            }
            self.queued.fetch_add(out.len(), Ordering::AcqRel);
        }
        // `out` was empty: the writer is woken for this batch.
        self.out_ready.store(true, Ordering::Release);
        self.out_waker.wake();
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
        self.out_ready.store(true, Ordering::Release);
        self.out_waker.wake();
        self.closed.cancel();
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
        let limit = self.limits.max_exports;
        self.core()
            .export(key, || T::into_dispatch(obj.clone()))
            .map_err(|e| Error::limit("max_exports", limit as u64, e.to_string()))
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

    pub(super) fn handle_ctl(&self, c: Control) {
        match c {
            Control::Release {
                id,
                generation,
                count,
            } => {
                let frame = self.core().import_released(id, generation, count);
                // The peer may reuse the id for another object, and is not
                // told to invalidate for an object we no longer hold.
                if let Some(cache) = self.cache.get() {
                    cache.forget_object(id);
                }
                if let Some(f) = frame {
                    let _ = self.send(&f);
                }
            }
            Control::Cancel { id, sent } => {
                if self.core().cancel_call(id, sent) {
                    let _ = self.send(&encode::cancel(id));
                }
            }
            Control::CallDone(id, seq) => {
                if lock(&self.running).remove(&seq).is_some() {
                    self.output_share.stopped(&self.budget);
                }
                self.handler_stopped(id, seq);
            }
            Control::BlockingDone(seq) => {
                // The call's handler had stopped: now the call is done.
                if let Some(id) = self.blocking.closure_done(seq) {
                    self.core().call_done(id, seq);
                }
            }
            Control::Closed => {}
        }
    }

    /// An incoming call's handler stopped: the call stops counting unless
    /// a blocking closure it started still runs (then that closure's end
    /// does it).
    fn handler_stopped(&self, id: CallId, seq: u64) {
        if self.blocking.handler_done(seq) {
            self.core().call_done(id, seq);
        }
    }

    /// Handles one frame; `Err` closes the connection with that reason
    /// (after a goodbye was queued where the peer deserves one).
    pub(super) fn on_frame(self: &Arc<Self>, frame: Bytes) -> Result<Heard, Error> {
        let event = self.core().handle_frame(&frame);
        let event = match event {
            Ok(ev) => ev,
            Err(v) => {
                tracing::warn!(name: "remote.protocol_violation", "protocol violation: {v}");
                let _ = self.send(&encode::goodbye(&format!("protocol violation: {v}")));
                return Err(Error::Protocol(v.0));
            }
        };
        match event {
            Event::Opened { .. } => {}
            Event::Call {
                id,
                seq,
                target,
                object,
                method,
                timeout_ms,
                args,
                refs,
                owns,
            } => {
                self.meter.call_started();
                let held = Held { refs, owns };
                let span = crate::trace::call_span(
                    &self.span,
                    object,
                    target.interface_name(),
                    method,
                    id,
                    timeout_ms,
                );
                let call = (id, seq);
                self.start_incoming(
                    call,
                    target,
                    method,
                    timeout_ms,
                    frame.clone(),
                    args,
                    held,
                    span,
                );
            }
            Event::Reject { frame, kind } => {
                self.meter.call_started();
                if kind == "limit_exceeded" {
                    crate::trace::limit_hit("max_calls_in_flight", "an incoming call was refused");
                }
                self.send_error_reply(&frame, kind);
            }
            Event::Reply {
                waiter,
                result,
                refs,
                owns,
            } => {
                let _ = waiter.send(Ok(Incoming {
                    frame: frame.clone(),
                    result,
                    refs,
                    owns,
                }));
            }
            // A panicking destructor must not end the reader.
            Event::Released(obj) => drop_caught(&self.peer, "an object released by the peer", obj),
            Event::Cancel { seq, reply } => {
                if let Some(h) = lock(&self.running).get(&seq) {
                    h.abort();
                }
                // The call's one reply; a reply the handler makes after
                // this is not sent (`answered` returns false).
                self.send_error_reply(&reply, "cancelled");
            }
            Event::Goodbye(reason) => {
                return Err(Error::ConnectionLost(format!(
                    "peer closed the connection: {reason}"
                )));
            }
            Event::Ping(token) => {
                // Frames still queued for the peer reach it before a pong
                // would, and any frame proves us alive (PROTOCOL.md §3.8):
                // answering only an empty queue keeps a peer that floods
                // pings and never reads from queueing output without bound.
                if self.queued_output() == 0 {
                    let _ = self.send(&crate::proto::encode_pong(token));
                }
                return Ok(Heard::Ping);
            }
            Event::Pong(token) => return Ok(Heard::Pong(token)),
            Event::Invalidate {
                token,
                object,
                methods,
            } => self.on_invalidate(token, object, &methods),
            Event::Invalidated(token) => {
                if let Err(v) = self.on_invalidated(token) {
                    tracing::debug!(peer = %self.peer, "protocol violation: {v}");
                    let _ = self.send(&encode::goodbye(&format!("protocol violation: {v}")));
                    return Err(Error::Protocol(v));
                }
            }
            Event::Nothing => {}
        }
        Ok(Heard::Traffic)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_incoming(
        self: &Arc<Self>,
        (id, seq): (CallId, u64),
        target: Arc<dyn Dispatch>,
        method: &str,
        timeout_ms: u32,
        frame: Bytes,
        args: Range<usize>,
        held: Held,
        span: tracing::Span,
    ) {
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
        let deadline = super::deadline::after(Instant::now(), timeout);
        let args = Args::new(self.clone(), frame, args, held);
        let cx = CallCx::new(self.clone(), id, seq, deadline);
        let peer = self.peer_info();
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            target.call(method, args, cx)
        }));
        let mut fut = match started {
            Ok(Ok(fut)) => fut,
            Ok(Err(e)) => {
                self.core().call_done(id, seq);
                let err = dispatch_error(&e, target.interface_name(), method);
                self.send_error_reply(&encode::error(id, &err, &self.limits), &err.kind);
                return;
            }
            Err(panic) => {
                self.core().call_done(id, seq);
                let frame = encode::error(id, &panic_error(panic), &self.limits);
                self.send_error_reply(&frame, "panic");
                return;
            }
        };
        // Fast path: most handlers finish without waiting; run them here
        // without spawning a task, in a run turn (`sched.rs`). With no turn
        // free, the call waits for its fair turn in a task instead.
        let turn = self.sched.try_turn();
        let queued = turn.is_none();
        let first = match turn {
            Some(_) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _inline = Inline::enter();
                let _span = span.enter();
                let first_poll = || (&mut fut).now_or_never();
                crate::peer::sync_scope(peer.clone(), || {
                    super::deadline::sync_scope(deadline, first_poll)
                })
            })),
            None => Ok(None),
        };
        drop(turn);
        match first {
            Ok(Some(Reply { .. })) => {
                // `CallCx::reply` already queued the reply frame.
                drop_caught(&self.peer, "a finished handler", fut);
                self.handler_stopped(id, seq);
            }
            Err(panic) => {
                drop_caught(&self.peer, "a panicked handler", fut);
                self.handler_stopped(id, seq);
                let frame = encode::error(id, &panic_error(panic), &self.limits);
                self.send_error_reply(&frame, "panic");
            }
            Ok(None) => {
                // Each later poll takes a turn too, in the method's class
                // or else the connection's.
                let class = (target.method_priority(method)).unwrap_or_else(|| peer.priority());
                let fut = self.sched.fair(fut, class, queued);
                let shared = self.clone();
                // Made before the task and moved into it: a task aborted
                // (by a cancel) before its first poll never runs its body,
                // but dropping it drops the guard, so the call stops
                // counting in `max_calls_in_flight` either way. One tuple,
                // so the handler is dropped before the guard says it is
                // done (tuple fields drop in order), run or not.
                let guarded = (
                    fut,
                    DoneGuard {
                        ctl: shared.ctl.clone(),
                        id,
                        seq,
                    },
                );
                let work = async move {
                    let (fut, _done) = guarded;
                    let run = std::panic::AssertUnwindSafe(fut).catch_unwind();
                    let timed = crate::rt::time::timeout_at(deadline, run);
                    let res =
                        crate::peer::scope(peer, super::deadline::scope(deadline, timed)).await;
                    let (frame, kind) = match res {
                        Ok(Ok(Reply { .. })) => return, // queued by `CallCx::reply`
                        Ok(Err(panic)) => (
                            encode::error(id, &panic_error(panic), &shared.limits),
                            "panic",
                        ),
                        Err(_) => {
                            let why =
                                format!("deadline of {timeout_ms} ms passed; the call was stopped");
                            let e =
                                RemoteError::new("deadline_exceeded", "remote_core::Error", why);
                            (encode::error(id, &e, &shared.limits), "deadline_exceeded")
                        }
                    };
                    // Answered (id free for reuse) before the peer can see
                    // it; not sent if a cancel already answered the call.
                    if shared.core().answered(id, seq) {
                        shared.send_error_reply(&frame, kind);
                    }
                };
                // In the call's span if enabled, else its connection's.
                let span = if span.is_none() {
                    self.span.clone()
                } else {
                    span
                };
                let task = crate::trace::spawn_in(span, work);
                self.output_share.started();
                lock(&self.running).insert(seq, task.abort_handle());
            }
        }
    }

    /// Queues an error reply to an incoming call, counted under `kind`.
    pub(crate) fn send_error_reply(&self, frame: &[u8], kind: &str) {
        if self.send(frame).is_ok() {
            self.meter.replied_error(kind);
        }
    }

    /// Connection lost or closed: fail every waiter, abort every handler,
    /// drop every exported object. Repeating it does nothing more.
    pub(super) fn disconnect(&self, reason: Error) {
        self.close(reason);
        super::invalidate::unregister(self);
        if let Some(cache) = self.cache.get() {
            cache.clear();
        }
        let (waiters, objects) = self.core().close();
        let lost = self.lost();
        for w in waiters {
            let _ = w.send(Err(lost.clone()));
        }
        let running: Vec<_> = lock(&self.running).drain().collect();
        for (_, h) in running {
            h.abort();
        }
        // Dropped last and outside every lock (destructors may re-enter),
        // each on its own (one may panic).
        drop_each_caught(
            &self.peer,
            "an object exported to a closed connection",
            objects,
        );
    }
}

thread_local! {
    static INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current code runs in a handler's first poll by the reader.
pub(crate) fn running_inline() -> bool {
    INLINE.with(std::cell::Cell::get)
}

/// Marks the reader's inline poll of a handler (reset on drop, also on panic).
struct Inline(bool);

impl Inline {
    fn enter() -> Self {
        Inline(INLINE.with(|c| c.replace(true)))
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        INLINE.with(|c| c.set(self.0));
    }
}

struct DoneGuard {
    ctl: mpsc::UnboundedSender<Control>,
    id: CallId,
    seq: u64,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.ctl.send(Control::CallDone(self.id, self.seq));
    }
}

/// The error reply for a call that could not start. Arguments that do not
/// decode name this side's interface, the usual cause being a caller that
/// took the object for another interface.
fn dispatch_error(e: &Error, interface: &str, method: &str) -> RemoteError {
    let kind = match e {
        Error::Decode { .. } => {
            let msg = format!(
                "{e} (for method {} of interface `{interface}`: does the caller use that interface?)",
                crate::bounded::quote(method)
            );
            return RemoteError::new("bad_arguments", "remote_core::Error", msg);
        }
        Error::Remote(r) => return (**r).clone(),
        other => other.kind_code(),
    };
    RemoteError::new(kind, "remote_core::Error", e.to_string())
}
