//! Independent attack review (issue 8 follow-up): output a peer can make
//! the server queue without the memory budget holding it back. Each test
//! plays a hostile raw-socket client against a real TCP server while a
//! well-behaved client is served, and watches the server's counted bytes.

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use remote_core::proto::{encode, encode_ping, CallId, ObjectId};
use remote_core::{remote, with_timeout, Connection, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Slow {
    /// `len` bytes, after `ms` milliseconds of (async) work.
    async fn blob(&self, len: u32, ms: u64) -> Result<Bytes, Error>;
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
    async fn echo(&self, data: Bytes) -> Result<Bytes, Error>;
}

struct Impl;

#[remote]
impl Slow for Impl {
    async fn blob(&self, len: u32, ms: u64) -> Result<Bytes, Error> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Bytes::from(vec![7u8; len as usize]))
    }
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error> {
        Ok(a + b)
    }
    async fn echo(&self, data: Bytes) -> Result<Bytes, Error> {
        Ok(data)
    }
}

const BUDGET: usize = 4 << 20;

async fn serve(limits: Limits) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Slow>))
}

fn limits() -> Limits {
    Limits {
        memory_budget: BUDGET,
        // The attacker would read a trickle to stay under any stall
        // timeout; a long one stands for that here.
        write_stall_timeout: Duration::from_secs(3600),
        max_connections_per_peer: 64,
        ..Limits::default()
    }
}

/// Samples `server.buffered_bytes()` until `done()` or 60 s; the peak.
async fn peak_until(server: &ServerHandle, mut done: impl FnMut() -> bool) -> usize {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut peak = 0;
    while tokio::time::Instant::now() < end && !done() {
        peak = peak.max(server.buffered_bytes());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    peak.max(server.buffered_bytes())
}

/// A peer that never reads floods pings: every pong is output queued for
/// it, and pings are read whatever the output queue holds, so without a
/// bound the queue grows with the flood (measured before the fix: 32 MiB
/// of pings left ~25-30 MiB of pongs queued against a 4 MiB budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_peer_that_never_reads_stays_within_the_budget() {
    let server = serve(limits()).await;
    let good_conn = Connection::connect(server.local_addr()).await.unwrap();
    let good = good_conn.root::<dyn Slow>();
    assert_eq!(good.add(1, 1).await.unwrap(), 2);

    let mut s = raw::raw_with(&server, vec!["keepalive"]).await;
    let mut batch = Vec::new();
    for t in 0..(1u32 << 16) {
        batch.extend_from_slice(&encode_ping(t));
    }
    // 64 batches of 64 Ki pings: 32 MiB of pings, then a goodbye, so the
    // server's close tells us it has handled every ping before it.
    let flood = tokio::spawn(async move {
        for _ in 0..64 {
            s.write_all(&batch).await.unwrap();
        }
        s.write_all(&encode::goodbye("done")).await.unwrap();
        s
    });
    let attacker_gone = {
        let server = &server;
        peak_until(server, || flood.is_finished() && server.connections() == 1)
    };
    let peak = attacker_gone.await;
    assert_eq!(server.connections(), 1, "the flood was handled to its end");
    println!("ping flood: peak counted {peak} bytes (budget {BUDGET})");
    // Without the bound the pongs fill the whole shared budget (it held
    // 4.4 MB of a 4 MiB budget) and the flood then stalls there for as
    // long as the attacker likes, holding large frames of everyone else.
    assert!(
        peak <= 64 << 10,
        "pongs queued for a peer that never reads: {peak} bytes counted, budget {BUDGET}"
    );
    assert_eq!(good.add(2, 3).await.unwrap(), 5);
}

/// Calls to a handler that awaits anything are all read before any reply
/// is queued: backpressure is checked only when the next call is read, so
/// one connection gets `max_calls_in_flight` replies queued whatever the
/// budget says, and N connections N times that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_to_a_slow_handler_stay_within_the_memory_budget() {
    let server = serve(limits()).await;
    let good_conn = Connection::connect(server.local_addr()).await.unwrap();
    let good = good_conn.root::<dyn Slow>();
    assert_eq!(good.add(1, 1).await.unwrap(), 2);

    // 4 connections × 100 calls of 256 KiB after 20 ms: 100 MiB of replies.
    let mut calls = Vec::new();
    for i in 0..100u32 {
        let mut f = encode::begin(32);
        encode::call_head(&mut f, CallId(i), ObjectId(0), "blob", 600_000);
        f.extend_from_slice(&[0x92, 0xce]);
        f.extend_from_slice(&(256u32 << 10).to_be_bytes());
        f.push(20);
        encode::finish(&mut f);
        calls.extend_from_slice(&f);
    }
    let mut abusers = Vec::new();
    for _ in 0..4 {
        let mut s = raw::raw_with(&server, vec![]).await;
        s.write_all(&calls).await.unwrap();
        abusers.push(s);
    }
    // The handlers finish within a second or so; give them ample time.
    let started = tokio::time::Instant::now();
    let peak = peak_until(&server, || started.elapsed() > Duration::from_secs(5)).await;
    println!("pipelined slow calls: peak counted {peak} bytes (budget {BUDGET})");
    assert_eq!(good.add(2, 3).await.unwrap(), 5);
    // One reply (and its buffer growth) per connection on top is what
    // PROTOCOL.md §9 says happens in practice.
    let slack = 4 * 2 * (257 << 10);
    assert!(
        peak <= BUDGET + slack,
        "{peak} bytes of replies queued for 4 non-reading peers, budget {BUDGET}"
    );
    drop(abusers);
}

/// One peer's connection that reads nothing (well under
/// `max_connections_per_peer` and `max_write_queue`) fills the shared
/// budget with the replies of fast calls; from then on every other
/// client's frame over 64 KiB waits for room that only the attacker can
/// give back, for as long as it keeps reading a trickle. Fixed by fair
/// shares (driver/share.rs): past half of the budget, a connection's
/// output is held to an eighth of it, so a bystander finds room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bystanders_large_call_is_served_while_one_peer_holds_the_budget() {
    let server = serve(limits()).await;
    let good_conn = Connection::connect(server.local_addr()).await.unwrap();
    let good = good_conn.root::<dyn Slow>();
    assert_eq!(good.add(1, 1).await.unwrap(), 2);

    // 100 fast calls of 256 KiB (25 MiB) on one connection that never reads.
    let mut calls = Vec::new();
    for i in 0..100u32 {
        let mut f = encode::begin(32);
        encode::call_head(&mut f, CallId(i), ObjectId(0), "blob", 600_000);
        f.extend_from_slice(&[0x92, 0xce]);
        f.extend_from_slice(&(256u32 << 10).to_be_bytes());
        f.push(0);
        encode::finish(&mut f);
        calls.extend_from_slice(&f);
    }
    let mut abuser = raw::raw_with(&server, vec![]).await;
    abuser.write_all(&calls).await.unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    // With nobody else needing it, one busy connection may use half of the
    // budget; past that it is held to its share (memory_budget / 8).
    while server.buffered_bytes() < BUDGET / 2 && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let held = server.buffered_bytes();
    println!("the abuser holds {held} bytes (budget {BUDGET})");
    assert!(held >= BUDGET / 2, "the abuser uses a large share");
    // Small calls still go through...
    assert_eq!(good.add(2, 3).await.unwrap(), 5);
    // ...but a 200 KiB argument waits for budget room.
    let data = Bytes::from(vec![1u8; 200 << 10]);
    let got = with_timeout(Duration::from_secs(20), good.echo(data.clone())).await;
    println!(
        "bystander's 200 KiB call while the budget is held: {:?}",
        got.as_ref().map(Bytes::len)
    );
    // And the bystander's connection reads nothing behind that frame.
    let after = with_timeout(Duration::from_secs(5), good.add(3, 4)).await;
    println!("bystander's next small call: {after:?}");
    assert_eq!(got.expect("served while the budget is held"), data);
    assert_eq!(after.unwrap(), 7);
    drop(abuser);
}
