//! A blocking facade for code without an async runtime.
//!
//! Proxies' plain `fn` methods block their caller. On a thread that is
//! running async tasks that would deadlock, so they return
//! [`Error::BlockingInAsync`] there instead.
//!
//! tokio offers no public way to tell a runtime worker thread from one of
//! its blocking-pool threads (both are "inside the runtime"; the check tokio
//! itself uses is private), so a thread inside a runtime context counts as
//! async unless the call runs inside [`allow_blocking`]. What works:
//!
//! - from async code, call the proxy's `async` methods with `.await`;
//! - for a plain `fn` method, run the call in [`spawn_blocking`] (this
//!   module's: tokio's `spawn_blocking` with [`allow_blocking`] around the
//!   closure), or in `tokio::task::spawn_blocking(|| allow_blocking(|| ..))`,
//!   or on a `std::thread` of your own;
//! - handlers of blocking methods are already run that way.
//!
//! ```
//! use std::sync::Arc;
//! use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
//!
//! #[remote]
//! pub trait Adder {
//!     fn add(&self, a: u32, b: u32) -> Result<u32, Error>;
//! }
//!
//! pub struct Calc;
//!
//! #[remote]
//! impl Adder for Calc {
//!     fn add(&self, a: u32, b: u32) -> Result<u32, Error> {
//!         Ok(a + b)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
//! let served: Remote<dyn Adder> = Remote::new(Arc::new(Calc));
//! let (client, _server) =
//!     Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(served)).await?;
//! let adder = client.root::<dyn Adder>();
//! // On the runtime's own thread a blocking call would deadlock: refused.
//! assert!(matches!(adder.add(1, 2), Err(Error::BlockingInAsync)));
//! // On a blocking-pool thread it is fine.
//! let sum = remote_core::blocking::spawn_blocking(move || adder.add(1, 2)).await.unwrap()?;
//! assert_eq!(sum, 3);
//! # Ok(()) }
//! ```

use std::any::Any;
use std::cell::Cell;
use std::future::Future;

use crate::{BoxFuture, Error, RemoteErrorType};

thread_local! {
    static ALLOWED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with blocking remote calls allowed on this thread (for use in
/// `tokio::task::spawn_blocking` closures).
///
/// ```
/// let n = remote_core::blocking::allow_blocking(|| 1 + 1);
/// assert_eq!(n, 2);
/// ```
pub fn allow_blocking<R>(f: impl FnOnce() -> R) -> R {
    let prev = ALLOWED.with(|a| a.replace(true));
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ALLOWED.with(|a| a.set(self.0));
        }
    }
    let _reset = Reset(prev);
    f()
}

/// `tokio::task::spawn_blocking` with blocking remote calls allowed in `f`:
/// the way to call a proxy's plain `fn` methods from async code.
///
/// Called from a method handler, `f` shares what the handler holds in the
/// memory budget for the large replies it decoded, so that a call `f`
/// makes may let them go, as the handler's own next call would (held by
/// the handler, `f`'s call waited for room only the handler could give,
/// until its deadline: a red-team pass); what `f` leaves stays the
/// handler's. Work handed to `tokio::spawn` does not share it: a large
/// reply asked for there may wait for room its handler holds.
///
/// Must be called inside a tokio runtime (it panics otherwise, like
/// tokio's). See the [module docs](self) for an example with a proxy.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let on_pool = remote_core::blocking::spawn_blocking(remote_core::blocking::in_async_context);
/// assert!(!on_pool.await.unwrap(), "blocking calls are allowed in it");
/// # }
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn spawn_blocking<R, F>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let held = crate::held::hand_off();
    tokio::task::spawn_blocking(move || crate::held::handed(held, || allow_blocking(f)))
}

/// Whether a blocking call here would be refused with
/// [`Error::BlockingInAsync`]: on a thread inside a tokio runtime, outside
/// [`allow_blocking`].
///
/// ```
/// use remote_core::blocking::{allow_blocking, in_async_context};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(!std::thread::spawn(in_async_context).join().unwrap()); // a plain thread
/// assert!(in_async_context());
/// assert!(!allow_blocking(in_async_context));
/// # }
/// ```
pub fn in_async_context() -> bool {
    // A page's only thread runs its event loop: never block it.
    #[cfg(target_arch = "wasm32")]
    return true;
    #[cfg(not(target_arch = "wasm32"))]
    return tokio::runtime::Handle::try_current().is_ok() && !ALLOWED.with(Cell::get);
}

#[doc(hidden)]
/// Runs `fut` on `rt` and blocks this thread until it finishes (for
/// generated proxies; use [`Blocking::wait`]). Calls in
/// `fut` inherit this thread's deadline (that of the blocking method being
/// served here, say).
pub fn block_on_call<T, E>(
    rt: &crate::rt::RuntimeHandle,
    fut: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: RemoteErrorType,
{
    if in_async_context() {
        return Err(E::from_error(Error::BlockingInAsync));
    }
    // Boxed to one type, so the task spawned (and tokio's task code) is
    // compiled once here rather than once per calling method. What this
    // thread holds (a blocking handler's: `held.rs`) is shared with it.
    let fut = crate::held::for_blocking_thread(fut);
    let fut: BoxFuture<'static, Box<dyn Any + Send>> =
        Box::pin(async move { Box::new(fut.await) as Box<dyn Any + Send> });
    match block_on_erased(rt, fut).map(|r| r.downcast::<Result<T, E>>()) {
        Some(Ok(r)) => *r,
        _ => Err(E::from_error(Error::ConnectionLost(
            "the runtime driving the connection shut down".into(),
        ))),
    }
}

/// A page cannot block: [`block_on_call`] refuses before getting here.
#[cfg(target_arch = "wasm32")]
fn block_on_erased(
    _rt: &crate::rt::RuntimeHandle,
    _fut: BoxFuture<'static, Box<dyn Any + Send>>,
) -> Option<Box<dyn Any + Send>> {
    None
}

/// [`block_on_call`] on a boxed future: `None` if the runtime dropped it.
#[cfg(not(target_arch = "wasm32"))]
fn block_on_erased(
    rt: &tokio::runtime::Handle,
    fut: BoxFuture<'static, Box<dyn Any + Send>>,
) -> Option<Box<dyn Any + Send>> {
    // The future runs on a runtime worker, where this thread's deadline (a
    // blocking method's, say) is not visible: carry it over.
    let deadline = crate::driver::current_deadline();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let out = match deadline {
            Some(d) => crate::driver::deadline_scope(d, fut).await,
            None => fut.await,
        };
        let _ = tx.send(out);
    });
    rx.recv().ok()
}

/// A runtime of its own for programs without one: connect, then call
/// proxies' async methods through [`Blocking::wait`].
///
/// ```no_run
/// let rt = remote_core::blocking::Blocking::new()?;
/// let conn = rt.wait(remote_core::Connection::connect("tcp://127.0.0.1:7000"))?;
/// println!("connected to {}", conn.peer());
/// # Ok::<(), remote_core::Error>(())
/// ```
#[derive(Debug)]
#[cfg(not(target_arch = "wasm32"))]
pub struct Blocking {
    rt: tokio::runtime::Runtime,
}

#[cfg(not(target_arch = "wasm32"))]
impl Blocking {
    /// Starts a small background runtime (one worker thread).
    pub fn new() -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("remote-blocking")
            .build()?;
        Ok(Blocking { rt })
    }

    /// Runs `fut` to completion on the background runtime. Returns
    /// [`Error::BlockingInAsync`] if called from an async runtime thread.
    pub fn wait<T, E>(
        &self,
        fut: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: RemoteErrorType,
    {
        block_on_call(self.rt.handle(), fut)
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }
}
