//! Independent attack review (issue 8 follow-up): what a connection keeps
//! after one large frame. The frame reader's buffer grows to the frame's
//! size while it is read (counted in the budget then); the question is
//! whether an idle connection keeps that allocation afterwards, outside
//! the budget. Measured with a counting global allocator (one test: the
//! allocator counts the whole process).

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use counting::live;
use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{remote, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

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

/// Server-side only: the clients are raw sockets, so the process's live
/// heap is the server's (and a few socket-sized test buffers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_keep_no_large_input_buffer() {
    let limits = Limits {
        max_connections_per_peer: 64,
        ..Limits::default()
    };
    let server = serving::tcp(limits, |_| Remote::new(Arc::new(Impl) as Arc<dyn Sink>)).await;
    let mut clients = Vec::new();
    for i in 0..CONNS {
        let mut s = raw::raw(&server).await;
        s.write_all(&put(0, 1)).await.unwrap();
        raw::next_of_kind(&mut s, raw::RETURN).await;
        if i == 0 {
            // Warm up once (lazy statics, pools) before the baseline.
            s.write_all(&put(1, (1 << 20) - 64)).await.unwrap();
            raw::next_of_kind(&mut s, raw::RETURN).await;
        }
        clients.push(s);
    }
    let big = put(2, (1 << 20) - 64);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = live();
    for s in &mut clients[1..] {
        s.write_all(&big).await.unwrap();
        raw::next_of_kind(s, raw::RETURN).await;
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
