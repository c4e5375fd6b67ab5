//! Connections: setting them up, reacting to the peer's frames (incoming
//! calls, replies, releases), and the public handle.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::codec::weigh::TakenBack;
use crate::rt::time::Instant;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

mod builder;
mod connection;
mod running;

pub use builder::ConnectionBuilder;
pub use connection::Connection;
pub(crate) use running::Spawned;

use super::blocking_pool::{ConnBlocking, ServerBlocking};
use super::budget::Budget;
use super::call::{with_scratch_on, Args, CallCx, Handle, Inline, Reply};
use super::control::{Control, CtlSink, Heard, Held, Incoming};
use super::input::{BoxRead, Input, Plain, Received};
use super::io::{write_loop, BoxWrite};
use super::panics::{install_panic_hook, panic_error};
use super::pipeline::{Answer, KeepGuard};
use super::reader::{handshake, hello, read_loop};
use super::replies::Deliveries;
use super::sched::{ConnSched, Sched};
use super::share::{ArgsCharge, OutputShare};
use super::shared::{lock, try_lock, Shared};
use super::teardown::{drop_caught, drop_each_caught};
use super::users::UserRef;
use crate::auth::{exchange, Side};
use crate::interface::{Dispatch, Interface};
use crate::peer::Peer;
use crate::proto::{encode, CallId, Event, ObjectId, ReleaseSink, State};
use crate::stats::Meter;
use crate::transport::{ClientTls, TlsIdentity};
use crate::{Error, Limits, Remote, RemoteError};

impl Shared {
    pub(super) fn handle_ctl(&self, c: Control) {
        match c {
            Control::Release {
                id,
                generation,
                count,
            } => {
                let open = self.core().import_forget(id, generation);
                self.released(id, open, count);
            }
            Control::GiveBack { id, count } => {
                // The import stays, and so do its cached replies.
                let open = self.core().phase() != crate::proto::Phase::Closed;
                self.send_release(id, open, count);
            }
            Control::Cancel { id, sent } => {
                if self.core().cancel_call(id, sent) {
                    let _ = self.send(&encode::cancel(id));
                }
            }
            Control::BlockingDone(seq) => {
                // The call's handler had stopped: now the call is done.
                if let Some(id) = self.blocking.closure_done(seq) {
                    self.core().call_done(id, seq);
                    self.close_if_unused();
                }
            }
            Control::Unused => self.close_if_unused(),
            Control::Rearm | Control::Closed | Control::Kept => {}
        }
    }

    /// Handles the release of an import where its last proxy was dropped,
    /// without the hop through the reader task, when that is safe: the
    /// core lock is free (a proxy dropped while this thread holds it, as
    /// when a message's references are refused, is queued instead) and no
    /// client cache exists (its locks may be held where a proxy is
    /// dropped). The frame goes out with whatever the writer sends next
    /// (e.g. the reply of the handler that held the proxy), and a release
    /// cannot overtake the message that carried the reference (received
    /// before the proxy existed) nor one that hands it back to the peer
    /// (a call's arguments and a reply's value live until their frame is
    /// queued).
    /// `false`: the caller queues the release for the reader.
    pub(crate) fn release_now(&self, id: ObjectId, generation: u64, count: u32) -> bool {
        if self.cache.get().is_some() {
            return false;
        }
        let Some(mut core) = try_lock(&self.core) else {
            return false;
        };
        let open = core.import_forget(id, generation);
        drop(core);
        self.released(id, open, count);
        true
    }

    /// An import's release was recorded: forgets it in the cache and
    /// queues its frame of `count` receipts (none once the connection
    /// closed), encoded in the reused scratch buffer.
    fn released(&self, id: ObjectId, open: bool, count: u32) {
        // The peer may reuse the id for another object, and is not told
        // to invalidate for an object we no longer hold.
        if let Some(cache) = self.cache.get() {
            cache.forget_object(id);
        }
        self.send_release(id, open, count);
    }

    /// Queues a release frame of `count` receipts of `id` if the
    /// connection is `open`, encoded in the reused scratch buffer.
    fn send_release(&self, id: ObjectId, open: bool, count: u32) {
        if open {
            with_scratch_on(self, |buf| {
                encode::release_in(buf, id, count);
                let _ = self.send(buf);
            });
        }
    }

    /// A handler run inline (never admitted) stopped, its call answered
    /// (or about to be). A blocking closure it started may run on: then
    /// the call counts until that returns, but its id is free already (the
    /// peer may reuse it once it sees the reply). Counted before asking,
    /// so the closure's end, wherever it runs, finds the call counted.
    fn inline_stopped(&self, id: CallId, seq: u64) {
        if self.blocking.any_running() {
            self.core().admit_answered();
            self.handler_stopped(id, seq);
        }
    }

    /// An incoming call's handler stopped: the call stops counting unless
    /// a blocking closure it started still runs (then that closure's end
    /// does it).
    pub(super) fn handler_stopped(&self, id: CallId, seq: u64) {
        if self.blocking.handler_done(seq) {
            self.core().call_done(id, seq);
        }
    }

    /// Handles one frame; `Err` closes the connection with that reason
    /// (after a goodbye was queued where the peer deserves one).
    /// `arrival` tells when it was read (an incoming call's deadline counts
    /// from then), and `charged` what the reader counted in the budget for
    /// a heavy call's arguments (`Input::received`): a handler that runs on
    /// takes it, and the reader gives back what is left.
    pub(super) fn on_frame(
        self: &Arc<Self>,
        frame: Bytes,
        received: Received<'_>,
        later: &mut Deliveries,
    ) -> Result<Heard, Error> {
        let Received {
            arrival,
            charged,
            walk,
            lends,
        } = received;
        // A call is admitted (counted, its id in use) only if its handler
        // runs on past this frame (`start_incoming`).
        let event = self.core().handle_frame_walked(&frame, walk);
        let event = match event {
            Ok(ev) => ev,
            Err(v) => {
                tracing::warn!(name: "remote.protocol_violation", "protocol violation: {v}");
                let _ = self.send_goodbye(&format!("protocol violation: {v}"));
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
                items,
                refs,
                owns,
                keep,
            } => {
                self.meter.call_started();
                let held = Held { refs, owns };
                // A kept-answer call: its answer stands in the state's
                // table until the peer's finish (`pipeline.rs`), counted
                // in the server's pool of kept answers meanwhile.
                let keep = keep.then(|| {
                    let mut core = self.core();
                    let answer = Answer::new(core.answer_kept_in_full(id));
                    let target: Arc<dyn Dispatch> = answer.clone();
                    core.keep_answer(id, target);
                    answer
                });
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
                    arrival.now(),
                    target,
                    method,
                    timeout_ms,
                    (&frame, lends),
                    (args, items, charged),
                    held,
                    span,
                    keep,
                );
            }
            Event::Reject { frame, kind, limit } => {
                self.meter.call_started();
                if let Some(limit) = limit {
                    self.meter.limit_hit(limit, "an incoming call was refused");
                }
                self.send_error_reply(&frame, kind);
            }
            Event::Reply {
                waiter,
                result,
                items,
                refs,
                owns,
            } => {
                // A reply that may lend its frame's allocation weighs all
                // of it: a value shared from it holds it (red-team pass 29).
                let len = frame.len().max(lends);
                let heavy = super::heavy_reply::weigh(self, len, items, lends > 0);
                // The frame itself, not a clone: nothing here reads it
                // after (a reference count's two atomic operations less).
                let reply = Incoming {
                    frame,
                    result,
                    refs,
                    owns,
                    heavy,
                };
                waiter.send_later(self, Ok(reply), later);
            }
            // A panicking destructor must not end the reader.
            Event::Released(obj) => {
                drop_caught(&self.peer, "an object released by the peer", obj);
                self.close_if_unused();
            }
            Event::Cancel { seq, reply } => {
                if let Some(Some(h)) = lock(&self.running).get(&seq) {
                    h.abort.abort();
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
                    let _ = self.send_goodbye(&format!("protocol violation: {v}"));
                    return Err(Error::Protocol(v));
                }
            }
            Event::Nothing => {}
        }
        Ok(Heard::Traffic)
    }

    // Out of line: inlined, it made `on_frame`'s stack frame 1.8 KiB
    // (1 KiB without), which every reply paid for too (64 calls in flight
    // over TCP, one thread: about +1.5 % calls/s out of line).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn start_incoming(
        self: &Arc<Self>,
        (id, seq): (CallId, u64),
        arrived: Instant,
        target: Arc<dyn Dispatch>,
        method: &str,
        timeout_ms: u32,
        (frame, lends): (&Bytes, usize),
        (args, items, charged): (Range<usize>, u32, &mut ArgsCharge),
        held: Held,
        span: tracing::Span,
        keep: Option<Arc<Answer>>,
    ) {
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
        let deadline = super::deadline::after(arrived, timeout);
        if let Some(weight) = charged.over {
            // Arguments that could never have room in the budget: refused,
            // as a frame over `max_frame_len` is (its references are
            // released with `held`, and a kept answer fails with the reply).
            drop(held);
            let limit = self.budget.limit();
            let msg = format!(
                "the arguments of {} count {weight} bytes decoded (the frame, and {} \
                 per item, five per reference): memory_budget = {limit} had no room for them (they count \
                 more than it can hold beside the calls waiting behind them, or no \
                 room came before the call's deadline)",
                crate::bounded::quote(method),
                super::share::DECODED_ITEM,
            );
            self.meter.limit_hit("memory_budget", &msg);
            let err = RemoteError::new("limit_exceeded", "remote_core::Error", msg);
            KeepGuard(keep, id).fail(&err);
            self.send_error_reply(&encode::error(id, &err, &self.limits), &err.kind);
            return;
        }
        // What the arguments count against the share if the handler runs on.
        // A frame that may lend its allocation to a `Bytes` argument weighs
        // all of it: a handler holding the argument holds it (red-team
        // pass 29: counted at the frame's length, handlers held twice what
        // the budget counted, 1.93x a whole budget).
        let weight = super::share::args_weight(frame.len().max(lends), items);
        let args_start = args.start;
        let args = if lends > 0 {
            Args::lending(self, frame, args, held)
        } else {
            Args::new(self, frame, args, held)
        };
        let cx = CallCx::new(self.clone(), id, seq, deadline).keeping(keep.clone());
        // However the call ends without a reply of its own, its kept
        // answer (if any) is set, so calls waiting on it end too.
        let keep = KeepGuard(keep, id);
        // The arguments decode weighed by their types: what an element
        // takes beyond the `DECODED_ITEM` its item counted comes from the
        // budget, given back when the handler stops (`codec/weigh.rs`).
        let dispatch = || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                target.call(method, args, cx)
            }))
        };
        // Arguments with no array or map inside their own array (their
        // items are its elements) hold no collection: nothing to weigh,
        // and a trivial call is spared the scope.
        let flat = frame
            .get(args_start)
            .is_some_and(|&b| b & 0xf0 == 0x90 && u32::from(b & 0x0f) == items);
        let (started, taken) = if flat {
            (dispatch(), Default::default())
        } else {
            crate::codec::weigh::weighed(self, dispatch)
        };
        // Given back when the handler stops, however it does.
        let taken_back = TakenBack(&self.budget, taken.bytes);
        let mut fut = match started {
            Ok(Ok(fut)) if !taken.refused() => fut,
            Ok(Err(e)) if !taken.refused() => {
                let err = dispatch_error(&e, target.interface_name(), method);
                keep.fail(&err);
                self.send_error_reply(&encode::error(id, &err, &self.limits), &err.kind);
                return;
            }
            // Refused by the weighing, even where serde went on to decode
            // (an untagged enum's next variant).
            Ok(r) => {
                let err = crate::codec::weigh::refusal(method, r.as_ref().err(), &taken);
                self.meter
                    .limit_hit(crate::codec::weigh::refusal_limit(&taken), &err.message);
                keep.fail(&err);
                self.send_error_reply(&encode::error(id, &err, &self.limits), &err.kind);
                return;
            }
            Err(panic) => {
                let err = panic_error(panic);
                keep.fail(&err);
                let frame = encode::error(id, &err, &self.limits);
                self.send_error_reply(&frame, "panic");
                return;
            }
        };
        // Fast path: most handlers finish without waiting; run them here
        // without spawning a task, in a run turn (`sched.rs`). With no turn
        // free, the call waits for its fair turn in a task instead.
        let turn = self.sched.try_turn();
        let queued = turn.is_none();
        // Whether the first poll answered the call: a hand-written handler
        // may reply and then panic or wait, and the call still gets one
        // reply only.
        let answered = std::cell::Cell::new(false);
        // What a heavy reply decoded there holds (a cached hit), held by
        // its task if it runs on.
        let mut first_held = None;
        let first = match turn {
            Some(_) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _inline = Inline::enter(self, seq, &answered);
                let _span = span.enter();
                let first_poll = || (&mut fut).now_or_never();
                // Moved in: most handlers finish here, and one that runs on
                // takes the peer again (below).
                let (out, held) =
                    crate::ambient::sync_scope(self.peer_info(), deadline, first_poll);
                first_held = held;
                out
            })),
            None => Ok(None),
        };
        drop(turn);
        match first {
            Ok(Some(Reply { .. })) => {
                // `CallCx::reply` already queued the reply frame.
                drop_caught(&self.peer, "a finished handler", fut);
                crate::held::ended(first_held.take());
                self.inline_stopped(id, seq);
            }
            Err(panic) => {
                drop_caught(&self.peer, "a panicked handler", fut);
                crate::held::ended(first_held.take());
                self.inline_stopped(id, seq);
                if !answered.get() {
                    let err = panic_error(panic);
                    keep.fail(&err);
                    let frame = encode::error(id, &err, &self.limits);
                    self.send_error_reply(&frame, "panic");
                }
            }
            Ok(None) => {
                // It runs on: counted from now until `handler_stopped`,
                // its id free already if it answered (nothing more it
                // sends for the call goes out then).
                if answered.get() {
                    self.core().admit_answered();
                } else {
                    self.core().admit(id, seq);
                }
                let peer = self.peer_info();
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
                let kept = keep.0.clone();
                // Its arguments count in the budget until it stops: what
                // the reader counted for a heavy call, and the rest.
                let charged = std::mem::take(&mut charged.bytes);
                let held = weight.max(charged);
                self.budget.charge(held - charged);
                // What the decode took goes back with the rest.
                let held = held + taken_back.keep();
                let guarded = (
                    fut,
                    keep,
                    DoneGuard {
                        shared: shared.clone(),
                        id,
                        seq,
                        weight,
                        held,
                    },
                );
                // Its deadline is kept by the reader's timer
                // (`running.rs`), which stops it there.
                let work = async move {
                    let (fut, keep, _done) = guarded;
                    let run = std::panic::AssertUnwindSafe(fut).catch_unwind();
                    let res = crate::ambient::scope(peer, deadline, first_held, run).await;
                    let e = match res {
                        Ok(Reply { .. }) => return, // queued by `CallCx::reply`
                        Err(panic) => panic_error(panic),
                    };
                    let frame = encode::error(id, &e, &shared.limits);
                    // Answered (id free for reuse) before the peer can see
                    // it; not sent if a cancel or the deadline already
                    // answered the call. The kept answer is set with the
                    // call's answer (as `expire_handlers` does), so it
                    // agrees with the one reply the peer gets.
                    let uncount = !shared.blocking.any_running();
                    let answered = {
                        let mut core = shared.core();
                        let answered = core.replied(id, seq, uncount);
                        if answered {
                            keep.fail(&e);
                        }
                        answered
                    };
                    if answered {
                        shared.send_error_reply(&frame, "panic");
                    }
                };
                // In the call's span if enabled, else its connection's.
                let span = if span.is_none() {
                    self.span.clone()
                } else {
                    span
                };
                // Counted before the task can stop (and uncount it).
                self.output_share.started(weight);
                // Boxed: spawning moves the future through several layers
                // of tokio (about ten copies of its few hundred bytes, more
                // instructions than the allocation).
                let task = crate::trace::spawn_in(span, Box::pin(work));
                self.spawned(
                    seq,
                    Spawned {
                        abort: task.abort_handle(),
                        id,
                        deadline: Some(deadline),
                        timeout_ms,
                        keep: kept,
                    },
                );
            }
        }
    }

    /// Queues an error reply to an incoming call, counted under `kind`.
    pub(crate) fn send_error_reply(&self, frame: &[u8], kind: &str) {
        let _ = self.send_error_frame(frame, kind);
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
            let _ = w.send(self, Err(lost.clone()));
        }
        let running: Vec<_> = lock(&self.running).drain().collect();
        for h in running.into_iter().filter_map(|(_, h)| h) {
            h.abort.abort();
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

/// Held by a spawned handler's task: when the task ends or is dropped
/// unrun, the call stops counting (no lock of ours is held where a task is
/// dropped: tokio drops an aborted task's future in the runtime, never
/// inside `abort`).
struct DoneGuard {
    shared: Arc<Shared>,
    id: CallId,
    seq: u64,
    /// What the call's arguments count against the share
    /// (`share::args_weight`)...
    weight: usize,
    /// ...and in the memory budget (at least the weight).
    held: usize,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let stopped = (self.weight, self.held);
        self.shared.spawned_stopped(self.id, self.seq, stopped);
    }
}

/// The error reply for a call that could not start. Arguments that do not
/// decode name this side's interface, the usual cause being a caller that
/// took the object for another interface.
pub(super) fn dispatch_error(e: &Error, interface: &str, method: &str) -> RemoteError {
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
