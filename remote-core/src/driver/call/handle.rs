//! [`Handle`]: a proxy's link to one object of a peer, and making a call
//! through it (encoding the call, decoding its reply).

use std::fmt;
use std::sync::Arc;

use crate::rt::time::Instant;
use serde::Serialize;

use super::scratch::with_scratch_on;
use crate::codec;
use crate::driver::control::{Answer, Control, Held, Incoming, Waiter};
use crate::driver::heavy_reply::{self, Charged, Decoded};
use crate::driver::promise::ClientPromise;
use crate::driver::replies::Key;
use crate::driver::shared::Shared;
use crate::driver::users::UserRef;
use crate::proto::{encode, encode_pipelined_call_head, CallId, CallTarget, ImportRef, ObjectId};
use crate::{Connection, Error, RemoteErrorType, Wire};

/// A sent call: its id, deadline, budget and what its caller keeps to
/// wait for the outcome ([`Route::Token`]).
pub(in crate::driver) type Prepared<T = Key> = (CallId, Instant, std::time::Duration, T);

/// Where the outcome of a call being prepared goes.
pub(in crate::driver) trait Route: Copy {
    /// What the caller keeps.
    type Token;
    /// The call's [`Answer`], and the caller's token.
    fn open(self, shared: &Shared) -> (Answer, Self::Token);
    /// The call was given `id`, and is about to be sent.
    fn started(self, _id: CallId, _budget: std::time::Duration) {}
}

/// A caller waiting on a reply slot, woken through this waker; it keeps
/// the slot's key.
impl Route for &std::task::Waker {
    type Token = Key;
    fn open(self, shared: &Shared) -> (Answer, Key) {
        let key = shared.replies.open(self);
        (Answer::Slot(key), key)
    }
}

/// A proxy's link to one object of a peer: the connection, the object's
/// id, and the counted hold that keeps it alive at the peer.
///
/// Generated proxies (`ChatClient`) wrap one. Clones share the hold; when
/// the last one is dropped a release is queued for the connection task.
///
/// ```
/// use remote_core::collections::{RemoteList, SharedVec};
/// use remote_core::{Connection, ConnectionBuilder};
///
/// fn main() -> remote_core::Result<()> {
///     tokio::runtime::Runtime::new()?.block_on(async {
///         let list = SharedVec::<u64>::new();
///         let (client, _server) =
///             Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(list.remote()))
///                 .await?;
///         let remote = client.root::<dyn RemoteList<u64>>();
///         let handle = remote.handle().expect("a proxy has a handle");
///         assert_eq!(handle.object_id(), 0); // the root
///         assert!(handle.same_target(client.root::<dyn RemoteList<u64>>().handle().unwrap()));
///         // A local object has none.
///         assert!(list.remote().handle().is_none());
///         Ok(())
///     })
/// }
/// ```
#[derive(Clone)]
pub struct Handle {
    target: ObjectId,
    _hold: Option<ImportRef>,
    /// Set on a root proxy for the wrong interface: every call fails with
    /// it, nothing is sent.
    refused: Option<Arc<Error>>,
    /// Set on a promise proxy (`driver/promise.rs`): the object a
    /// kept-answer call will return. `target` is then unused.
    promise: Option<Arc<ClientPromise>>,
    /// Last, so it drops last: the import's release is queued before the
    /// connection may close for lack of users (`users.rs`).
    shared: UserRef,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("object", &self.target.0)
            .field("conn", self.shared.arc())
            .finish()
    }
}

struct CancelOnDrop<'a> {
    shared: &'a Shared,
    id: CallId,
    slot: Option<Key>,
    sent: bool,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(slot) = self.slot {
                self.shared.replies.close(slot);
            }
            // Queued, not sent from here: Drop does no I/O and takes no lock.
            let _ = self.shared.ctl.send(Control::Cancel {
                id: self.id,
                sent: self.sent,
            });
        }
    }
}

impl Handle {
    pub(crate) fn root(shared: Arc<Shared>) -> Self {
        Handle {
            shared: UserRef::new(shared),
            target: ObjectId::ROOT,
            _hold: None,
            refused: None,
            promise: None,
        }
    }

    /// A handle for the object `promise`'s call will return.
    pub(crate) fn promised(shared: Arc<Shared>, promise: Arc<ClientPromise>) -> Self {
        Handle {
            target: ObjectId::RESERVED,
            promise: Some(promise),
            ..Handle::root(shared)
        }
    }

    pub(crate) fn promise(&self) -> Option<&Arc<ClientPromise>> {
        self.promise.as_ref()
    }

    /// A root handle whose every call fails with `error` (the peer's root
    /// is another interface than the proxy's).
    pub(crate) fn refused_root(shared: Arc<Shared>, error: Error) -> Self {
        Handle {
            refused: Some(Arc::new(error)),
            ..Handle::root(shared)
        }
    }

    pub(crate) fn imported(shared: Arc<Shared>, hold: ImportRef) -> Self {
        Handle {
            target: hold.id(),
            shared: UserRef::new(shared),
            _hold: Some(hold),
            refused: None,
            promise: None,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.shared.arc()
    }

    pub(crate) fn target_id(&self) -> ObjectId {
        match &self.promise {
            Some(p) => p.resolved_id().unwrap_or(self.target),
            None => self.target,
        }
    }

    /// The peer's id of the object (`u32::MAX` for a promise proxy whose
    /// call has not returned yet, see [`Promise`](crate::Promise): an id
    /// that names no object, `ObjectId::RESERVED`).
    pub fn object_id(&self) -> u32 {
        self.target_id().0
    }

    /// The connection the object lives behind.
    pub fn connection(&self) -> Connection {
        Connection {
            shared: self.shared.clone(),
        }
    }

    /// Whether both handles name the same object on the same connection.
    pub fn same_target(&self, other: &Handle) -> bool {
        if let (Some(a), Some(b)) = (&self.promise, &other.promise) {
            if Arc::ptr_eq(a, b) {
                return true;
            }
        }
        let pending = |h: &Handle| {
            h.promise
                .as_ref()
                .is_some_and(|p| p.resolved_id().is_none())
        };
        !pending(self)
            && !pending(other)
            && Arc::ptr_eq(&self.shared, &other.shared)
            && self.target_id() == other.target_id()
    }

    /// Like [`call`](Handle::call), blocking the current thread. Returns
    /// [`Error::BlockingInAsync`] on an async runtime thread instead of
    /// deadlocking.
    pub fn call_blocking<A, T, E>(&self, method: &'static str, args: A) -> Result<T, E>
    where
        A: Serialize + Send + 'static,
        T: Wire,
        E: RemoteErrorType,
    {
        crate::blocking::block_on_call(&self.shared.runtime, self.call(method, args))
    }

    pub(in crate::driver) fn prepare(
        &self,
        method: &str,
        args: &dyn codec::Encode,
        waker: &std::task::Waker,
    ) -> Result<Prepared, Error> {
        self.prepare_with(false, method, args, waker)
    }

    /// [`prepare`](Self::prepare) for an ordinary call, or a kept-answer
    /// call if `keep`; through the promise if this is a promise proxy.
    pub(in crate::driver) fn prepare_with<R: Route>(
        &self,
        keep: bool,
        method: &str,
        args: &dyn codec::Encode,
        to: R,
    ) -> Result<Prepared<R::Token>, Error> {
        match &self.promise {
            Some(p) => p.prepare(self, keep, method, args, to),
            None => self.prepare_to(keep, CallTarget::Object(self.target), method, args, to),
        }
    }

    /// Encodes and queues a call to `target`, registering its waiter.
    pub(in crate::driver) fn prepare_to<R: Route>(
        &self,
        keep: bool,
        target: CallTarget,
        method: &str,
        args: &dyn codec::Encode,
        to: R,
    ) -> Result<Prepared<R::Token>, Error> {
        if let Some(e) = &self.refused {
            return Err((**e).clone());
        }
        let shared = &*self.shared;
        let now = Instant::now();
        let default = shared.limits.default_deadline;
        let (deadline, budget) = match crate::driver::current_deadline() {
            Some(inherited) => (inherited, inherited.saturating_duration_since(now)),
            // `now + default`, and no subtraction to get `default` back
            // (unless the clock saturates, as `deadline::after` does).
            None => match now.checked_add(default) {
                Some(deadline) => (deadline, default),
                None => {
                    let deadline = crate::driver::deadline::after(now, default);
                    (deadline, deadline.saturating_duration_since(now))
                }
            },
        };
        if budget.is_zero() {
            return Err(Error::DeadlineExceeded(budget));
        }
        let timeout_ms = u32::try_from(budget.as_millis().max(1)).unwrap_or(u32::MAX);
        // The caller's waker goes in with the slot: the first poll after
        // sending registers nothing more.
        let (reply, token) = to.open(shared);
        let slot = match &reply {
            Answer::Slot(key) => Some(*key),
            Answer::To(_) => None,
        };
        // A closed connection's calls fail with the reason it closed.
        // Registered with its deadline; the connection's timer is re-armed
        // only for a deadline earlier than every other (`expiry.rs`).
        let (id, rearm, lone) = {
            let mut core = shared.core();
            let started = core.start_call(Waiter { reply, deadline });
            let id = match started {
                Ok(id) => id,
                Err(e) => {
                    drop(core);
                    if let Some(slot) = slot {
                        shared.replies.close(slot);
                    }
                    return Err(match e {
                        Error::ConnectionLost(_) => shared.lost(),
                        other => other,
                    });
                }
            };
            // The only call waiting on this connection, and not one of
            // several callers just handed their replies: its caller writes
            // it (`direct.rs`); calls made among others queue for the
            // writer task's batches. A kept-answer call queues too: calls
            // on its promise follow at once, and leave in the same write.
            let lone = !keep
                && core.calls_waiting() == 1
                && !shared.burst.load(std::sync::atomic::Ordering::Relaxed);
            (id, shared.expiry.note(deadline), lone)
        };
        if rearm {
            crate::driver::expiry::rearm(shared);
        }
        to.started(id, budget);
        let guard = CancelOnDrop {
            shared,
            id,
            slot,
            sent: false,
            armed: true,
        };
        with_scratch_on(shared, |buf| {
            encode::begin_in(buf);
            match target {
                CallTarget::Object(o) if !keep => {
                    encode::call_head(buf, id, o, method, timeout_ms);
                }
                t => encode_pipelined_call_head(buf, keep, id, t, method, timeout_ms),
            }
            let args_at = buf.len();
            let exported = codec::encode_into(&self.shared, args, buf, "arguments")?;
            if buf[args_at..] == [0xc0] {
                // `()` encodes as nil; arguments are always an array.
                buf[args_at] = 0x90;
            }
            let len = encode::finish(buf);
            let sent = if len > shared.limits.max_frame_len {
                Err(Error::limit(
                    "max_frame_len",
                    shared.limits.max_frame_len as u64,
                    format!("call to {method} encodes to {len} bytes"),
                ))
            } else {
                exported.publish(shared);
                shared.send_vec_as(buf, lone)
            };
            if sent.is_err() {
                // Never sent: the peer will never release what we counted.
                exported.undo(shared);
            }
            sent
        })?;
        std::mem::forget(guard);
        Ok((id, deadline, budget, token))
    }

    /// Decodes the reply `inc` to a call of `method`: a large `Bytes`
    /// value shares its frame if `shareable` (the reader said so,
    /// `heavy_reply::Heavy`). Its value, or a typed error decoded from its
    /// data, is weighed by its types if it may hold a collection
    /// (`heavy_reply::decoded`), the first `prepaid` bytes counted by the
    /// caller already: with it, what that took from the memory budget, to
    /// hold while the value is held. A value holding no reference whose
    /// decode found the budget short comes back to be decoded again once
    /// there is room ([`Finish::Short`]).
    pub(in crate::driver) fn finish<T: Wire, E: RemoteErrorType>(
        &self,
        method: &str,
        inc: Incoming,
        shareable: bool,
        prepaid: usize,
    ) -> Finish<T, E> {
        let weigh = match &inc.result {
            Ok(value) => heavy_reply::may_hold_collections(&inc.frame[value.start..]),
            Err(e) => e.data.is_some(),
        };
        // Decoded again if need be: nothing in it is taken by a decode.
        let retry = weigh && inc.result.is_ok() && inc.refs.is_empty() && inc.owns.is_empty();
        if retry {
            let copy = Incoming {
                frame: inc.frame.clone(),
                result: inc.result.clone(),
                refs: Default::default(),
                owns: Vec::new(),
                heavy: None,
            };
            return match heavy_reply::decoded(&self.shared, method, prepaid, || {
                self.decode_reply(copy, shareable)
            }) {
                Decoded::Done(value, held) => Finish::Done(value, held),
                Decoded::Short(wanted) => Finish::Short(inc, wanted),
                Decoded::Refused(e) => Finish::Refused(E::from_error(e)),
            };
        }
        // (Only a reply decoded again has anything prepaid: one that may
        // be, the above.)
        match heavy_reply::decoded_once(&self.shared, method, weigh, || {
            self.decode_reply(inc, shareable)
        }) {
            Ok((value, held)) => Finish::Done(value, held),
            Err(e) => Finish::Refused(E::from_error(e)),
        }
    }

    /// The value of the reply `inc`, or its error.
    fn decode_reply<T: Wire, E: RemoteErrorType>(
        &self,
        inc: Incoming,
        shareable: bool,
    ) -> Result<T, E> {
        let mut slot = codec::WireSlot::<T>::default();
        match self.finish_into(inc, shareable, &mut slot) {
            Finished::Decoded => slot.take("return value").map_err(E::from_error),
            Finished::Failed(e) => Err(E::from_error(e)),
            Finished::Remote(remote) => Err(E::from_remote(*remote)),
        }
    }

    /// The type-independent part of [`finish`](Handle::finish): decodes a
    /// return value into `slot`, or says which error the call ended with.
    fn finish_into(
        &self,
        inc: Incoming,
        shareable: bool,
        slot: &mut dyn codec::DecodeSlot,
    ) -> Finished {
        let held = Held {
            refs: inc.refs,
            owns: inc.owns,
        };
        match inc.result {
            Ok(range) => {
                // A large `Bytes` value may share the frame's memory.
                let lender = shareable.then_some(&inc.frame);
                let decoded = codec::lending(lender, || {
                    codec::decode_into(&self.shared, &inc.frame[range], held, "return value", slot)
                });
                match decoded {
                    Ok(()) => Finished::Decoded,
                    Err(e) => Finished::Failed(e),
                }
            }
            // The server's own timer may beat ours by a millisecond.
            Err(remote) if remote.kind == "deadline_exceeded" => {
                Finished::Failed(Error::DeadlineExceeded(std::time::Duration::ZERO))
            }
            Err(remote) => Finished::Remote(remote),
        }
    }
}

/// A reply decoded by [`Handle::finish`].
pub(in crate::driver) enum Finish<T, E> {
    /// Its value or error, and what its types took from the budget (to
    /// hold while the value is held).
    Done(Result<T, E>, Option<Charged>),
    /// Its decode found the budget short: it would hold at least this
    /// much beyond its items' count. Decode it again once there is room
    /// (`heavy_reply::retried`).
    Short(Incoming, usize),
    /// Its decode was stopped: nothing of it is held.
    Refused(E),
}

/// How a call's reply was handled by [`Handle::finish_into`].
enum Finished {
    /// The return value is in the slot.
    Decoded,
    /// A local error: the reply did not decode, or the deadline passed.
    Failed(Error),
    /// The peer's error.
    Remote(Box<crate::RemoteError>),
}
