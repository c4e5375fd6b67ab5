//! tarpc 0.38, set up as its documentation does: `BaseChannel::with_defaults`
//! and `execute(..).for_each(spawn)` on the server, `Client::new(..).spawn()`
//! on the client.
//!
//! Two transports:
//! - `channel`: tarpc's in-memory channel transport. Messages move as Rust
//!   values: nothing is encoded or framed. Not comparable to a byte stream,
//!   shown as tarpc's floor.
//! - `bincode` over a byte stream: tarpc's `serde_transport` (tokio-util's
//!   `LengthDelimitedCodec`: the same u32 big-endian length prefix we use)
//!   with tokio-serde's `Bincode` format, over the same 64 KiB tokio duplex
//!   `Connection::pair` uses, or TCP. This is tarpc as its users run it (what
//!   `tarpc::serde_transport::tcp::connect(addr, Bincode::default)` builds, as
//!   in tarpc's examples), and the tarpc figure we compare with.
//! - `msgpack`: the same with tokio-serde's MessagePack (rmp-serde, the
//!   encoder we use). Not tarpc's usual configuration: MessagePack costs tarpc
//!   more per call than bincode; kept for comparison with older figures.

use bytes::Bytes;
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::{Bincode, MessagePack};
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

type ClientTransport<S, C> = tarpc::serde_transport::Transport<
    S,
    tarpc::Response<TBenchResponse>,
    tarpc::ClientMessage<TBenchRequest>,
    C,
>;
type ServerTransport<S, C> = tarpc::serde_transport::Transport<
    S,
    tarpc::ClientMessage<TBenchRequest>,
    tarpc::Response<TBenchResponse>,
    C,
>;

type Req = tarpc::ClientMessage<TBenchRequest>;
type Resp = tarpc::Response<TBenchResponse>;

/// `$name(client_io, server_io)`: a served tarpc pair with format `$fmt`.
macro_rules! pair_fn {
    ($name:ident, $fmt:ident) => {
        fn $name<S>(client_io: S, server_io: S) -> TBenchClient
        where
            S: AsyncRead + AsyncWrite + Send + 'static,
        {
            let server: ServerTransport<S, $fmt<Req, Resp>> = tarpc::serde_transport::new(
                Framed::new(server_io, LengthDelimitedCodec::new()),
                $fmt::default(),
            );
            serve(server);
            let client: ClientTransport<S, $fmt<Resp, Req>> = tarpc::serde_transport::new(
                Framed::new(client_io, LengthDelimitedCodec::new()),
                $fmt::default(),
            );
            TBenchClient::new(client::Config::default(), client).spawn()
        }
    };
}

pair_fn!(pair_bincode, Bincode);
pair_fn!(pair_msgpack, MessagePack);

/// Client and server over an in-memory duplex, bincode-encoded (tarpc's
/// usual configuration).
pub fn bincode_memory() -> TBenchClient {
    let (a, b) = super::duplex();
    pair_bincode(a, b)
}

/// Client and server over TCP loopback, bincode-encoded (tarpc's usual
/// configuration).
pub async fn bincode_tcp() -> TBenchClient {
    let (c, s) = super::tcp_pair().await;
    pair_bincode(c, s)
}

/// Serves one bincode-encoded client on `io` (spawned).
pub fn serve_bincode<S>(io: S)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let server: ServerTransport<S, Bincode<Req, Resp>> = tarpc::serde_transport::new(
        Framed::new(io, LengthDelimitedCodec::new()),
        Default::default(),
    );
    serve(server);
}

/// A bincode-encoded client on `io`.
pub fn client_bincode<S>(io: S) -> TBenchClient
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let client: ClientTransport<S, Bincode<Resp, Req>> = tarpc::serde_transport::new(
        Framed::new(io, LengthDelimitedCodec::new()),
        Default::default(),
    );
    TBenchClient::new(client::Config::default(), client).spawn()
}

/// Client and server over an in-memory duplex, msgpack-encoded.
pub fn msgpack_memory() -> TBenchClient {
    let (a, b) = super::duplex();
    pair_msgpack(a, b)
}

/// Client and server over TCP loopback, msgpack-encoded.
pub async fn msgpack_tcp() -> TBenchClient {
    let (c, s) = super::tcp_pair().await;
    pair_msgpack(c, s)
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
