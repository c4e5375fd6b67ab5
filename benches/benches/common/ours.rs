//! Our benchmark interface, declared with `#[remote]`: what a user writes,
//! so the numbers are what a user gets.

use std::sync::Arc;

use bytes::Bytes;
use remote_core::{
    remote, Connection, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle,
};

/// The served root.
#[remote]
pub trait Bench {
    /// The trivial call: one u64 in, one u64 out.
    async fn add(&self, x: u64) -> Result<u64, Error>;
    /// Payload echo.
    async fn echo(&self, data: Bytes) -> Result<Bytes, Error>;
    /// Calls `cb.add(x)` once and returns its result (a callback round trip).
    async fn call_back(&self, cb: Remote<dyn Cb>, x: u64) -> Result<u64, Error>;
    /// Returns a new capability.
    async fn make(&self) -> Result<Remote<dyn Cb>, Error>;
    /// Bulk data in: the sum of `v`.
    async fn sum(&self, v: Vec<f64>) -> Result<f64, Error>;
}

/// A callback / capability interface.
#[remote]
pub trait Cb {
    /// The trivial call on a capability.
    async fn add(&self, x: u64) -> Result<u64, Error>;
}

// ---- implementations ----

/// The served object.
#[derive(Debug, Default)]
pub struct Impl;

#[remote]
impl Bench for Impl {
    async fn add(&self, x: u64) -> Result<u64, Error> {
        Ok(x.wrapping_add(1))
    }
    async fn echo(&self, data: Bytes) -> Result<Bytes, Error> {
        Ok(data)
    }
    async fn call_back(&self, cb: Remote<dyn Cb>, x: u64) -> Result<u64, Error> {
        cb.add(x).await
    }
    async fn make(&self) -> Result<Remote<dyn Cb>, Error> {
        Ok(CbImpl::remote())
    }
    async fn sum(&self, v: Vec<f64>) -> Result<f64, Error> {
        Ok(v.iter().sum())
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

#[remote]
impl Cb for CbImpl {
    async fn add(&self, x: u64) -> Result<u64, Error> {
        Ok(x.wrapping_add(1))
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
        .serve(|_| root());
    let client = Connection::connect(server.local_addr())
        .await
        .expect("connect");
    let proxy = client.root::<dyn Bench>();
    (server, client, proxy)
}

/// A TCP loopback `Server` and one client connection to it, both with
/// `limits` (for payloads above the default 1 MiB frame limit).
pub async fn tcp_with(limits: Limits) -> (ServerHandle, Connection, Remote<dyn Bench>) {
    let server = Server::builder()
        .limits(limits.clone())
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .serve(|_| root());
    let client = ConnectionBuilder::new()
        .limits(limits)
        .connect(server.local_addr())
        .await
        .expect("connect");
    let proxy = client.root::<dyn Bench>();
    (server, client, proxy)
}

/// A TCP server with default limits on `127.0.0.1:0` (for the many
/// connections bench).
pub async fn tcp_server() -> ServerHandle {
    Server::bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .serve(|_| root())
}

/// A client connection to `addr`: (connection, root proxy).
pub async fn connect(addr: &str) -> (Connection, Remote<dyn Bench>) {
    let client = Connection::connect(addr).await.expect("connect");
    let proxy = client.root::<dyn Bench>();
    (client, proxy)
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

/// Obtains a new capability and calls it once in one round trip (the call
/// is pipelined on the capability `make` will return), then drops it.
pub async fn pipelined_call_drop(proxy: &Remote<dyn Bench>, x: u64) {
    let cap = proxy.make_pipelined();
    let r = cap.add(x).await.expect("cap add");
    assert_eq!(r, x.wrapping_add(1));
    drop(cap);
}

/// Sends `v` and checks its sum (`want`).
pub async fn sum(proxy: &Remote<dyn Bench>, v: &[f64], want: f64) {
    let r = proxy.sum(v.to_vec()).await.expect("sum");
    assert_eq!(r, want);
}

/// Echoes `data`.
pub async fn echo(proxy: &Remote<dyn Bench>, data: &Bytes) {
    let r = proxy.echo(data.clone()).await.expect("echo");
    assert_eq!(r.len(), data.len());
}
