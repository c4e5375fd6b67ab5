//! [`Deferred`]: the object a local method call in flight will return, so
//! a pipelined call on a local object (`FilesPipeline::open_pipelined` on
//! a `Remote<dyn Files>` that is not a proxy) gives a usable promise at
//! once, as it does on a proxy (PROTOCOL.md §3.10).
//!
//! `#[remote]` generates, for every trait, a hidden implementation around a
//! `Deferred` (reached through [`Interface::deferred`]): each of its
//! methods waits for the local call's object, then calls the method on it,
//! or fails with the local call's error converted into the method's error
//! type.
//!
//! The local call is driven lazily by whoever waits for it (a call on the
//! promise, or [`Promise::resolved`](crate::Promise::resolved)), as the
//! local method's own future would be: nothing is spawned, so a promise
//! made outside a runtime (or on a page) needs none.

use std::fmt;
use std::sync::Arc;

use futures_util::future::{FutureExt, Shared};

use crate::interface::Interface;
use crate::{BoxFuture, Error, Remote, RemoteError, RemoteErrorType};

/// What a deferred object's local call ended with (the error shared by
/// every waiter).
type Outcome<T> = Result<Remote<T>, Arc<RemoteError>>;

/// The object a local method call will return (see the module docs). Not
/// a public API: generated code wraps it.
#[doc(hidden)]
pub struct Deferred<T: ?Sized> {
    call: Shared<BoxFuture<'static, Outcome<T>>>,
    /// The runtime the promise was made on, if any: a blocking method
    /// drives the call there (as a proxy's blocking call does).
    #[cfg(not(target_arch = "wasm32"))]
    runtime: Option<tokio::runtime::Handle>,
}

impl<T: ?Sized> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Deferred {
            call: self.call.clone(),
            #[cfg(not(target_arch = "wasm32"))]
            runtime: self.runtime.clone(),
        }
    }
}

impl<T: ?Sized + Interface> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.call.peek() {
            None => "pending",
            Some(Ok(_)) => "resolved",
            Some(Err(_)) => "failed",
        };
        write!(f, "Deferred<{}>({state})", T::name())
    }
}

impl<T: ?Sized + Interface> Deferred<T> {
    /// The object `call` will return; its error is kept as it crosses the
    /// wire (`E::to_remote`), to be rebuilt in each method's error type.
    pub(crate) fn new<E: RemoteErrorType>(call: BoxFuture<'static, Result<Remote<T>, E>>) -> Self {
        let call: BoxFuture<'static, Outcome<T>> =
            Box::pin(call.map(|r| r.map_err(|e| Arc::new(e.to_remote()))));
        Deferred {
            call: call.shared(),
            #[cfg(not(target_arch = "wasm32"))]
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The local call's outcome, if it has ended.
    pub(crate) fn peek(&self) -> Option<Outcome<T>> {
        self.call.peek().cloned()
    }

    /// Waits for the local call's object (driving the call if no one else
    /// is).
    pub async fn object(&self) -> Result<Remote<T>, Failure> {
        self.call.clone().await.map_err(Failure::Remote)
    }

    /// [`object`](Self::object) for a blocking method: refused with
    /// [`Error::BlockingInAsync`] where blocking is (on a runtime thread),
    /// unless the call has already ended. Otherwise the call is driven on
    /// the runtime the promise was made on, or on this thread if it was
    /// made outside one.
    pub fn object_blocking(&self) -> Result<Remote<T>, Failure> {
        if let Some(done) = self.peek() {
            return done.map_err(Failure::Remote);
        }
        if crate::blocking::in_async_context() {
            return Err(Failure::Local(Error::BlockingInAsync));
        }
        let call = self.call.clone();
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(rt) = &self.runtime {
            let done =
                crate::blocking::block_on_call(rt, async move { Ok::<_, Error>(call.await) });
            return match done {
                Ok(outcome) => outcome.map_err(Failure::Remote),
                Err(e) => Err(Failure::Local(e)),
            };
        }
        futures_executor::block_on(call).map_err(Failure::Remote)
    }
}

/// Why a deferred object is not there: its local call's error, or a local
/// refusal to wait for it.
#[doc(hidden)]
#[derive(Debug)]
pub enum Failure {
    /// The local call failed with this error.
    Remote(Arc<RemoteError>),
    /// Waiting was refused here.
    Local(Error),
}

/// A method's result type built from a [`Failure`]: `Err` in the method's
/// own error type. Not a public API: generated code uses it.
#[doc(hidden)]
pub trait Failed {
    /// The failure as this result.
    fn failed(f: Failure) -> Self;
}

impl<T, E: RemoteErrorType> Failed for Result<T, E> {
    fn failed(f: Failure) -> Self {
        Err(match f {
            Failure::Remote(e) => E::from_remote(RemoteError::clone(&e)),
            Failure::Local(e) => E::from_error(e),
        })
    }
}
