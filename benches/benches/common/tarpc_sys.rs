//! tarpc 0.38, set up as its documentation does: `BaseChannel::with_defaults`
//! and `execute(..).for_each(spawn)` on the server, `Client::new(..).spawn()`
//! on the client.
//!
//! Two transports:
//! - `channel`: tarpc's in-memory channel transport. Messages move as Rust
//!   values: nothing is encoded or framed. Not comparable to a byte stream,
//!   shown as tarpc's floor.
//! - `msgpack` over a byte stream: tarpc's `serde_transport` (tokio-util's
//!   `LengthDelimitedCodec`: the same u32 big-endian length prefix we use)
//!   with tokio-serde's MessagePack (rmp-serde, the encoder we use), over the
//!   same 64 KiB tokio duplex `Connection::pair` uses, or TCP. This is the
//!   closest equivalent of our stack, and the tarpc figure we compare with.

use bytes::Bytes;
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::MessagePack;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tarpc::{client, context};
use tokio::io::{AsyncRead, AsyncWrite};

#[tarpc::service]
pub trait TBench {
    /// The trivial call.
    async fn add(x: u64) -> u64;
    /// Payload echo.
    async fn echo(data: Bytes) -> Bytes;
}

#[derive(Clone, Debug)]
struct TServer;

impl TBench for TServer {
    async fn add(self, _: context::Context, x: u64) -> u64 {
        x.wrapping_add(1)
    }
    async fn echo(self, _: context::Context, data: Bytes) -> Bytes {
        data
    }
}

fn serve<T>(transport: T)
where
    T: tarpc::Transport<tarpc::Response<TBenchResponse>, tarpc::ClientMessage<TBenchRequest>>
        + Send
        + 'static,
{
    let channel = BaseChannel::with_defaults(transport);
    tokio::spawn(
        channel
            .execute(TServer.serve())
            .for_each(|response| async move {
                tokio::spawn(response);
            }),
    );
}

/// Client and server over tarpc's in-memory channel transport (no bytes).
pub fn channel() -> TBenchClient {
    let (client_t, server_t) = tarpc::transport::channel::unbounded();
    serve(server_t);
    TBenchClient::new(client::Config::default(), client_t).spawn()
}

fn over<S>(
    io: S,
) -> impl tarpc::Transport<tarpc::ClientMessage<TBenchRequest>, tarpc::Response<TBenchResponse>>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    tarpc::serde_transport::new(
        Framed::new(io, LengthDelimitedCodec::new()),
        MessagePack::default(),
    )
}

fn serve_on<S>(io: S)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let t: tarpc::serde_transport::Transport<
        _,
        tarpc::ClientMessage<TBenchRequest>,
        tarpc::Response<TBenchResponse>,
        _,
    > = tarpc::serde_transport::new(
        Framed::new(io, LengthDelimitedCodec::new()),
        MessagePack::default(),
    );
    serve(t);
}

/// Client and server over an in-memory duplex, msgpack-encoded.
pub fn msgpack_memory() -> TBenchClient {
    let (a, b) = super::duplex();
    serve_on(b);
    TBenchClient::new(client::Config::default(), over(a)).spawn()
}

/// Client and server over TCP loopback, msgpack-encoded.
pub async fn msgpack_tcp() -> TBenchClient {
    let (c, s) = super::tcp_pair().await;
    serve_on(s);
    TBenchClient::new(client::Config::default(), over(c)).spawn()
}

/// A trivial call; panics on a wrong answer.
pub async fn call(client: &TBenchClient, x: u64) {
    let r = client.add(context::current(), x).await.expect("add");
    assert_eq!(r, x.wrapping_add(1));
}

/// Echoes `data`.
pub async fn echo(client: &TBenchClient, data: &Bytes) {
    let r = client
        .echo(context::current(), data.clone())
        .await
        .expect("echo");
    assert_eq!(r.len(), data.len());
}
