//! remoc 0.20 remote traits (`rtc`), with its default codec and default
//! `Cfg`, over a chmux connection on the same 64 KiB tokio duplex
//! `Connection::pair` uses (or TCP). The server is `RBenchServerShared`
//! (calls run concurrently), the client arrives with `provide`/`consume`,
//! as remoc's documentation sets it up.

use std::sync::Arc;

use bytes::Bytes;
use remoc::prelude::*;
use remoc::rtc::CallError;
use tokio::io::{AsyncRead, AsyncWrite};

#[rtc::remote]
pub trait RBench {
    /// The trivial call.
    async fn add(&self, x: u64) -> Result<u64, CallError>;
    /// Payload echo.
    async fn echo(&self, data: Bytes) -> Result<Bytes, CallError>;
    /// Calls `cb.add(x)` once.
    async fn call_back(&self, cb: RCbClient, x: u64) -> Result<u64, CallError>;
    /// Returns a new capability (a client of a newly served object).
    async fn make(&self) -> Result<RCbClient, CallError>;
}

#[rtc::remote]
pub trait RCb {
    /// The trivial call on a capability.
    async fn add(&self, x: u64) -> Result<u64, CallError>;
}

#[derive(Debug)]
struct RImpl;

impl RBench for RImpl {
    async fn add(&self, x: u64) -> Result<u64, CallError> {
        Ok(x.wrapping_add(1))
    }
    async fn echo(&self, data: Bytes) -> Result<Bytes, CallError> {
        Ok(data)
    }
    async fn call_back(&self, cb: RCbClient, x: u64) -> Result<u64, CallError> {
        cb.add(x).await
    }
    async fn make(&self) -> Result<RCbClient, CallError> {
        Ok(new_cb())
    }
}

#[derive(Debug)]
struct RCbImpl;

impl RCb for RCbImpl {
    async fn add(&self, x: u64) -> Result<u64, CallError> {
        Ok(x.wrapping_add(1))
    }
}

/// Serves a new callback object; returns its client.
pub fn new_cb() -> RCbClient {
    let (server, client) = RCbServerShared::<_, remoc::codec::Default>::new(Arc::new(RCbImpl));
    tokio::spawn(server.serve());
    client
}

async fn connect<R1, W1, R2, W2>(cr: R1, cw: W1, sr: R2, sw: W2) -> RBenchClient
where
    R1: AsyncRead + Send + Unpin + 'static,
    W1: AsyncWrite + Send + Unpin + 'static,
    R2: AsyncRead + Send + Unpin + 'static,
    W2: AsyncWrite + Send + Unpin + 'static,
{
    let (server, client) = RBenchServerShared::<_, remoc::codec::Default>::new(Arc::new(RImpl));
    tokio::spawn(server.serve());
    let provide = remoc::Connect::io(remoc::Cfg::default(), sr, sw).provide(client);
    let consume = remoc::Connect::io(remoc::Cfg::default(), cr, cw).consume();
    let (provided, consumed) = tokio::join!(provide, consume);
    provided.expect("remoc provide");
    consumed.expect("remoc consume")
}

/// Client and server over an in-memory duplex.
pub async fn memory() -> RBenchClient {
    let (a, b) = super::duplex();
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    connect(ar, aw, br, bw).await
}

/// Client and server over TCP loopback.
pub async fn tcp() -> RBenchClient {
    let (c, s) = super::tcp_pair().await;
    let (cr, cw) = c.into_split();
    let (sr, sw) = s.into_split();
    connect(cr, cw, sr, sw).await
}

/// A trivial call; panics on a wrong answer.
pub async fn call(client: &RBenchClient, x: u64) {
    let r = client.add(x).await.expect("add");
    assert_eq!(r, x.wrapping_add(1));
}

/// Echoes `data`.
pub async fn echo(client: &RBenchClient, data: &Bytes) {
    let r = client.echo(data.clone()).await.expect("echo");
    assert_eq!(r.len(), data.len());
}

/// A callback round trip with `cb` (made once by the caller).
pub async fn callback(client: &RBenchClient, cb: &RCbClient, x: u64) {
    let r = client.call_back(cb.clone(), x).await.expect("call_back");
    assert_eq!(r, x.wrapping_add(1));
}

/// Obtains a new capability, calls it once, drops it.
pub async fn obtain_call_drop(client: &RBenchClient, x: u64) {
    let cap = client.make().await.expect("make");
    let r = cap.add(x).await.expect("cap add");
    assert_eq!(r, x.wrapping_add(1));
    drop(cap);
}
