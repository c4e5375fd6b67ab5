//! Promise pipelining, serving side (PROTOCOL.md §3.10): the answer of a
//! kept-answer call, and the object that calls addressed to it
//! (`[call_id]` targets) are dispatched on.
//!
//! The state machine keeps one [`Answer`] per kept answer until the
//! caller's finish. The kept call's reply sets the [`Answer`] (the object
//! its `Ok` value refers to, or its error) just before the reply is
//! queued, so a pipelined call arriving after the caller saw the reply
//! finds it set. A pipelined call arriving earlier runs as an ordinary
//! incoming call whose handler first waits for the answer ([`Waiter`]): it
//! counts in `max_calls_in_flight`, ends at its deadline or cancel, and is
//! aborted with the connection, like any handler. Setting the answer binds
//! each such call to its object, so a slim answer's object, released by
//! the caller on the reply, still serves the calls that waited for it.

use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::answer_errors::{ended, kept_error, not_a_capability, released, slim_of};
use super::call::{Args, CallCx};
use super::shared::{lock, Shared};
use crate::interface::{CallFuture, Dispatch};
use crate::proto::{CallId, Message, ObjectId};
use crate::{Error, RemoteError};

type Resolved = Result<Arc<dyn Dispatch>, Arc<RemoteError>>;

/// What a set answer holds: kept in full, its object or its error; slim,
/// its object only while the peer holds it (its error's kind, shared),
/// and for the calls that were waiting for it when it was set, until each
/// has taken it (the second field: `None` if none waited, or once all did).
enum Settled {
    Kept(Resolved),
    Slim(Weak<dyn Dispatch>, Option<Arc<dyn Dispatch>>),
}

impl Settled {
    /// What a call arriving now runs on, or fails with.
    fn resolved(&self) -> Resolved {
        match self {
            Settled::Kept(r) => r.clone(),
            Settled::Slim(weak, _) => weak.upgrade().ok_or_else(released),
        }
    }
}

/// An answer's state, under its lock.
struct Cell {
    settled: Option<Settled>,
    /// Calls that wait for the answer and have not taken it yet
    /// ([`Waiter`]): bounded by the calls in flight.
    waiting: usize,
}

/// The answer of one kept-answer call: unset while the call runs, then
/// the object its reply refers to or the error it ended with (first set
/// wins). It is also what the answer's `[call_id]` names (its
/// [`Dispatch`] impl): calls to it wait for the answer, then run on its
/// object, or fail with the kept call's own error. One allocation.
///
/// It lives until the peer's finish or the connection's close drops it
/// from the state's table, and until whatever else holds it (the kept
/// call's handler, calls waiting on it) stops. What it holds is bounded
/// by count, not by the memory budget (`proto/state/answers.rs`): kept
/// *in full* while the server's pool of kept answers has room, a failed
/// call's error is copied, cut by [`kept_error`] (about 2.5 KB in all);
/// kept *slim* past it, only the error's kind is, in an error shared by
/// every slim answer of that kind ([`slim_error`](super::answer_errors::slim_error); about 100 bytes in
/// all), and its object only through its export and for the calls that
/// waited for it ([`Waiter`]). `tests/kept_answers_bounded.rs` measures both. (It was counted in
/// the memory budget, whatever the room, for as long as the peer liked:
/// 48 idle connections filled a 16 MiB budget, and honest heavy calls
/// then waited to their deadline, a red-team pass.)
pub(crate) struct Answer {
    cell: Mutex<Cell>,
    set: Notify,
    /// Itself, for the futures of calls that wait for it.
    me: Weak<Answer>,
    /// Kept in full (a failed call's error copied), or slim.
    full: bool,
}

impl Answer {
    /// A kept answer, unset, kept in `full` or slim.
    pub(crate) fn new(full: bool) -> Arc<Answer> {
        Arc::new_cyclic(|me| Answer {
            cell: Mutex::new(Cell {
                settled: None,
                waiting: 0,
            }),
            set: Notify::new(),
            me: me.clone(),
            full,
        })
    }

    fn get(&self) -> Option<Resolved> {
        lock(&self.cell).settled.as_ref().map(Settled::resolved)
    }

    fn is_set(&self) -> bool {
        lock(&self.cell).settled.is_some()
    }

    fn set(&self, r: Resolved) {
        let mut settled = match r {
            r if self.full => Settled::Kept(r),
            Err(e) => Settled::Kept(Err(slim_of(&e))),
            // Reached through its export only: released by the peer, it
            // goes (held, 8 connections' slim answers held 17 MB of
            // objects their peers had released, counted nowhere: a
            // red-team pass). Except for the calls waiting for it now:
            // each is bound to it here, before the reply is queued, so
            // before the reader can see the caller's release; they had
            // to wait for a turn after this, and the release, read
            // meanwhile, dropped the object first: up to a quarter of
            // the calls an honest caller sent before the reply failed
            // with `unknown_object` (red-team pass 47). Held for them
            // until each has taken it (or stopped), no longer.
            Ok(o) => Settled::Slim(Arc::downgrade(&o), Some(o)),
        };
        // Dropped after the lock (the object's last reference, maybe).
        let unused = {
            let mut cell = lock(&self.cell);
            if cell.settled.is_some() {
                return;
            }
            let unused = match &mut settled {
                Settled::Slim(_, bound) if cell.waiting == 0 => bound.take(),
                _ => None,
            };
            cell.settled = Some(settled);
            unused
        };
        drop(unused);
        self.set.notify_waiters();
    }

    /// Sets the answer from the reply about to be queued for call `id`
    /// (`payload`: the message, without its length prefix).
    pub(crate) fn on_reply(&self, shared: &Shared, id: CallId, payload: &[u8]) {
        if self.is_set() {
            return;
        }
        let r = match return_value(payload) {
            Some(value) => match value {
                [0xd6, 1, a, b, c, d] => {
                    let oid = ObjectId(u32::from_be_bytes([*a, *b, *c, *d]));
                    shared.core().exports().get(oid).cloned().ok_or_else(|| {
                        not_a_capability(format!(
                            "the answer of call {id} (object {oid}) is no longer exported"
                        ))
                    })
                }
                [0xd6, 2, ..] => Err(not_a_capability(format!(
                    "the answer of call {id} is the caller's own object (ext type 2): \
                     call it directly"
                ))),
                _ => Err(not_a_capability(format!(
                    "the answer of call {id} is not a capability (its value is not one \
                     reference to an object), so it cannot be called"
                ))),
            },
            // An error reply (rare): parsed as the peer will parse it.
            None => match Message::parse(payload, &shared.limits, &mut Vec::new()) {
                Ok(Message::Error { error, .. }) => Err(kept_error(&error.into_remote(payload))),
                _ => Err(ended(id)),
            },
        };
        self.set(r.map_err(Arc::new));
    }

    /// Sets the answer to `e` unless it is set.
    pub(crate) fn fail(&self, e: &RemoteError) {
        if !self.is_set() {
            self.set(Err(Arc::new(kept_error(e))));
        }
    }
}

/// A call waiting for its answer: counted in the answer's `waiting` from
/// before the answer is set until it takes the answer or is dropped (its
/// deadline, a cancel, the connection's close), so a slim answer is set
/// bound to its object for it, and lets go of the object as soon as
/// every call that waited has taken it or stopped.
struct Waiter {
    answer: Arc<Answer>,
    counted: bool,
}

impl Waiter {
    /// A waiter on `answer`, or what it resolves to if it was set.
    fn new(answer: Arc<Answer>) -> Result<Waiter, Resolved> {
        let mut cell = lock(&answer.cell);
        if let Some(settled) = &cell.settled {
            return Err(settled.resolved());
        }
        cell.waiting += 1;
        drop(cell);
        Ok(Waiter {
            answer,
            counted: true,
        })
    }

    async fn wait(&mut self) -> Resolved {
        let Waiter { answer, counted } = self;
        loop {
            // Registered before the check, so a `set` in between wakes it.
            let notified = answer.set.notified();
            if let Some(r) = Self::take(answer, counted) {
                return r;
            }
            notified.await;
        }
    }

    /// The answer once set: a slim one's object as it was when it was set
    /// (held for this call since), whatever the peer released meanwhile.
    fn take(answer: &Answer, counted: &mut bool) -> Option<Resolved> {
        let mut cell = lock(&answer.cell);
        let r = match cell.settled.as_ref()? {
            Settled::Slim(_, Some(o)) => Ok(o.clone()),
            settled => settled.resolved(),
        };
        *counted = false;
        let unbound = Self::leave(&mut cell);
        drop(cell);
        drop(unbound);
        Some(r)
    }

    /// One call fewer waits: the object held for the waiting calls, for
    /// dropping once the lock is released, when it was the last.
    fn leave(cell: &mut Cell) -> Option<Arc<dyn Dispatch>> {
        cell.waiting -= 1;
        match &mut cell.settled {
            Some(Settled::Slim(_, bound)) if cell.waiting == 0 => bound.take(),
            _ => None,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.counted {
            let unbound = Self::leave(&mut lock(&self.answer.cell));
            // After the lock: it may be the object's last reference.
            drop(unbound);
        }
    }
}

/// The value of a return message (`[2, call_id, value]`), found without
/// parsing it (it was just encoded here); `None` for any other message.
fn return_value(payload: &[u8]) -> Option<&[u8]> {
    if payload.get(..2)? != [0x93, 0x02] {
        return None;
    }
    let mut r = crate::proto::Reader::new(&payload[2..]);
    r.u32().ok()?;
    Some(&payload[2 + r.pos()..])
}

/// Held by a kept-answer call's handler: however it ends (an abort by a
/// cancel or the connection's close included), its answer is set, so the
/// pipelined calls waiting on it end too.
pub(crate) struct KeepGuard(pub(crate) Option<Arc<Answer>>, pub(crate) CallId);

impl KeepGuard {
    /// Sets the answer to the call's error `e` (unless it is set).
    pub(crate) fn fail(&self, e: &RemoteError) {
        if let Some(a) = &self.0 {
            a.fail(e);
        }
    }
}

impl Drop for KeepGuard {
    fn drop(&mut self) {
        // Nearly always set already (by the reply): the error is built
        // only when it will be used.
        if let Some(a) = self.0.as_ref().filter(|a| !a.is_set()) {
            a.fail(&ended(self.1));
        }
    }
}

/// What a kept answer's `[call_id]` names (PROTOCOL.md §3.10).
impl Dispatch for Answer {
    fn interface_name(&self) -> &'static str {
        match self.get() {
            Some(Ok(o)) => o.interface_name(),
            _ => "a promised object",
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn call(&self, method: &str, args: Args<'_>, cx: CallCx) -> Result<CallFuture, Error> {
        let resolved = match self.get() {
            Some(r) => r,
            None => {
                // `self` is alive (it is being called), so is its `Arc`.
                let answer = self
                    .me
                    .upgrade()
                    .ok_or_else(|| Error::ConnectionLost("closed".into()))?;
                match Waiter::new(answer) {
                    Ok(waiter) => return Ok(waiting(waiter, method, args, cx)),
                    // Set meanwhile.
                    Err(r) => r,
                }
            }
        };
        match resolved {
            Ok(o) => o.call(method, args, cx),
            // The kept call's own error, as it was (PROTOCOL.md §3.10).
            Err(e) => Err(Error::Remote(Box::new((*e).clone()))),
        }
    }

    fn method_priority(&self, method: &str) -> Option<crate::Priority> {
        match self.get() {
            Some(Ok(o)) => o.method_priority(method),
            _ => None,
        }
    }
}

/// A call on an answer not set yet: it waits for the answer (as
/// `waiter`), then runs on its object, or fails with its error.
fn waiting(mut waiter: Waiter, method: &str, args: Args<'_>, cx: CallCx) -> CallFuture {
    let method = method.to_owned();
    // Held until the answer is set: only its own bytes.
    let args = args.detach();
    // Decoded when the answer is set, weighed as now.
    let weigh = crate::codec::weigh::current();
    Box::pin(async move {
        let reply = cx.duplicate();
        match waiter.wait().await {
            Ok(o) => {
                let (called, taken) = match &weigh {
                    Some(conn) => crate::codec::weigh::weighed(conn, || o.call(&method, args, cx)),
                    None => (o.call(&method, args, cx), Default::default()),
                };
                // Dropped after the handler (declared before it).
                let _taken = weigh
                    .as_ref()
                    .map(|conn| crate::codec::weigh::TakenBack(&conn.budget, taken.bytes));
                match called {
                    Ok(fut) if !taken.refused() => fut.await,
                    Err(e) if !taken.refused() => reply.reply_remote(&super::conn::dispatch_error(
                        &e,
                        o.interface_name(),
                        &method,
                    )),
                    // Refused by the weighing, even where serde went on
                    // to decode (an untagged enum's next variant).
                    r => reply.reply_remote(&crate::codec::weigh::refusal(
                        &method,
                        r.as_ref().err(),
                        &taken,
                    )),
                }
            }
            Err(e) => reply.reply_remote(&e),
        }
    })
}
