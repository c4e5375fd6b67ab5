//! What every benchmark binary shares: the benchmark interface for each
//! system (ours, tarpc, remoc), a raw length-prefixed echo as the physical
//! baseline, and set-up helpers.
//!
//! Every system runs client and server in one process on one
//! current-thread tokio runtime, so all of them do the same work per call
//! (encode, frame, write, wake, read, decode, run, and back) and the figures
//! are repeatable under callgrind.
#![allow(dead_code, unreachable_pub)]

pub mod capnp_sys;
pub mod ours;
pub mod raw;
pub mod remoc_sys;
pub mod tarpc_sys;

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

/// The runtime every benchmark uses: one thread, client and server on it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `call` `iters` times, one after the other, and times the loop.
pub async fn sequential<F, Fut>(iters: u64, mut call: F) -> Duration
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    for i in 0..iters {
        call(i).await;
    }
    start.elapsed()
}

/// Runs `call` `iters` times in total with `in_flight` calls outstanding at
/// any moment (no task per call: one `FuturesUnordered`), and times it.
pub async fn concurrent<F, Fut>(iters: u64, in_flight: usize, mut call: F) -> Duration
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut started = 0u64;
    while started < iters && pending.len() < in_flight {
        pending.push(call(started));
        started += 1;
    }
    while pending.next().await.is_some() {
        if started < iters {
            pending.push(call(started));
            started += 1;
        }
    }
    start.elapsed()
}

/// Lets spawned tasks (handshakes, releases, connection set-up) settle.
pub async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// A connected TCP loopback pair with Nagle off on both ends.
pub async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let client = client.expect("connect");
    let (server, _) = server.expect("accept");
    client.set_nodelay(true).expect("nodelay");
    server.set_nodelay(true).expect("nodelay");
    (client, server)
}

/// The in-memory byte pipe every byte-stream system runs over: the same
/// one `remote_core::Connection::pair` uses (64 KiB tokio duplex).
pub fn duplex() -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
    tokio::io::duplex(64 << 10)
}
