//! Independent attack review (issue 8 follow-up): server-wide slots one
//! peer address can take from everybody else while staying inside every
//! per-connection and per-peer limit.

#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use raw::eventually;
use remote_core::proto::{encode, CallId, ObjectId, Reader};
use remote_core::{remote, BoxFuture, Connection, Error, Limits, Remote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATIENCE: Duration = Duration::from_secs(60);

#[remote]
pub trait Gate {
    /// Blocks (a blocking method) until the test opens the gate.
    fn wait_gate(&self) -> Result<(), Error>;
    /// A fresh object: the caller then holds a reference.
    async fn make(&self) -> Result<Remote<dyn Gate>, Error>;
}

#[derive(Default)]
struct Stats {
    started: AtomicUsize,
    gate: Mutex<bool>,
    opened: Condvar,
}

struct Impl(Arc<Stats>);

#[remote]
impl Gate for Impl {
    fn wait_gate(&self) -> Result<(), Error> {
        self.0.started.fetch_add(1, SeqCst);
        let open = self.0.gate.lock().unwrap();
        let _open = self
            .0
            .opened
            .wait_timeout_while(open, PATIENCE, |o| !*o)
            .unwrap();
        Ok(())
    }
    async fn make(&self) -> Result<Remote<dyn Gate>, Error> {
        Ok(Remote::new(Arc::new(Impl(self.0.clone())) as Arc<dyn Gate>))
    }
}

/// With the default limits, 8 connections from one address (a quarter of
/// `max_connections_per_peer`) × `max_blocking_calls` = 64 fill every
/// server blocking slot: any other client's blocking call then waits for
/// its deadline for as long as the attacker's closures run. Fixed by
/// `max_blocking_calls_per_peer`: the address gets that many, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_address_cannot_hold_every_server_blocking_slot() {
    let stats = Arc::new(Stats::default());
    let s2 = stats.clone();
    let limits = Limits::default();
    let server = serving::tcp(limits.clone(), move |_| {
        Remote::new(Arc::new(Impl(s2.clone())) as Arc<dyn Gate>)
    })
    .await;
    let conns = limits.max_server_blocking_calls / limits.max_blocking_calls;
    let mut clients = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..conns + 1 {
        let c = Connection::connect(server.local_addr()).await.unwrap();
        let g = c.root::<dyn Gate>();
        for _ in 0..limits.max_blocking_calls {
            let call: BoxFuture<'static, Result<(), Error>> =
                g.handle().unwrap().call("wait_gate", ());
            calls.push(tokio::spawn(remote_core::with_timeout(PATIENCE, call)));
        }
        clients.push(c);
    }
    let per_peer = limits.max_blocking_calls_per_peer;
    assert!(eventually(|| stats.started.load(SeqCst) >= per_peer).await);
    // Let a wrongly refused slot show (the absence of an event).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = stats.started.load(SeqCst);
    println!(
        "one address, {} connections: {started} of {} server blocking slots",
        conns + 1,
        limits.max_server_blocking_calls
    );
    {
        *stats.gate.lock().unwrap() = true;
        stats.opened.notify_all();
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert!(
        started < limits.max_server_blocking_calls,
        "one address held all {started} server blocking slots"
    );
    assert_eq!(
        started, per_peer,
        "max_blocking_calls_per_peer slots, no more"
    );
}

/// Issue 8 item 17: idle anonymous connections must not hold connection
/// slots. A connection that holds a reference is exempt from the idle
/// timeouts, and any server that hands out an object (a stream from
/// `iter`, a made object) gives one away for one call: the slot is then
/// held for as long as the attacker likes, keepalive not negotiated. Now
/// an unauthenticated connection's references keep it open only while it
/// has traffic within `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_unauthenticated_connection_holding_a_free_reference_is_closed() {
    let stats = Arc::new(Stats::default());
    let s2 = stats.clone();
    let limits = Limits {
        unauthenticated_idle_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let server = serving::tcp(limits, move |_| {
        Remote::new(Arc::new(Impl(s2.clone())) as Arc<dyn Gate>)
    })
    .await;
    let mut s = raw::raw(&server).await;
    let mut f = encode::begin(16);
    encode::call_head(&mut f, CallId(0), ObjectId(0), "make", 10_000);
    f.push(0x90);
    encode::finish(&mut f);
    s.write_all(&f).await.unwrap();
    // Read until the end of the stream: the hello, the reply holding the
    // reference, then (with the fix) a goodbye naming the idle timeout.
    let mut frames = Vec::new();
    let read = async {
        let mut len = [0u8; 4];
        while s.read_exact(&mut len).await.is_ok() {
            let mut p = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut p).await.is_err() {
                break;
            }
            frames.push(p);
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .is_ok();
    let kinds: Vec<u64> = frames
        .iter()
        .map(|p| {
            let mut r = Reader::new(p);
            r.array_len().unwrap();
            r.uint().unwrap()
        })
        .collect();
    println!("frames received: kinds {kinds:?}; closed within 10 s: {closed}");
    assert!(kinds.contains(&2), "the reference was handed out");
    assert_eq!(
        kinds.last(),
        Some(&6),
        "told why (a goodbye) before the close"
    );
    assert!(
        closed,
        "an anonymous connection holding one free reference outlived 20 × its idle timeout"
    );
}
