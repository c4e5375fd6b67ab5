//! The future of an outgoing call, split so that only a thin shell depends
//! on the call's types.
//!
//! [`CallFuture`] holds the arguments until its first poll (so a call
//! inherits the deadline in force where it is awaited, and sends nothing
//! if never polled), encodes them through the non-generic `prepare`, then
//! waits on a [`RawCall`]. `RawCall` is a named, non-generic future: its
//! `poll` and the tokio timer and channel code under it are compiled once in
//! this crate. (An `async` block holding the same wait would be compiled
//! again in every crate with a `#[remote]` trait, once per method.)

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use serde::Serialize;

use super::call::Prepared;
use super::control::{Control, Incoming};
use super::replies::Key;
use crate::cache::{CacheRole, Lookup, Ticket};
use crate::interface::BoxFuture;
use crate::proto::CallId;
use crate::{Error, Handle, RemoteErrorType, Wire};

type Reply = Result<Incoming, Error>;

pin_project! {
    /// A sent call waiting for its reply or its deadline. Dropped before
    /// either, it queues a cancel for the peer.
    pub(in crate::driver) struct RawCall {
        handle: Handle,
        id: CallId,
        budget: Duration,
        armed: bool,
        // No timer per call: the connection fails the call at its deadline
        // (`expiry.rs`). The reply arrives in this slot (`replies.rs`).
        reply: Key,
    }

    impl PinnedDrop for RawCall {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.armed {
                // The slot's own leaf lock only (`replies.rs`); the cancel
                // is queued, not sent from here: Drop does no I/O.
                this.handle.shared().replies.close(*this.reply);
                let _ = this.handle.shared().ctl.send(Control::Cancel {
                    id: *this.id,
                    sent: true,
                });
            }
        }
    }
}

impl RawCall {
    pub(in crate::driver) fn new(
        handle: &Handle,
        (id, _deadline, budget, reply): Prepared,
    ) -> Self {
        RawCall {
            handle: handle.clone(),
            id,
            budget,
            armed: true,
            reply,
        }
    }
}

impl Future for RawCall {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = self.project();
        let r = match ready!(this.handle.shared().replies.poll(*this.reply, cx)) {
            // Already forgotten and cancelled by the connection's timer.
            Some(Err(Error::DeadlineExceeded(_))) => {
                *this.armed = false;
                Err(Error::DeadlineExceeded(*this.budget))
            }
            None => {
                *this.armed = false;
                Err(this.handle.shared().lost())
            }
            Some(r) => {
                *this.armed = false;
                r
            }
        };
        Poll::Ready(r)
    }
}

pin_project! {
    /// [`Handle::call`]'s future: encodes `args` on the first poll, then
    /// waits on a [`RawCall`] and decodes the result.
    pub(super) struct CallFuture<A, T, E> {
        handle: Handle,
        method: &'static str,
        args: Option<A>,
        #[pin]
        raw: Option<RawCall>,
        role: Option<&'static CacheRole>,
        // Boxed: the uncached call's future stays one pointer larger.
        ticket: Option<Box<Ticket>>,
        types: PhantomData<fn() -> (T, E)>,
    }
}

impl<A, T, E> CallFuture<A, T, E> {
    pub(super) fn new(handle: Handle, method: &'static str, args: A) -> Self {
        Self::with_role(handle, method, None, args)
    }

    pub(super) fn with_role(
        handle: Handle,
        method: &'static str,
        role: Option<&'static CacheRole>,
        args: A,
    ) -> Self {
        CallFuture {
            handle,
            method,
            args: Some(args),
            raw: None,
            role,
            ticket: None,
            types: PhantomData,
        }
    }
}

impl<A: Serialize, T: Wire, E: RemoteErrorType> Future for CallFuture<A, T, E> {
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.project();
        if let Some(args) = this.args.take() {
            if let Some(role) = *this.role {
                match this.handle.cache_lookup(this.method, role, &args) {
                    Some(Lookup::Hit(v)) => return Poll::Ready(this.handle.finish_cached(&v)),
                    Some(Lookup::Miss(t)) => *this.ticket = Some(Box::new(t)),
                    None => {}
                }
            }
            // Encoded synchronously and dropped at once: arguments are not
            // held across an await, so they need not be `Sync`.
            let prepared = this.handle.prepare(this.method, &args, cx.waker());
            drop(args);
            match prepared {
                Ok(p) => {
                    this.raw.set(Some(RawCall::new(this.handle, p)));
                    // Its slot holds this task's waker (`Replies::open`):
                    // whatever ends the call (reply, deadline, connection
                    // lost) wakes it, so nothing needs looking at before.
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(E::from_error(e))),
            }
        }
        let Some(raw) = this.raw.as_mut().as_pin_mut() else {
            // Only after `Ready`: polling a finished future is a caller bug.
            return Poll::Pending;
        };
        let r = ready!(raw.poll(cx));
        this.raw.set(None);
        if let Some(role) = *this.role {
            this.handle
                .cache_after(role, this.ticket.take().map(|t| *t), r.as_ref().ok());
        }
        Poll::Ready(match r {
            Ok(inc) => this.handle.finish(inc),
            Err(e) => Err(E::from_error(e)),
        })
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
}
