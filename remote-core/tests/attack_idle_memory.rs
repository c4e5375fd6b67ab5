//! Independent attack review (issue 8 follow-up): what a connection keeps
//! after one large frame. The frame reader's buffer grows to the frame's
//! size while it is read (counted in the budget then); the question is
//! whether an idle connection keeps that allocation afterwards, outside
//! the budget. Measured with a counting global allocator (one test: the
//! allocator counts the whole process).

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use remote_core::proto::{encode, CallId, Hello, ObjectId};
use remote_core::{remote, Error, Limits, Remote, Server};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

#[remote]
pub trait Sink {
    /// Takes `data`, returns its length.
    async fn put(&self, data: Bytes) -> Result<u32, Error>;
}

struct Impl;

#[remote]
impl Sink for Impl {
    async fn put(&self, data: Bytes) -> Result<u32, Error> {
        Ok(data.len() as u32)
    }
}

const CONNS: usize = 16;
const MIB: isize = 1 << 20;

async fn raw(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features: vec![],
        auth: None,
    });
    s.write_all(&hello).await.unwrap();
    s
}

/// `put(data)` as call `id`, with a `bin 32` argument of `len` bytes.
fn put(id: u32, len: usize) -> Vec<u8> {
    let mut f = encode::begin(len + 32);
    encode::call_head(&mut f, CallId(id), ObjectId(0), "put", 60_000);
    f.extend_from_slice(&[0x91, 0xc6]);
    f.extend_from_slice(&(len as u32).to_be_bytes());
    f.resize(f.len() + len, 5);
    encode::finish(&mut f);
    f
}

/// Reads frames until the reply (kind 2) to a call arrives.
async fn reply(s: &mut TcpStream) {
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut f).await.unwrap();
        if f[1] == 2 {
            return;
        }
    }
}

/// Server-side only: the clients are raw sockets, so the process's live
/// heap is the server's (and a few socket-sized test buffers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_keep_no_large_input_buffer() {
    let limits = Limits {
        max_connections_per_peer: 64,
        ..Limits::default()
    };
    let server = Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Sink>));
    let addr = server
        .local_addr()
        .strip_prefix("tcp://")
        .unwrap()
        .to_owned();
    let mut clients = Vec::new();
    for i in 0..CONNS {
        let mut s = raw(&addr).await;
        s.write_all(&put(0, 1)).await.unwrap();
        reply(&mut s).await;
        if i == 0 {
            // Warm up once (lazy statics, pools) before the baseline.
            s.write_all(&put(1, (1 << 20) - 64)).await.unwrap();
            reply(&mut s).await;
        }
        clients.push(s);
    }
    let big = put(2, (1 << 20) - 64);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = live();
    for s in &mut clients[1..] {
        s.write_all(&big).await.unwrap();
        reply(s).await;
    }
    // Everyone is idle now; give the server's tasks time to settle.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut held = live() - baseline;
    while tokio::time::Instant::now() < end && held > 2 * MIB {
        tokio::time::sleep(Duration::from_millis(20)).await;
        held = live() - baseline;
    }
    println!(
        "{} idle connections after one ~1 MiB frame each: live heap +{held} bytes, counted {}",
        CONNS - 1,
        server.buffered_bytes()
    );
    assert!(
        held <= 2 * MIB,
        "{held} bytes kept by {} idle connections (about {} per connection)",
        CONNS - 1,
        held / (CONNS as isize - 1)
    );
    drop(clients);
}
