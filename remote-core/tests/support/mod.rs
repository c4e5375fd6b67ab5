//! A hand-written remote interface, shaped exactly like `#[remote]` output,
//! so the runtime is tested without the macro.
#![allow(dead_code, unreachable_pub)]

#[path = "../quiet_panics/mod.rs"]
pub mod quiet_panics;

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_core::__private::{Args, CallCx, CallFuture, Deferred, Failed};
use remote_core::schema::{InterfaceDef, Location, SchemaBuilder, Ty};
use remote_core::stream::RemoteStream;
use remote_core::{BoxFuture, Dispatch, Error, Handle, Interface, Remote};

/// A typed application error.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum CalcError {
    #[error("negative input: {0}")]
    Negative(i64),
    #[error("{0}")]
    Remote(String),
}
impl From<Error> for CalcError {
    fn from(e: Error) -> Self {
        CalcError::Remote(e.to_string())
    }
}
impl remote_core::Wire for CalcError {}

pub trait Calc: Send + Sync + 'static {
    fn add(&self, a: i64, b: i64) -> BoxFuture<'_, Result<i64, Error>>;
    fn sleep(&self, ms: u64) -> BoxFuture<'_, Result<(), Error>>;
    fn boom(&self) -> BoxFuture<'_, Result<(), Error>>;
    fn checked(&self, a: i64) -> BoxFuture<'_, Result<i64, CalcError>>;
    fn call_back(&self, cb: Remote<dyn Calc>, x: i64) -> BoxFuture<'_, Result<i64, Error>>;
    fn make(&self) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>>;
    fn same(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>>;
    fn keep(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<(), Error>>;
    fn call_kept(&self, x: i64) -> BoxFuture<'_, Result<i64, Error>>;
    fn blocking_add(&self, a: i64, b: i64) -> Result<i64, Error>;
    fn echo(&self, data: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, Error>>;
    fn numbers(&self, n: u32, batch: u32) -> BoxFuture<'_, Result<RemoteStream<u32>, Error>>;
    /// Milliseconds left of the deadline this handler inherited.
    fn time_left(&self) -> BoxFuture<'_, Result<u64, Error>>;
    /// Calls `cb.time_left()` and returns what the callee saw.
    fn relay_time_left(&self, cb: Remote<dyn Calc>) -> BoxFuture<'_, Result<u64, Error>>;
    #[doc(hidden)]
    fn __remote_handle(&self) -> Option<&Handle> {
        None
    }
}

/// The object a local call in flight will return (`Interface::deferred`):
/// each method waits for it, then runs there.
pub struct CalcDeferred(Deferred<dyn Calc>);

/// `$o.$call` once the deferred object is there, or its call's error.
macro_rules! later {
    ($self:ident, |$o:ident| $call:expr) => {
        Box::pin(async move {
            match $self.0.object().await {
                Ok($o) => $call.await,
                Err(e) => Failed::failed(e),
            }
        })
    };
}

impl Calc for CalcDeferred {
    fn add(&self, a: i64, b: i64) -> BoxFuture<'_, Result<i64, Error>> {
        later!(self, |o| o.add(a, b))
    }
    fn sleep(&self, ms: u64) -> BoxFuture<'_, Result<(), Error>> {
        later!(self, |o| o.sleep(ms))
    }
    fn boom(&self) -> BoxFuture<'_, Result<(), Error>> {
        later!(self, |o| o.boom())
    }
    fn checked(&self, a: i64) -> BoxFuture<'_, Result<i64, CalcError>> {
        later!(self, |o| o.checked(a))
    }
    fn call_back(&self, cb: Remote<dyn Calc>, x: i64) -> BoxFuture<'_, Result<i64, Error>> {
        later!(self, |o| o.call_back(cb, x))
    }
    fn make(&self) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>> {
        later!(self, |o| o.make())
    }
    fn same(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>> {
        later!(self, |o| o.same(obj))
    }
    fn keep(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<(), Error>> {
        later!(self, |o| o.keep(obj))
    }
    fn call_kept(&self, x: i64) -> BoxFuture<'_, Result<i64, Error>> {
        later!(self, |o| o.call_kept(x))
    }
    fn blocking_add(&self, a: i64, b: i64) -> Result<i64, Error> {
        match self.0.object_blocking() {
            Ok(o) => o.blocking_add(a, b),
            Err(e) => Failed::failed(e),
        }
    }
    fn echo(&self, data: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        later!(self, |o| o.echo(data))
    }
    fn numbers(&self, n: u32, batch: u32) -> BoxFuture<'_, Result<RemoteStream<u32>, Error>> {
        later!(self, |o| o.numbers(n, batch))
    }
    fn time_left(&self) -> BoxFuture<'_, Result<u64, Error>> {
        later!(self, |o| o.time_left())
    }
    fn relay_time_left(&self, cb: Remote<dyn Calc>) -> BoxFuture<'_, Result<u64, Error>> {
        later!(self, |o| o.relay_time_left(cb))
    }
}

#[derive(Clone, Debug)]
pub struct CalcClient {
    handle: Handle,
}

impl Calc for CalcClient {
    fn add(&self, a: i64, b: i64) -> BoxFuture<'_, Result<i64, Error>> {
        self.handle.call("add", (a, b))
    }
    fn sleep(&self, ms: u64) -> BoxFuture<'_, Result<(), Error>> {
        self.handle.call("sleep", (ms,))
    }
    fn boom(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.handle.call("boom", ())
    }
    fn checked(&self, a: i64) -> BoxFuture<'_, Result<i64, CalcError>> {
        self.handle.call("checked", (a,))
    }
    fn call_back(&self, cb: Remote<dyn Calc>, x: i64) -> BoxFuture<'_, Result<i64, Error>> {
        self.handle.call("call_back", (cb, x))
    }
    fn make(&self) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>> {
        self.handle.call("make", ())
    }
    fn same(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>> {
        self.handle.call("same", (obj,))
    }
    fn keep(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<(), Error>> {
        self.handle.call("keep", (obj,))
    }
    fn call_kept(&self, x: i64) -> BoxFuture<'_, Result<i64, Error>> {
        self.handle.call("call_kept", (x,))
    }
    fn blocking_add(&self, a: i64, b: i64) -> Result<i64, Error> {
        self.handle.call_blocking("blocking_add", (a, b))
    }
    fn echo(&self, data: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        self.handle.call("echo", (data,))
    }
    fn numbers(&self, n: u32, batch: u32) -> BoxFuture<'_, Result<RemoteStream<u32>, Error>> {
        self.handle.call("numbers", (n, batch))
    }
    fn time_left(&self) -> BoxFuture<'_, Result<u64, Error>> {
        self.handle.call("time_left", ())
    }
    fn relay_time_left(&self, cb: Remote<dyn Calc>) -> BoxFuture<'_, Result<u64, Error>> {
        self.handle.call("relay_time_left", (cb,))
    }
    fn __remote_handle(&self) -> Option<&Handle> {
        Some(&self.handle)
    }
}

pub struct CalcDispatch(Arc<dyn Calc>);

impl Dispatch for CalcDispatch {
    fn interface_name(&self) -> &'static str {
        "Calc"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn call(&self, method: &str, args: Args<'_>, cx: CallCx) -> Result<CallFuture, Error> {
        let obj = self.0.clone();
        Ok(match method {
            "add" => {
                let (a, b): (i64, i64) = args.decode()?;
                Box::pin(async move { cx.reply(obj.add(a, b).await) })
            }
            "sleep" => {
                let (ms,): (u64,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.sleep(ms).await) })
            }
            "boom" => {
                let (): () = args.decode()?;
                Box::pin(async move { cx.reply(obj.boom().await) })
            }
            "checked" => {
                let (a,): (i64,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.checked(a).await) })
            }
            "call_back" => {
                let (cb, x): (Remote<dyn Calc>, i64) = args.decode()?;
                Box::pin(async move { cx.reply(obj.call_back(cb, x).await) })
            }
            "make" => {
                let (): () = args.decode()?;
                Box::pin(async move { cx.reply(obj.make().await) })
            }
            "same" => {
                let (o,): (Remote<dyn Calc>,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.same(o).await) })
            }
            "keep" => {
                let (o,): (Remote<dyn Calc>,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.keep(o).await) })
            }
            "call_kept" => {
                let (x,): (i64,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.call_kept(x).await) })
            }
            "blocking_add" => {
                let (a, b): (i64, i64) = args.decode()?;
                Box::pin(async move {
                    let r = cx.blocking(move || obj.blocking_add(a, b)).await;
                    cx.reply(r)
                })
            }
            "echo" => {
                let (d,): (Vec<u8>,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.echo(d).await) })
            }
            "numbers" => {
                let (n, b): (u32, u32) = args.decode()?;
                Box::pin(async move { cx.reply(obj.numbers(n, b).await) })
            }
            "time_left" => {
                let (): () = args.decode()?;
                Box::pin(async move { cx.reply(obj.time_left().await) })
            }
            "relay_time_left" => {
                let (cb,): (Remote<dyn Calc>,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.relay_time_left(cb).await) })
            }
            _ => return Err(Error::unknown_method("Calc", method)),
        })
    }
}

impl Interface for dyn Calc {
    fn name() -> &'static str {
        "Calc"
    }
    fn into_dispatch(this: Arc<Self>) -> Arc<dyn Dispatch> {
        Arc::new(CalcDispatch(this))
    }
    fn from_dispatch(d: &Arc<dyn Dispatch>) -> Option<Arc<Self>> {
        d.as_any()
            .downcast_ref::<CalcDispatch>()
            .map(|c| c.0.clone())
    }
    fn proxy(handle: Handle) -> Arc<Self> {
        Arc::new(CalcClient { handle })
    }
    fn deferred(target: Deferred<Self>) -> Arc<Self> {
        Arc::new(CalcDeferred(target))
    }
    fn handle(this: &Self) -> Option<&Handle> {
        this.__remote_handle()
    }
    fn describe(b: &mut SchemaBuilder) -> Ty {
        b.define_interface("support::Calc".into(), |_| InterfaceDef {
            path: "support::Calc".into(),
            name: "Calc".into(),
            methods: vec![],
            location: Location::default(),
            doc: String::new(),
        })
    }
}

/// Counts live `Counter` objects, to observe remote drops.
#[derive(Debug, Default)]
pub struct Stats {
    pub live: AtomicUsize,
    /// `add` calls served.
    pub calls: AtomicUsize,
    pub made: AtomicUsize,
    /// `sleep` handlers currently running (decremented when aborted too).
    pub sleeping: AtomicUsize,
    /// Items produced by `numbers` streams.
    pub produced: Arc<AtomicUsize>,
}

struct Sleeping(Arc<Stats>);
impl Drop for Sleeping {
    fn drop(&mut self) {
        self.0.sleeping.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The test implementation.
pub struct Counter {
    pub id: i64,
    pub stats: Arc<Stats>,
    pub kept: Mutex<Option<Remote<dyn Calc>>>,
}

impl Counter {
    pub fn new(id: i64, stats: Arc<Stats>) -> Self {
        stats.live.fetch_add(1, Ordering::SeqCst);
        stats.made.fetch_add(1, Ordering::SeqCst);
        Counter {
            id,
            stats,
            kept: Mutex::new(None),
        }
    }
    pub fn remote(id: i64, stats: Arc<Stats>) -> Remote<dyn Calc> {
        Remote::new(Arc::new(Counter::new(id, stats)) as Arc<dyn Calc>)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stats.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Calc for Counter {
    fn add(&self, a: i64, b: i64) -> BoxFuture<'_, Result<i64, Error>> {
        self.stats.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(a + b + self.id) })
    }
    fn sleep(&self, ms: u64) -> BoxFuture<'_, Result<(), Error>> {
        self.stats.sleeping.fetch_add(1, Ordering::SeqCst);
        let guard = Sleeping(self.stats.clone());
        Box::pin(async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    }
    fn boom(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { panic!("boom at counter {} {}", self.id, quiet_panics::DELIBERATE) })
    }
    fn checked(&self, a: i64) -> BoxFuture<'_, Result<i64, CalcError>> {
        Box::pin(async move {
            if a < 0 {
                Err(CalcError::Negative(a))
            } else {
                Ok(a)
            }
        })
    }
    fn call_back(&self, cb: Remote<dyn Calc>, x: i64) -> BoxFuture<'_, Result<i64, Error>> {
        Box::pin(async move { cb.add(x, 1).await })
    }
    fn make(&self) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>> {
        Box::pin(async move {
            let n = self.stats.made.load(Ordering::SeqCst) as i64;
            Ok(Counter::remote(1000 + n, self.stats.clone()))
        })
    }
    fn same(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<Remote<dyn Calc>, Error>> {
        Box::pin(async move { Ok(obj) })
    }
    fn keep(&self, obj: Remote<dyn Calc>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            *self.kept.lock().unwrap() = Some(obj);
            Ok(())
        })
    }
    fn call_kept(&self, x: i64) -> BoxFuture<'_, Result<i64, Error>> {
        Box::pin(async move {
            let kept = self.kept.lock().unwrap().clone();
            match kept {
                Some(k) => k.add(x, 0).await,
                None => Ok(-1),
            }
        })
    }
    fn blocking_add(&self, a: i64, b: i64) -> Result<i64, Error> {
        std::thread::sleep(Duration::from_millis(5));
        Ok(a + b)
    }
    fn echo(&self, data: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        Box::pin(async move { Ok(data) })
    }
    fn numbers(&self, n: u32, batch: u32) -> BoxFuture<'_, Result<RemoteStream<u32>, Error>> {
        let produced = self.stats.produced.clone();
        Box::pin(async move {
            let items = (0..n).inspect(move |_| {
                produced.fetch_add(1, Ordering::SeqCst);
            });
            Ok(RemoteStream::from_items(items).with_batch(batch))
        })
    }
    fn time_left(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(
            async move { Ok(remote_core::remaining().map_or(u64::MAX, |d| d.as_millis() as u64)) },
        )
    }
    fn relay_time_left(&self, cb: Remote<dyn Calc>) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cb.time_left().await
        })
    }
}

/// Polls `cond` until it holds or `secs` pass (bounded wait for async drops).
/// Give a bound that holds on a loaded machine (60 s): it costs nothing
/// when `cond` comes true early.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}
