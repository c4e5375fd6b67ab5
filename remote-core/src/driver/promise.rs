//! Promise pipelining, calling side (PROTOCOL.md §3.10): [`Promise`], the
//! object a call in flight will return, usable at once.
//!
//! [`Handle::pipeline`] sends a kept-answer call (kind 12) and returns a
//! promise proxy. Calls on the proxy go out at once addressed to
//! `[call_id]`; the peer runs them on the answer when it is there. No task
//! waits for the kept call's reply: the promise is the call's waiter
//! ([`Answer::To`]), and where the outcome arrives (the reader, the
//! deadline sweep, or the connection's close) it records it, under the
//! promise's lock so no call to `[call_id]` can follow it (if a caller
//! holds that lock, the outcome is handed to it, applied as it unlocks):
//! the answer (an ordinary counted import, released when the last proxy
//! is gone), then finish is sent. Later calls on the proxy go to the
//! import's id.
//!
//! On a connection without the `pipeline` feature (a peer that does not
//! list it, such as the Python runtime) the same API works in two round
//! trips: the first call is an ordinary one, and calls on the proxy wait
//! for its reply.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::call::{Handle, Prepared, Route};
use super::control::{Answer, Incoming, OnReply};
use super::outgoing::RawCall;
use super::shared::{lock, try_lock, Shared};
use super::users::UserRef;
use crate::codec;
use crate::deferred::{Deferred, Failure};
use crate::interface::Interface;
use crate::proto::{finish_inline, CallId, CallTarget, ObjectId};
use crate::{Error, Remote, RemoteError, RemoteErrorType};

/// Where a promise's call stands.
enum Settled {
    /// No reply yet.
    Pending,
    /// The call returned this object (our import).
    Ready(Handle),
    /// The call failed with the peer's error.
    Remote(RemoteError),
    /// The call failed here (deadline, connection lost, refused locally).
    Local(Error),
}

/// The calling side's state of one kept-answer call.
pub(crate) struct ClientPromise {
    /// A user of the connection (`users.rs`): a promise dropped while its
    /// call is in flight keeps the connection open until the call ends,
    /// and then lets it close.
    shared: UserRef,
    /// The kept-answer call's id and budget (set just before it is sent,
    /// with the feature).
    call: OnceLock<(CallId, Duration)>,
    state: Mutex<Settled>,
    /// An outcome that arrived while `state` was locked (a caller encoding
    /// a call on the promise): applied by whoever unlocks `state` next, or
    /// by its bearer if the lock is free by then (see [`Self::hand_over`]).
    /// Never held across user code.
    handoff: Mutex<Option<Settled>>,
    /// The import's id once resolved ([`ObjectId::RESERVED`] before, an id
    /// a peer's reference never names): read without the lock, as encoding a value holding this promise may happen under
    /// another promise's lock.
    resolved: AtomicU32,
    /// Notified when the call settles.
    done: Notify,
}

impl ClientPromise {
    fn new(shared: Arc<Shared>, state: Settled) -> Arc<ClientPromise> {
        let done = Notify::new();
        Arc::new(ClientPromise {
            shared: UserRef::new(shared),
            call: OnceLock::new(),
            state: Mutex::new(state),
            handoff: Mutex::new(None),
            resolved: AtomicU32::new(ObjectId::RESERVED.0),
            done,
        })
    }

    /// The import's id once the call returned an object.
    pub(crate) fn resolved_id(&self) -> Option<ObjectId> {
        match ObjectId(self.resolved.load(Ordering::Acquire)) {
            ObjectId::RESERVED => None,
            id => Some(id),
        }
    }

    /// Whether calls on the proxy must wait for the reply (no pipelining
    /// on this connection, and no reply yet).
    pub(crate) fn must_wait(&self) -> bool {
        let _unlocked = Unlocked(self);
        self.call.get().is_none() && matches!(*lock(&self.state), Settled::Pending)
    }

    /// Waits until the call's reply (or failure) was recorded.
    pub(crate) async fn wait(&self) {
        loop {
            // Registered before the check, so a settle in between wakes it.
            let notified = self.done.notified();
            if !self.with_state(|s| matches!(s, Settled::Pending)) {
                return;
            }
            notified.await;
        }
    }

    /// Prepares a call on the promised object: addressed to `[call_id]`
    /// while the reply is pending (under the lock, so it is queued before
    /// the finish), to the object once it is known, or failed with the
    /// first call's own error.
    pub(in crate::driver) fn prepare<R: Route>(
        &self,
        via: &Handle,
        keep: bool,
        method: &str,
        args: &dyn codec::Encode,
        to: R,
    ) -> Result<Prepared<R::Token>, Error> {
        // Declared first, so dropped last: after the lock, even on a panic
        // in an argument's `Serialize`.
        let _unlocked = Unlocked(self);
        let state = lock(&self.state);
        match (&*state, self.call.get()) {
            (Settled::Ready(h), _) => {
                let h = h.clone();
                drop(state);
                h.prepare_with(keep, method, args, to)
            }
            // What the peer's kept answer would have failed the call
            // with, had it been sent: no `data`, no backtrace, texts cut.
            (Settled::Remote(e), _) => {
                Err(Error::Remote(Box::new(super::answer_errors::kept_error(e))))
            }
            (Settled::Local(e), _) => Err(e.clone()),
            (Settled::Pending, Some(&(call, _))) => {
                via.prepare_to(keep, CallTarget::Promise(call), method, args, to)
            }
            (Settled::Pending, None) => Err(Error::Protocol(
                "a call on a promise was made before its object was known, on a connection \
                 without pipelining"
                    .into(),
            )),
        }
    }

    /// Records the call's outcome, sends finish (if kept) and wakes waiters.
    fn settle(&self, outcome: Settled) {
        let _unlocked = Unlocked(self);
        self.settle_locked(lock(&self.state), outcome);
    }

    /// `f` on the state, under the lock (then released as every lock of
    /// `state` is, see [`Unlocked`]).
    fn with_state<T>(&self, f: impl FnOnce(&Settled) -> T) -> T {
        let _unlocked = Unlocked(self);
        f(&lock(&self.state))
    }

    /// `f` on the state if it is free; `None` while a caller holds it (it
    /// is encoding a call on the promise). For formatting, which must not
    /// wait on user code, nor deadlock that caller's own `Serialize`.
    fn try_with_state<T>(&self, f: impl FnOnce(&Settled) -> T) -> Option<T> {
        let _unlocked = Unlocked(self);
        try_lock(&self.state).map(|state| f(&state))
    }

    /// Applies an outcome left in `handoff`, if there is one and `state`
    /// is free; if `state` is taken, its holder applies it on unlocking.
    /// The outcome's bearer calls this after leaving it, every holder of
    /// `state` after unlocking: whichever comes last sees both the outcome
    /// and the free lock, so it is applied exactly once, after every call
    /// queued under the lock.
    fn hand_over(&self) {
        if lock(&self.handoff).is_none() {
            return;
        }
        let Some(state) = try_lock(&self.state) else {
            return;
        };
        // Taken under `state`: a second `hand_over` finds it gone.
        let outcome = lock(&self.handoff).take();
        match outcome {
            Some(outcome) => self.settle_locked(state, outcome),
            None => drop(state),
        }
    }

    /// [`settle`](Self::settle) with the promise's lock taken.
    fn settle_locked(&self, mut state: MutexGuard<'_, Settled>, outcome: Settled) {
        if let Settled::Ready(h) = &outcome {
            self.resolved.store(h.target_id().0, Ordering::Release);
        }
        *state = outcome;
        if let Some(&(call, _)) = self.call.get() {
            // After every call addressed to `[call]` (they were queued
            // under this lock), and never twice.
            let (frame, len) = finish_inline(call);
            let _ = self.shared.send(&frame[..len]);
        }
        drop(state);
        self.done.notify_waiters();
    }
}

/// The kept call's outcome goes to its promise where it arrives.
impl OnReply for ClientPromise {
    fn on_reply(self: Arc<Self>, r: Result<Incoming, Error>) {
        let settled = match outcome(&self.shared, Ok::<_, ()>(r)) {
            // Our timer's or the peer's (which may beat ours by a
            // millisecond): neither knows the call's budget.
            Settled::Local(Error::DeadlineExceeded(_)) => {
                let budget = self.call.get().map_or(Duration::ZERO, |&(_, b)| b);
                Settled::Local(Error::DeadlineExceeded(budget))
            }
            settled => settled,
        };
        // Where the outcome arrives (most often the reader) never waits for
        // the promise's lock: a caller holds it while encoding a call on
        // the promise, and an argument's `Serialize` is user code (it could
        // even wait for a reply this reader has to deliver). Taken, the
        // outcome is left for the lock's holder to apply as it unlocks; not
        // to a spawned task, which a runtime shutting down would drop unrun
        // (the promise pending for good).
        *lock(&self.handoff) = Some(settled);
        self.hand_over();
    }
}

/// Held (declared before the guard, so dropped after it) wherever the
/// promise's state is locked: on unlocking, applies an outcome that arrived
/// meanwhile ([`ClientPromise::hand_over`]).
struct Unlocked<'a>(&'a ClientPromise);

impl Drop for Unlocked<'_> {
    fn drop(&mut self) {
        self.0.hand_over();
    }
}

/// A promise is its kept call's waiter: nothing else waits for the reply.
impl Route for &Arc<ClientPromise> {
    type Token = ();
    fn open(self, _: &Shared) -> (Answer, ()) {
        (Answer::To(self.clone()), ())
    }
    fn started(self, id: CallId, budget: Duration) {
        // Set before the call is sent, so its outcome finds the id to
        // finish. A promise is prepared once.
        let _ = self.call.set((id, budget));
    }
}

/// The outcome of a promise's call from its reply.
fn outcome(shared: &Arc<Shared>, reply: Result<Result<Incoming, Error>, impl Sized>) -> Settled {
    let inc = match reply {
        Ok(Ok(inc)) => inc,
        Ok(Err(e)) => return Settled::Local(e),
        Err(_) => return Settled::Local(shared.lost()),
    };
    match inc.result {
        Ok(range) => match &inc.frame[range] {
            [0xd6, 1, a, b, c, d] => {
                let id = ObjectId(u32::from_be_bytes([*a, *b, *c, *d]));
                match inc.refs.iter().find(|r| r.id() == id) {
                    Some(hold) => Settled::Ready(Handle::imported(shared.clone(), hold.clone())),
                    None => Settled::Local(Error::Protocol(format!(
                        "reply refers to object {id}, which was not counted"
                    ))),
                }
            }
            _ => Settled::Remote(RemoteError::new(
                "not_a_capability",
                "remote_core::Error",
                "the call's value is not one reference to an object of the peer, so it \
                 cannot be called",
            )),
        },
        // The peer's own timer may beat ours by a millisecond.
        Err(e) if e.kind == "deadline_exceeded" => {
            Settled::Local(Error::DeadlineExceeded(std::time::Duration::ZERO))
        }
        Err(e) => Settled::Remote(*e),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn spawn(shared: &Shared, fut: impl std::future::Future<Output = ()> + Send + 'static) {
    drop(shared.runtime.spawn(fut));
}

#[cfg(target_arch = "wasm32")]
fn spawn(_: &Shared, fut: impl std::future::Future<Output = ()> + 'static) {
    drop(crate::rt::spawn(fut));
}

impl Handle {
    /// Calls `method`, which returns a capability (`Result<Remote<dyn T>,
    /// E>`), and returns at once a [`Promise`] of that object: calls on it
    /// are sent right away, without waiting for this call's reply, and the
    /// peer runs them on the object as soon as it has it (one round trip
    /// for `open(name).read()`, PROTOCOL.md §3.10).
    ///
    /// Generated code offers this per method (`FilesPipeline::open_pipelined`);
    /// use it directly for hand-written proxies. Dropping the promise does
    /// not cancel the call: its reply is still awaited (until its
    /// deadline) so the answer is finished and the object released.
    ///
    /// If the call fails, calls on the promise fail with its error. One
    /// exception: a call the peer refuses before running it (over
    /// `max_calls_in_flight`, say) keeps no answer there, so calls already
    /// sent on the promise fail with `unknown_object`; `resolved` and later
    /// calls give the refusal itself.
    pub fn pipeline<A, T, E>(&self, method: &'static str, args: A) -> Promise<T, E>
    where
        A: Serialize + Send + 'static,
        T: ?Sized + Interface,
        E: RemoteErrorType,
    {
        let shared = self.shared().clone();
        let pipelined = shared.core().pipeline_negotiated();
        let parent_waits = self.promise().is_some_and(|p| p.must_wait());
        let promise = if pipelined && !parent_waits {
            // The promise is the call's waiter: no task waits for the reply.
            let p = ClientPromise::new(shared.clone(), Settled::Pending);
            match self.prepare_with(true, method, &args, &p) {
                Ok((_, _, _, ())) => p,
                Err(e) => ClientPromise::new(shared.clone(), Settled::Local(e)),
            }
        } else {
            // Two round trips: an ordinary call once the target is known.
            let p = ClientPromise::new(shared.clone(), Settled::Pending);
            let (task, via) = (p.clone(), self.clone());
            let work = async move {
                if let Some(parent) = via.promise() {
                    parent.wait().await;
                }
                let noop = futures_util::task::noop_waker_ref();
                let reply = match via.prepare_with(false, method, &args, noop) {
                    Ok(prepared) => Ok::<_, ()>(RawCall::new(&via, prepared).await),
                    Err(e) => Ok(Err(e)),
                };
                task.settle(outcome(&task.shared, reply));
            };
            // The caller's deadline (an enclosing call's, or
            // `with_timeout`'s) is task-local: the call made from the task
            // keeps it, as the pipelined one made here does.
            match super::deadline::current_deadline() {
                Some(d) => spawn(&shared, super::deadline::scope(d, work)),
                None => spawn(&shared, work),
            }
            p
        };
        let handle = Handle::promised(shared, promise.clone());
        Promise {
            remote: Remote::new(T::proxy(handle)),
            inner: Some(promise),
            local: None,
            error: PhantomData,
        }
    }
}

/// The object a call in flight will return: usable at once (calls on it
/// are pipelined, see [`Handle::pipeline`]), and awaitable for the call's
/// own result with [`resolved`](Promise::resolved).
///
/// It dereferences to the promised [`Remote<T>`], so methods of `T` are
/// called on it directly. If the call fails, every call on the promise
/// fails with that same error.
///
/// On a local object (not a proxy) the pipelined variants work the same
/// way, so code holding a `Remote<dyn Files>` need not know which it is:
/// the method is called at once, and if it has not returned an object by
/// its first poll (it waits for a lock, I/O, a forwarded call) calls on the
/// promise wait for its object and run on it, or fail with its error. The
/// method then runs as the promise's calls (or `resolved`) are awaited,
/// like any local future: nothing is spawned.
///
/// ```
/// use std::sync::Arc;
/// use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
///
/// #[remote]
/// pub trait Files: Send + Sync {
///     async fn open(&self, name: String) -> Result<Remote<dyn File>, Error>;
/// }
/// #[remote]
/// pub trait File: Send + Sync {
///     async fn read(&self) -> Result<String, Error>;
/// }
///
/// struct Disk;
/// #[remote]
/// impl Files for Disk {
///     async fn open(&self, name: String) -> Result<Remote<dyn File>, Error> {
///         Ok(Remote::new(Arc::new(Text(format!("contents of {name}")))))
///     }
/// }
/// struct Text(String);
/// #[remote]
/// impl File for Text {
///     async fn read(&self) -> Result<String, Error> {
///         Ok(self.0.clone())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> remote_core::Result<()> {
/// let files: Remote<dyn Files> = Remote::new(Arc::new(Disk));
/// let (client, _server) =
///     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(files)).await?;
/// let api = client.root::<dyn Files>();
/// // One round trip: `read` is sent before `open` has returned.
/// let file = FilesPipeline::open_pipelined(&api, "x".into());
/// assert_eq!(file.read().await?, "contents of x");
/// // The first call's own result, when wanted.
/// let opened: Remote<dyn File> = file.resolved().await?;
/// assert_eq!(opened.read().await?, "contents of x");
/// # Ok(()) }
/// ```
pub struct Promise<T: ?Sized, E = Error> {
    remote: Remote<T>,
    /// `None` for a local object's promise.
    inner: Option<Arc<ClientPromise>>,
    /// A local object's call that did not return an object at once.
    local: Option<Deferred<T>>,
    error: PhantomData<fn() -> E>,
}

impl<T: ?Sized, E> Clone for Promise<T, E> {
    fn clone(&self) -> Self {
        Promise {
            remote: self.remote.clone(),
            inner: self.inner.clone(),
            local: self.local.clone(),
            error: PhantomData,
        }
    }
}

impl<T: ?Sized, E> Deref for Promise<T, E> {
    type Target = Remote<T>;
    fn deref(&self) -> &Remote<T> {
        &self.remote
    }
}

impl<T: ?Sized + Interface, E> fmt::Debug for Promise<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.local {
            let state = match d.peek() {
                None => "local, pending",
                Some(Ok(_)) => "local, resolved",
                Some(Err(_)) => "local, failed",
            };
            return write!(f, "Promise<{}>({state})", T::name());
        }
        let state = match self.inner.as_deref() {
            None => "local",
            Some(p) => p
                .try_with_state(|s| match s {
                    Settled::Pending => "pending",
                    Settled::Ready(_) => "resolved",
                    Settled::Remote(_) | Settled::Local(_) => "failed",
                })
                // Someone holds the lock (a caller encoding a call on it,
                // or a moment's look at a settled one).
                .unwrap_or(if p.resolved_id().is_some() {
                    "resolved"
                } else {
                    "in use"
                }),
        };
        write!(f, "Promise<{}>({state})", T::name())
    }
}

impl<T: ?Sized + Interface, E: RemoteErrorType> Promise<T, E> {
    /// The promise proxy (calls on it are pipelined until the object is
    /// known, then go to the object).
    pub fn remote(&self) -> Remote<T> {
        self.remote.clone()
    }

    /// The promise proxy, consuming the promise.
    pub fn into_remote(self) -> Remote<T> {
        self.remote
    }

    /// Waits for the call's own result: the object (an ordinary proxy), or
    /// the call's error.
    pub async fn resolved(&self) -> Result<Remote<T>, E> {
        if let Some(d) = &self.local {
            return match d.object().await {
                Ok(remote) => Ok(remote),
                Err(Failure::Remote(e)) => Err(E::from_remote(RemoteError::clone(&e))),
                Err(Failure::Local(e)) => Err(E::from_error(e)),
            };
        }
        let Some(inner) = &self.inner else {
            return Ok(self.remote.clone());
        };
        inner.wait().await;
        // (Boxed: the error path only.)
        let settled = inner.with_state(|s| match s {
            Settled::Ready(h) => Ok(Remote::new(T::proxy(h.clone()))),
            Settled::Remote(e) => Err(Box::new(Ok(e.clone()))),
            Settled::Local(e) => Err(Box::new(Err(e.clone()))),
            Settled::Pending => Err(Box::new(Err(inner.shared.lost()))),
        });
        // A typed error is decoded from the peer's data outside the
        // state's lock, weighed as a reply's is.
        settled.map_err(|e| match *e {
            Ok(remote) => super::heavy_reply::typed_error(&inner.shared, remote),
            Err(local) => E::from_error(local),
        })
    }

    /// The promise of a local object's method (generated pipelined
    /// variants call it when the object is not a proxy). The call is
    /// polled once here: if it returns an object at once, the promise is
    /// that object. Otherwise (it waits for something, or failed) the
    /// promise is a deferred object (`deferred.rs`): calls on it wait for
    /// the call's object and run on it, or fail with the call's error, and
    /// the call itself is driven by whoever waits for it (nothing is
    /// spawned).
    #[doc(hidden)]
    pub fn local(call: crate::BoxFuture<'static, Result<Remote<T>, E>>) -> Self {
        use futures_util::FutureExt;
        let mut call = call;
        let call = match (&mut call).now_or_never() {
            Some(Ok(remote)) => {
                return Promise {
                    remote,
                    inner: None,
                    local: None,
                    error: PhantomData,
                }
            }
            Some(Err(e)) => Box::pin(std::future::ready(Err(e))),
            None => call,
        };
        let deferred = Deferred::new(call);
        Promise {
            remote: Remote::new(T::deferred(deferred.clone())),
            inner: None,
            local: Some(deferred),
            error: PhantomData,
        }
    }
}
