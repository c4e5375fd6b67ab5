//! The server's memory under abuse, measured with a counting global
//! allocator: connections that never read, and connections that announce
//! large frames and stall, keep the live heap within the memory budget
//! while another client is served, and the heap returns near its baseline
//! once they leave. One test only: the allocator counts the whole process.

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
use raw::{eventually, raw};
use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{remote, Connection, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Big {
    async fn blob(&self, len: u32) -> Result<Bytes, Error>;
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
}

struct Impl;

#[remote]
impl Big for Impl {
    async fn blob(&self, len: u32) -> Result<Bytes, Error> {
        Ok(Bytes::from(vec![7u8; len as usize]))
    }
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error> {
        Ok(a + b)
    }
}

const BUDGET: usize = 8 << 20;
const MIB: isize = 1 << 20;
/// The small output buffers a live connection keeps (the bystander's).
const IDLE_BUFFERS: usize = 64 << 10;

/// Serves the bystander while sampling the heap; returns the peak growth.
async fn served_while_measuring(good: &Remote<dyn Big>, baseline: isize) -> isize {
    let mut peak = 0;
    for i in 0..50 {
        assert_eq!(good.add(i, 1).await.unwrap(), i + 1);
        peak = peak.max(live() - baseline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_connections_stay_within_the_memory_budget_and_memory_returns() {
    let limits = Limits {
        memory_budget: BUDGET,
        // Nobody is closed for stalling during the measurement.
        write_stall_timeout: Duration::from_secs(3600),
        // Every abuser comes from 127.0.0.1.
        max_connections_per_peer: 64,
        ..Limits::default()
    };
    let server = serving::tcp(limits, |_| Remote::new(Arc::new(Impl) as Arc<dyn Big>)).await;
    let good_conn = Connection::connect(server.local_addr()).await.unwrap();
    let good = good_conn.root::<dyn Big>();
    assert_eq!(good.add(1, 1).await.unwrap(), 2);
    let baseline = live();

    // 1. Eight connections that never read ask for 25 MiB of replies each
    //    (100 calls of 256 KiB: 200 MiB in all, 25 × the budget).
    let mut calls = Vec::new();
    for i in 0..100u32 {
        let mut f = encode::begin(32);
        encode::call_head(&mut f, CallId(i), ObjectId(0), "blob", 600_000);
        f.extend_from_slice(&[0x91, 0xce]);
        f.extend_from_slice(&(256u32 << 10).to_be_bytes());
        encode::finish(&mut f);
        calls.extend_from_slice(&f);
    }
    let mut abusers = Vec::new();
    for _ in 0..8 {
        let mut s = raw(&server).await;
        s.write_all(&calls).await.unwrap();
        abusers.push(s);
    }
    assert!(
        eventually(|| server.buffered_bytes() >= BUDGET).await,
        "the abusers fill the budget ({} bytes)",
        server.buffered_bytes()
    );
    let peak = served_while_measuring(&good, baseline).await;
    // Output buffers counted: the budget, plus for each connection the
    // reply of a handler already running and the buffer growth for it.
    let counted = server.buffered_bytes() as isize;
    let over = 8 * (2 * (257 << 10) + (1 << 20));
    assert!(counted <= BUDGET as isize + over, "{counted}");
    let bound = BUDGET as isize + over + 4 * MIB;
    println!("non-readers: live heap +{peak} bytes (bound {bound}), counted {counted}");
    assert!(peak <= bound, "live heap grew {peak} bytes, bound {bound}");
    drop(abusers);
    assert!(
        eventually(|| server.connections() == 1 && server.buffered_bytes() <= IDLE_BUFFERS).await,
        "{} connections, {} bytes held after the abusers left",
        server.connections(),
        server.buffered_bytes()
    );

    // 2. 32 connections announce frames of 1 MiB and send half of each,
    //    then stall: only what fits the budget is reserved and read.
    let mut partial = ((1u32 << 20) - 16).to_be_bytes().to_vec();
    partial.extend(std::iter::repeat_n(0u8, 512 << 10));
    let mut stallers = Vec::new();
    for _ in 0..32 {
        let mut s = raw(&server).await;
        s.write_all(&partial).await.unwrap();
        stallers.push(s);
    }
    assert!(
        eventually(|| server.buffered_bytes() + (1 << 20) > BUDGET).await,
        "the stallers fill the budget ({} bytes)",
        server.buffered_bytes()
    );
    let peak = served_while_measuring(&good, baseline).await;
    let counted = server.buffered_bytes();
    assert!(counted <= BUDGET + IDLE_BUFFERS, "{counted}");
    let bound = BUDGET as isize + 4 * MIB;
    println!("stallers: live heap +{peak} bytes (bound {bound}), counted {counted}");
    assert!(peak <= bound, "live heap grew {peak} bytes, bound {bound}");
    drop(stallers);

    // 3. Everything is given back.
    assert!(
        eventually(|| server.connections() == 1 && server.buffered_bytes() <= IDLE_BUFFERS).await,
        "{} connections, {} bytes held after the stallers left",
        server.connections(),
        server.buffered_bytes()
    );
    assert!(
        eventually(|| live() - baseline <= MIB).await,
        "live heap still {} bytes over its baseline",
        live() - baseline
    );
    assert_eq!(good.add(2, 2).await.unwrap(), 4);
}
