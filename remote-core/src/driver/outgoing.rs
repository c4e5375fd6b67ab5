//! The future of an outgoing call, split so that only a thin shell depends
//! on the call's types.
//!
//! [`CallFuture`] holds the arguments until its first poll (so a call
//! inherits the deadline in force where it is awaited, and sends nothing
//! if never polled), encodes them through the non-generic `prepare`, then
//! waits on a [`Waiting`] call, polled with the connection of the handle
//! it holds (one handle per call). `Waiting` is non-generic: its `poll`
//! and the reply slot code under it are compiled once in this crate. (An
//! `async` block holding the same wait would be compiled again in every
//! crate with a `#[remote]` trait, once per method.) [`RawCall`] is a
//! `Waiting` with its own handle, as a future.

use std::borrow::Borrow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use serde::Serialize;

use super::call::{Finish, Prepared};
use super::control::{Control, Incoming};
use super::heavy_reply::{self, Weighed};
use super::replies::Key;
use super::shared::Shared;
use crate::cache::{CacheRole, Lookup, Ticket};
use crate::interface::BoxFuture;
use crate::proto::CallId;
use crate::rt::time::Instant;
use crate::{Error, Handle, RemoteErrorType, Wire};

type Reply = Result<Incoming, Error>;

/// A sent call waiting for its reply or its deadline, without its
/// connection: its owner passes that in (so a call's future holds one
/// handle, not two). Dropped before either, it must be [`cancel`]led.
///
/// [`cancel`]: Waiting::cancel
pub(in crate::driver) struct Waiting {
    id: CallId,
    /// Where the call started among the decodes of held replies
    /// (`held::since_now`): its reply lets go of a handler's earlier ones.
    since: u64,
    /// The call's timeout, in nanoseconds (a `Duration` made `Waiting`
    /// larger, and every call's future with it).
    budget_ns: u64,
    armed: bool,
    // No timer per call: the connection fails the call at its deadline
    // (`expiry.rs`). The reply arrives in this slot (`replies.rs`).
    reply: Key,
}

impl Waiting {
    #[inline]
    pub(in crate::driver) fn new((id, _deadline, budget, reply): Prepared) -> Self {
        Waiting {
            id,
            since: crate::held::since_now(),
            budget_ns: budget
                .as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(budget.subsec_nanos())),
            armed: true,
            reply,
        }
    }

    fn budget(&self) -> Duration {
        Duration::from_nanos(self.budget_ns)
    }

    /// The call's outcome, once there; `shared` is its connection.
    fn poll(&mut self, shared: &Shared, cx: &mut Context<'_>) -> Poll<Reply> {
        let r = match ready!(shared.replies.poll(self.reply, cx)) {
            // Already forgotten and cancelled by the connection's timer.
            Some(Err(Error::DeadlineExceeded(_))) => Err(Error::DeadlineExceeded(self.budget())),
            None => Err(shared.lost()),
            Some(r) => r,
        };
        self.armed = false;
        Poll::Ready(r)
    }

    /// Dropped while waiting: queues a cancel for the peer.
    fn cancel(&mut self, shared: &Shared) {
        if std::mem::take(&mut self.armed) {
            // The slot's own leaf lock only (`replies.rs`); the cancel
            // is queued, not sent from here: Drop does no I/O.
            shared.replies.close(self.reply);
            let _ = shared.ctl.send(Control::Cancel {
                id: self.id,
                sent: true,
            });
        }
    }
}

/// A [`Waiting`] call with its connection, as a future. Dropped before the
/// outcome, it queues a cancel for the peer.
pub(in crate::driver) struct RawCall {
    handle: Handle,
    wait: Waiting,
}

impl RawCall {
    pub(in crate::driver) fn new(handle: &Handle, prepared: Prepared) -> Self {
        RawCall {
            handle: handle.clone(),
            wait: Waiting::new(prepared),
        }
    }
}

impl Future for RawCall {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = &mut *self;
        this.wait.poll(this.handle.shared(), cx)
    }
}

impl Drop for RawCall {
    fn drop(&mut self) {
        self.wait.cancel(self.handle.shared());
    }
}

pin_project! {
    /// [`Handle::call`]'s future: encodes `args` on the first poll, then
    /// waits on a [`Waiting`] call and decodes the result. `H` is a
    /// [`Handle`], or a `&Handle` for a generated proxy's call (whose
    /// future borrows the proxy: no handle clone per call).
    pub(super) struct CallFuture<H: Borrow<Handle>, A, T, E> {
        handle: H,
        method: &'static str,
        args: Option<A>,
        wait: Option<Waiting>,
        role: Option<&'static CacheRole>,
        // Boxed: the uncached call's future stays one pointer larger.
        ticket: Option<Box<Ticket>>,
        // A heavy reply waiting for room in the budget (`heavy_reply.rs`).
        room: Option<BoxFuture<'static, Weighed>>,
        types: PhantomData<fn() -> (T, E)>,
    }

    impl<H: Borrow<Handle>, A, T, E> PinnedDrop for CallFuture<H, A, T, E> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(wait) = this.wait {
                wait.cancel((*this.handle).borrow().shared());
            }
        }
    }
}

impl<H: Borrow<Handle>, A, T, E> CallFuture<H, A, T, E> {
    pub(super) fn new(handle: H, method: &'static str, args: A) -> Self {
        Self::with_role(handle, method, None, args)
    }

    pub(super) fn with_role(
        handle: H,
        method: &'static str,
        role: Option<&'static CacheRole>,
        args: A,
    ) -> Self {
        CallFuture {
            handle,
            method,
            args: Some(args),
            wait: None,
            role,
            ticket: None,
            room: None,
            types: PhantomData,
        }
    }
}

impl<H: Borrow<Handle>, A: Serialize, T: Wire, E: RemoteErrorType> Future
    for CallFuture<H, A, T, E>
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let this = self.project();
        let handle: &Handle = (*this.handle).borrow();
        if let Some(args) = this.args.take() {
            if let Some(role) = *this.role {
                match handle.cache_lookup(this.method, role, &args) {
                    // A hit the budget has no room for goes to the peer.
                    Some(Lookup::Hit(v, weight)) => {
                        if let Some(r) = handle.finish_cached(this.method, &v, weight) {
                            return Poll::Ready(r);
                        }
                    }
                    Some(Lookup::Miss(t)) => *this.ticket = Some(Box::new(t)),
                    None => {}
                }
            }
            // Encoded synchronously and dropped at once: arguments are not
            // held across an await, so they need not be `Sync`.
            let prepared = handle.prepare(this.method, &args, cx.waker());
            drop(args);
            match prepared {
                Ok(p) => {
                    *this.wait = Some(Waiting::new(p));
                    // Its slot holds this task's waker (`Replies::open`):
                    // whatever ends the call (reply, deadline, connection
                    // lost) wakes it, so nothing needs looking at before.
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(E::from_error(e))),
            }
        }
        if this.room.is_none() {
            let Some(wait) = this.wait.as_mut() else {
                // Only after `Ready`: polling a finished future is a caller bug.
                return Poll::Pending;
            };
            // Where a reply waits for room: until the call's deadline,
            // the caller's own where it has one (a handler's, or
            // `with_timeout`'s); else its timeout from now. (Kept in
            // `Waiting`, it made every call's future larger, for a rare
            // path: a timeout counted afresh from the reply, a callback
            // bounded by 2 s ran to 3.8 s, a review.)
            let (budget, since) = (wait.budget(), wait.since);
            let deadline = || {
                let deadline = super::deadline::current_deadline()
                    .unwrap_or_else(|| super::deadline::after(Instant::now(), budget));
                (deadline, since)
            };
            let r = ready!(wait.poll(handle.shared(), cx));
            *this.wait = None;
            if let Some(role) = *this.role {
                handle.cache_after(role, this.ticket.take().map(|t| *t), r.as_ref().ok());
            }
            match r {
                Ok(mut inc) => match inc.heavy.take().map(|h| (h.shareable, h.counted())) {
                    // Light: never from a frame that may lend its memory.
                    None => match handle.finish(this.method, inc, false, 0) {
                        Finish::Done(value, held) => {
                            // Counted only where its types decode to more
                            // than its items were counted at.
                            heavy_reply::hold(held, since);
                            return Poll::Ready(value);
                        }
                        Finish::Refused(e) => return Poll::Ready(Err(e)),
                        // Its types found the budget short: decoded again
                        // once there is room.
                        Finish::Short(inc, wanted) => {
                            let shared = handle.shared();
                            let short = (0, wanted);
                            *this.room = Some(heavy_reply::retried(
                                shared,
                                inc,
                                None,
                                short,
                                false,
                                deadline(),
                            ));
                        }
                    },
                    // Counted whole already: decoded at once.
                    Some((shareable, Ok(charged))) => {
                        let (deadline, since) = deadline();
                        let weighed = Weighed {
                            inc,
                            counted: Ok(charged),
                            shareable,
                            prepaid: 0,
                            deadline,
                            since,
                        };
                        match finish_weighed(handle, this.method, weighed) {
                            Step::Ready(value) => return Poll::Ready(value),
                            Step::Wait(room) => *this.room = Some(room),
                        }
                    }
                    Some((_, Err(heavy))) => {
                        let shared = handle.shared();
                        *this.room = Some(heavy_reply::weighed(shared, inc, heavy, deadline()));
                    }
                },
                Err(e) => return Poll::Ready(Err(E::from_error(e))),
            }
        }
        // A reply waiting for room, decoded once it has it (polled at
        // once: it may have room now), and again if its types found the
        // budget short.
        loop {
            let Some(room) = this.room.as_mut() else {
                return Poll::Pending;
            };
            let weighed = ready!(room.as_mut().poll(cx));
            *this.room = None;
            match finish_weighed(handle, this.method, weighed) {
                Step::Ready(value) => return Poll::Ready(value),
                Step::Wait(room) => *this.room = Some(room),
            }
        }
    }
}

/// What [`finish_weighed`] came to.
enum Step<T, E> {
    Ready(Result<T, E>),
    /// Its types found the budget short: wait for room, and decode again.
    Wait(BoxFuture<'static, Weighed>),
}

/// A reply's value decoded once counted, its count (with what its types
/// took beyond it) kept while the value may be held (`held::hold`); the
/// error if it found no room; or, if its types found the budget short,
/// the wait for room to decode it again.
fn finish_weighed<T: Wire, E: RemoteErrorType>(
    handle: &Handle,
    method: &str,
    weighed: Weighed,
) -> Step<T, E> {
    let Weighed {
        inc,
        counted,
        shareable,
        prepaid,
        deadline,
        since,
    } = weighed;
    let mut charged = match counted {
        Ok(charged) => charged,
        Err(e) => return Step::Ready(Err(E::from_error(e))),
    };
    match handle.finish(method, inc, shareable, prepaid) {
        Finish::Done(value, more) => {
            if let Some(more) = more {
                charged.absorb(more);
            }
            // A typed error decoded from the reply's data is held as a
            // value is.
            heavy_reply::hold(Some(charged), since);
            Step::Ready(value)
        }
        // Nothing held: its count goes (kept, it stayed counted until the
        // handler's next heavy reply, a review).
        Finish::Refused(e) => Step::Ready(Err(e)),
        Finish::Short(inc, wanted) => Step::Wait(heavy_reply::retried(
            handle.shared(),
            inc,
            Some(charged),
            (prepaid, wanted),
            shareable,
            (deadline, since),
        )),
    }
}

impl Handle {
    /// Calls `method` with `args` (a tuple) and decodes the result.
    ///
    /// The call's deadline is the one inherited from an enclosing call or
    /// [`with_timeout`](crate::with_timeout), else
    /// [`Limits::default_deadline`](crate::Limits::default_deadline).
    /// Dropping the future cancels the call at the peer.
    pub fn call<A, T, E>(&self, method: &'static str, args: A) -> BoxFuture<'static, Result<T, E>>
    where
        A: Serialize + Send + 'static,
        T: Wire,
        E: RemoteErrorType,
    {
        // A promise on a connection without pipelining: its calls wait for
        // the object (`promise.rs`).
        if let Some(p) = self.promise().filter(|p| p.must_wait()).cloned() {
            let h = self.clone();
            return Box::pin(async move {
                p.wait().await;
                CallFuture::new(h, method, args).await
            });
        }
        Box::pin(CallFuture::new(self.clone(), method, args))
    }

    /// [`call`](Self::call) whose future borrows this handle (a generated
    /// proxy's method: its future borrows the proxy anyway), so no handle
    /// is cloned for it.
    pub(crate) fn call_ref<A, T, E>(
        &self,
        method: &'static str,
        args: A,
    ) -> BoxFuture<'_, Result<T, E>>
    where
        A: Serialize + Send + 'static,
        T: Wire,
        E: RemoteErrorType,
    {
        if self.promise().is_some_and(|p| p.must_wait()) {
            return self.call(method, args);
        }
        Box::pin(CallFuture::new(self, method, args))
    }
}
