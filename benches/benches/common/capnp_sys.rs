//! capnp-rpc 0.27, set up as its documentation and examples do: a
//! `twoparty::VatNetwork` with default `ReaderOptions` on each end of the
//! byte stream, an `RpcSystem` spawned as a local task, the server's
//! bootstrap capability made with `capnp_rpc::new_client`, the client's with
//! `RpcSystem::bootstrap`. The schema is `benches/capnp/bench.capnp`, the
//! code generated from it `benches/capnp/bench_capnp.rs` (see `regen.sh`
//! there).
//!
//! capnp-rpc is single-threaded (`Rc`, `!Send`): its systems must run inside
//! a `tokio::task::LocalSet` (`spawn_local`). Callers set that up.

use bytes::Bytes;
use capnp::capability::Rc as CapRc;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::TokioAsyncReadCompatExt;

#[rustfmt::skip]
#[allow(clippy::all, unreachable_pub, missing_debug_implementations, dead_code)]
#[path = "../../capnp/bench_capnp.rs"]
pub mod bench_capnp;

pub use bench_capnp::{bench, cb};

struct BenchImpl;

impl bench::Server for BenchImpl {
    async fn add(
        self: CapRc<Self>,
        params: bench::AddParams,
        mut results: bench::AddResults,
    ) -> Result<(), capnp::Error> {
        let x = params.get()?.get_x();
        results.get().set_y(x.wrapping_add(1));
        Ok(())
    }

    async fn echo(
        self: CapRc<Self>,
        params: bench::EchoParams,
        mut results: bench::EchoResults,
    ) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?;
        results.get().set_data(data);
        Ok(())
    }

    async fn call_back(
        self: CapRc<Self>,
        params: bench::CallBackParams,
        mut results: bench::CallBackResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let x = p.get_x();
        let cb = p.get_cb()?;
        let mut req = cb.add_request();
        req.get().set_x(x);
        let y = req.send().promise.await?.get()?.get_y();
        results.get().set_y(y);
        Ok(())
    }

    async fn make(
        self: CapRc<Self>,
        _: bench::MakeParams,
        mut results: bench::MakeResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_cb(new_cb());
        Ok(())
    }
}

struct CbImpl;

impl cb::Server for CbImpl {
    async fn add(
        self: CapRc<Self>,
        params: cb::AddParams,
        mut results: cb::AddResults,
    ) -> Result<(), capnp::Error> {
        let x = params.get()?.get_x();
        results.get().set_y(x.wrapping_add(1));
        Ok(())
    }
}

/// A new local callback / capability object.
pub fn new_cb() -> cb::Client {
    capnp_rpc::new_client(CbImpl)
}

/// The client end: the bootstrap capability (cheap to clone; every call
/// goes over the one connection).
pub type Client = bench::Client;

fn network<S>(io: S, side: Side) -> twoparty::VatNetwork<impl futures::AsyncRead + Unpin>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (r, w) = io.compat().split();
    twoparty::VatNetwork::new(r, w, side, Default::default())
}

/// Serves a `Bench` on `io` (spawned as a local task).
pub fn serve_on<S>(io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let net = network(io, Side::Server);
    let root: bench::Client = capnp_rpc::new_client(BenchImpl);
    let system = RpcSystem::new(Box::new(net), Some(root.client));
    tokio::task::spawn_local(system);
}

/// Connects a client on `io` (its `RpcSystem` spawned as a local task).
pub fn connect_on<S>(io: S) -> Client
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let net = network(io, Side::Client);
    let mut system = RpcSystem::new(Box::new(net), None);
    let client: bench::Client = system.bootstrap(Side::Server);
    tokio::task::spawn_local(system);
    client
}

/// Client and server over an in-memory duplex (the pipe `Connection::pair`
/// uses).
pub fn memory() -> Client {
    let (a, b) = super::duplex();
    serve_on(b);
    connect_on(a)
}

/// Client and server over TCP loopback.
pub async fn tcp() -> Client {
    let (c, s) = super::tcp_pair().await;
    serve_on(s);
    connect_on(c)
}

/// A trivial call; panics on a wrong answer.
pub async fn call(client: &Client, x: u64) {
    let mut req = client.add_request();
    req.get().set_x(x);
    let reply = req.send().promise.await.expect("add");
    assert_eq!(reply.get().expect("add").get_y(), x.wrapping_add(1));
}

/// Echoes `data`.
pub async fn echo(client: &Client, data: &Bytes) {
    let mut req = client.echo_request();
    req.get().set_data(data);
    let reply = req.send().promise.await.expect("echo");
    let got = reply.get().expect("echo").get_data().expect("echo data");
    assert_eq!(got.len(), data.len());
}

/// A callback round trip with `cb` (made once by the caller).
pub async fn callback(client: &Client, cb: &cb::Client, x: u64) {
    let mut req = client.call_back_request();
    req.get().set_cb(cb.clone());
    req.get().set_x(x);
    let reply = req.send().promise.await.expect("call_back");
    assert_eq!(reply.get().expect("call_back").get_y(), x.wrapping_add(1));
}

/// Obtains a new capability and calls it once without waiting for the
/// first reply (capnp-rpc's promise pipelining), then drops it.
pub async fn pipelined_call_drop(client: &Client, x: u64) {
    let made = client.make_request().send();
    let cap = made.pipeline.get_cb();
    let mut req = cap.add_request();
    req.get().set_x(x);
    let r = req.send().promise.await.expect("cap add");
    assert_eq!(r.get().expect("cap add").get_y(), x.wrapping_add(1));
    drop(cap);
    drop(made);
}

/// Obtains a new capability, calls it once, drops it (waiting for each
/// reply, as ours and remoc do: no promise pipelining).
pub async fn obtain_call_drop(client: &Client, x: u64) {
    let reply = client.make_request().send().promise.await.expect("make");
    let cap = reply.get().expect("make").get_cb().expect("make cb");
    drop(reply);
    let mut req = cap.add_request();
    req.get().set_x(x);
    let r = req.send().promise.await.expect("cap add");
    assert_eq!(r.get().expect("cap add").get_y(), x.wrapping_add(1));
    drop(cap);
}
