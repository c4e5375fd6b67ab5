//! Our benchmark interface, written by hand exactly as `#[remote]` expands
//! it (trait with `BoxFuture` methods, a client holding a `Handle`, a
//! dispatch table, `impl Interface for dyn Trait`), as
//! `remote-core/tests/support/mod.rs` does. Swap in `#[remote]` once the
//! macro lands; the generated code is the same, so are the numbers.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use remote_core::__private::{Args, CallCx, CallFuture};
use remote_core::schema::{InterfaceDef, Location, SchemaBuilder, Ty};
use remote_core::{
    BoxFuture, Connection, ConnectionBuilder, Dispatch, Error, Handle, Interface, Remote, Server,
    ServerHandle,
};

/// The served root.
pub trait Bench: Send + Sync + 'static {
    /// The trivial call: one u64 in, one u64 out.
    fn add(&self, x: u64) -> BoxFuture<'_, Result<u64, Error>>;
    /// Payload echo.
    fn echo(&self, data: Bytes) -> BoxFuture<'_, Result<Bytes, Error>>;
    /// Calls `cb.add(x)` once and returns its result (a callback round trip).
    fn call_back(&self, cb: Remote<dyn Cb>, x: u64) -> BoxFuture<'_, Result<u64, Error>>;
    /// Returns a new capability.
    fn make(&self) -> BoxFuture<'_, Result<Remote<dyn Cb>, Error>>;
    #[doc(hidden)]
    fn __remote_handle(&self) -> Option<&Handle> {
        None
    }
}

/// A callback / capability interface.
pub trait Cb: Send + Sync + 'static {
    /// The trivial call on a capability.
    fn add(&self, x: u64) -> BoxFuture<'_, Result<u64, Error>>;
    #[doc(hidden)]
    fn __remote_handle(&self) -> Option<&Handle> {
        None
    }
}

// ---- generated-code shape for `Bench` ----

#[derive(Clone, Debug)]
pub struct BenchClient {
    handle: Handle,
}

impl Bench for BenchClient {
    fn add(&self, x: u64) -> BoxFuture<'_, Result<u64, Error>> {
        self.handle.call("add", (x,))
    }
    fn echo(&self, data: Bytes) -> BoxFuture<'_, Result<Bytes, Error>> {
        self.handle.call("echo", (data,))
    }
    fn call_back(&self, cb: Remote<dyn Cb>, x: u64) -> BoxFuture<'_, Result<u64, Error>> {
        self.handle.call("call_back", (cb, x))
    }
    fn make(&self) -> BoxFuture<'_, Result<Remote<dyn Cb>, Error>> {
        self.handle.call("make", ())
    }
    fn __remote_handle(&self) -> Option<&Handle> {
        Some(&self.handle)
    }
}

pub struct BenchDispatch(Arc<dyn Bench>);

impl Dispatch for BenchDispatch {
    fn interface_name(&self) -> &'static str {
        "Bench"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn call(&self, method: &str, args: Args, cx: CallCx) -> Result<CallFuture, Error> {
        let obj = self.0.clone();
        Ok(match method {
            "add" => {
                let (x,): (u64,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.add(x).await) })
            }
            "echo" => {
                let (d,): (Bytes,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.echo(d).await) })
            }
            "call_back" => {
                let (cb, x): (Remote<dyn Cb>, u64) = args.decode()?;
                Box::pin(async move { cx.reply(obj.call_back(cb, x).await) })
            }
            "make" => {
                let (): () = args.decode()?;
                Box::pin(async move { cx.reply(obj.make().await) })
            }
            _ => return Err(Error::unknown_method("Bench", method)),
        })
    }
}

impl Interface for dyn Bench {
    fn name() -> &'static str {
        "Bench"
    }
    fn into_dispatch(this: Arc<Self>) -> Arc<dyn Dispatch> {
        Arc::new(BenchDispatch(this))
    }
    fn from_dispatch(d: &Arc<dyn Dispatch>) -> Option<Arc<Self>> {
        d.as_any()
            .downcast_ref::<BenchDispatch>()
            .map(|c| c.0.clone())
    }
    fn proxy(handle: Handle) -> Arc<Self> {
        Arc::new(BenchClient { handle })
    }
    fn handle(this: &Self) -> Option<&Handle> {
        this.__remote_handle()
    }
    fn describe(b: &mut SchemaBuilder) -> Ty {
        b.define_interface("benches::Bench".into(), |_| InterfaceDef {
            path: "benches::Bench".into(),
            name: "Bench".into(),
            methods: vec![],
            location: Location::default(),
            doc: String::new(),
        })
    }
}

// ---- generated-code shape for `Cb` ----

#[derive(Clone, Debug)]
pub struct CbClient {
    handle: Handle,
}

impl Cb for CbClient {
    fn add(&self, x: u64) -> BoxFuture<'_, Result<u64, Error>> {
        self.handle.call("add", (x,))
    }
    fn __remote_handle(&self) -> Option<&Handle> {
        Some(&self.handle)
    }
}

pub struct CbDispatch(Arc<dyn Cb>);

impl Dispatch for CbDispatch {
    fn interface_name(&self) -> &'static str {
        "Cb"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn call(&self, method: &str, args: Args, cx: CallCx) -> Result<CallFuture, Error> {
        let obj = self.0.clone();
        Ok(match method {
            "add" => {
                let (x,): (u64,) = args.decode()?;
                Box::pin(async move { cx.reply(obj.add(x).await) })
            }
            _ => return Err(Error::unknown_method("Cb", method)),
        })
    }
}

impl Interface for dyn Cb {
    fn name() -> &'static str {
        "Cb"
    }
    fn into_dispatch(this: Arc<Self>) -> Arc<dyn Dispatch> {
        Arc::new(CbDispatch(this))
    }
    fn from_dispatch(d: &Arc<dyn Dispatch>) -> Option<Arc<Self>> {
        d.as_any().downcast_ref::<CbDispatch>().map(|c| c.0.clone())
    }
    fn proxy(handle: Handle) -> Arc<Self> {
        Arc::new(CbClient { handle })
    }
    fn handle(this: &Self) -> Option<&Handle> {
        this.__remote_handle()
    }
    fn describe(b: &mut SchemaBuilder) -> Ty {
        b.define_interface("benches::Cb".into(), |_| InterfaceDef {
            path: "benches::Cb".into(),
            name: "Cb".into(),
            methods: vec![],
            location: Location::default(),
            doc: String::new(),
        })
    }
}

// ---- implementations ----

/// The served object.
#[derive(Debug, Default)]
pub struct Impl;

impl Bench for Impl {
    fn add(&self, x: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { Ok(x.wrapping_add(1)) })
    }
    fn echo(&self, data: Bytes) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(async move { Ok(data) })
    }
    fn call_back(&self, cb: Remote<dyn Cb>, x: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { cb.add(x).await })
    }
    fn make(&self) -> BoxFuture<'_, Result<Remote<dyn Cb>, Error>> {
        Box::pin(async move { Ok(CbImpl::remote()) })
    }
}

/// A callback / capability object.
#[derive(Debug, Default)]
pub struct CbImpl;

impl CbImpl {
    /// A new object, wrapped for passing by reference.
    pub fn remote() -> Remote<dyn Cb> {
        Remote::new(Arc::new(CbImpl) as Arc<dyn Cb>)
    }
}

impl Cb for CbImpl {
    fn add(&self, x: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { Ok(x.wrapping_add(1)) })
    }
}

fn root() -> Remote<dyn Bench> {
    Remote::new(Arc::new(Impl) as Arc<dyn Bench>)
}

/// An in-memory pair (`Connection::pair`): (server side, client side, root proxy).
pub async fn pair() -> (Connection, Connection, Remote<dyn Bench>) {
    let (server, client) = Connection::pair(
        ConnectionBuilder::new().serve(root()),
        ConnectionBuilder::new(),
    )
    .await
    .expect("connection pair");
    let proxy = client.root::<dyn Bench>();
    (server, client, proxy)
}

/// A TCP loopback `Server` and one client connection to it.
pub async fn tcp() -> (ServerHandle, Connection, Remote<dyn Bench>) {
    let server = Server::bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .serve(root);
    let client = Connection::connect(server.local_addr())
        .await
        .expect("connect");
    let proxy = client.root::<dyn Bench>();
    (server, client, proxy)
}

/// A trivial call; panics on a wrong answer.
pub async fn call(proxy: &Remote<dyn Bench>, x: u64) {
    let r = proxy.add(x).await.expect("add");
    assert_eq!(r, x.wrapping_add(1));
}

/// A callback round trip with `cb` (made once by the caller).
pub async fn callback(proxy: &Remote<dyn Bench>, cb: &Remote<dyn Cb>, x: u64) {
    let r = proxy.call_back(cb.clone(), x).await.expect("call_back");
    assert_eq!(r, x.wrapping_add(1));
}

/// Obtains a new capability, calls it once, drops it.
pub async fn obtain_call_drop(proxy: &Remote<dyn Bench>, x: u64) {
    let cap = proxy.make().await.expect("make");
    let r = cap.add(x).await.expect("cap add");
    assert_eq!(r, x.wrapping_add(1));
    drop(cap);
}

/// Echoes `data`.
pub async fn echo(proxy: &Remote<dyn Bench>, data: &Bytes) {
    let r = proxy.echo(data.clone()).await.expect("echo");
    assert_eq!(r.len(), data.len());
}
