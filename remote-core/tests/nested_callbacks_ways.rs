//! Calls that nest through callbacks in other ways than
//! `nested_callbacks.rs`: the handler calls its caller back from a task
//! it spawns and joins, or from a blocking method, or the chain runs
//! through two connections (client A's call makes the server call client
//! B back, whose callback calls the server on its own connection). Each
//! must start past a full share as the plain nesting does: the loan of
//! room (PROTOCOL.md §9) comes from every call awaited from the peer.
//! Lending only for the calls a handler's own task makes left all three
//! waiting until their deadlines (found by a red-team pass).

#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use remote_core::{remote, Connection, ConnectionBuilder, Error, Interface, Limits, Remote};

/// A client of the server at `addr`, and its root in a cell for the
/// client's callbacks to call. Its calls have a deadline short enough
/// that a deadlock fails the test rather than hanging it, long enough for
/// a loaded machine.
async fn client<T: ?Sized + Interface>(addr: &str) -> (Connection, Arc<OnceLock<Remote<T>>>) {
    let c = ConnectionBuilder::new()
        .limits(Limits {
            default_deadline: Duration::from_secs(20),
            ..Limits::default()
        })
        .connect(addr)
        .await
        .unwrap();
    let cell = Arc::new(OnceLock::new());
    cell.set(c.root::<T>()).ok().unwrap();
    (c, cell)
}

#[remote]
pub trait Back {
    async fn back(&self, levels: u32) -> Result<u32, Error>;
    fn back_sync(&self, levels: u32) -> Result<u32, Error>;
}

#[remote]
pub trait Front {
    /// Calls `cb.back` from a task it spawns and joins.
    async fn visit_spawned(&self, cb: Remote<dyn Back>, levels: u32) -> Result<u32, Error>;
    /// A blocking method: calls `cb.back_sync` (the generated blocking proxy).
    fn visit_blocking(&self, cb: Remote<dyn Back>, levels: u32) -> Result<u32, Error>;
}

#[derive(Default)]
struct Served {
    counted: AtomicU32,
}

#[remote]
impl Front for Served {
    async fn visit_spawned(&self, cb: Remote<dyn Back>, levels: u32) -> Result<u32, Error> {
        if levels == 0 {
            return Ok(self.counted.fetch_add(1, Ordering::AcqRel) + 1);
        }
        tokio::spawn(async move { cb.back(levels).await })
            .await
            .unwrap()
    }
    fn visit_blocking(&self, cb: Remote<dyn Back>, levels: u32) -> Result<u32, Error> {
        if levels == 0 {
            return Ok(self.counted.fetch_add(1, Ordering::AcqRel) + 1);
        }
        cb.back_sync(levels)
    }
}

struct Caller(Arc<OnceLock<Remote<dyn Front>>>);

#[remote]
impl Back for Caller {
    async fn back(&self, levels: u32) -> Result<u32, Error> {
        let front = self.0.get().unwrap().clone();
        let cb = Remote::new(Arc::new(Caller(self.0.clone())) as Arc<dyn Back>);
        front.visit_spawned(cb, levels - 1).await
    }
    fn back_sync(&self, levels: u32) -> Result<u32, Error> {
        let front = self.0.get().unwrap().clone();
        let cb = Remote::new(Arc::new(Caller(self.0.clone())) as Arc<dyn Back>);
        front.visit_blocking(cb, levels - 1)
    }
}

/// `calls` calls at once on a fresh connection to a server with a
/// `budget`, each nesting once through a callback made from a spawned
/// task or, with `blocking`, from a blocking method.
async fn nest(budget: usize, calls: usize, blocking: bool) {
    let root = Arc::new(Served::default());
    let served = root.clone();
    let limits = Limits {
        memory_budget: budget,
        ..Limits::default()
    };
    let s = serving::tcp(limits, move |_| {
        Remote::new(served.clone() as Arc<dyn Front>)
    })
    .await;
    let (c, cell) = client::<dyn Front>(s.local_addr()).await;
    let front = cell.get().unwrap().clone();
    let visits: Vec<_> = (0..calls)
        .map(|_| {
            let cb = Remote::new(Arc::new(Caller(cell.clone())) as Arc<dyn Back>);
            let front = front.clone();
            tokio::spawn(async move {
                if blocking {
                    remote_core::blocking::spawn_blocking(move || front.visit_blocking(cb, 1))
                        .await
                        .unwrap()
                } else {
                    front.visit_spawned(cb, 1).await
                }
            })
        })
        .collect();
    let mut got = Vec::new();
    for v in visits {
        got.push(v.await.unwrap().expect("a nested call was answered"));
    }
    got.sort_unstable();
    assert_eq!(got, (1..=calls as u32).collect::<Vec<_>>());
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_made_from_a_spawned_task_nests() {
    // Past the 8 handlers a fresh connection's share holds.
    nest(64 << 20, 32, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_made_from_a_blocking_method_nests() {
    // 16 MiB: a share of 2 MiB, 2 handlers before the first reply.
    nest(16 << 20, 4, true).await;
}

#[remote]
pub trait Relay {
    async fn register(&self, who: u32, cb: Remote<dyn Back2>) -> Result<Bytes, Error>;
    /// At `levels` 0 counts; else calls back the callback of client
    /// `other` (another connection's peer).
    async fn hop(&self, other: u32, levels: u32) -> Result<u32, Error>;
}

#[remote]
pub trait Back2 {
    async fn back(&self, levels: u32) -> Result<u32, Error>;
}

#[derive(Default)]
struct RelayImpl {
    cbs: [OnceLock<Remote<dyn Back2>>; 2],
    counted: AtomicU32,
}

#[remote]
impl Relay for Arc<RelayImpl> {
    async fn register(&self, who: u32, cb: Remote<dyn Back2>) -> Result<Bytes, Error> {
        self.cbs[who as usize].set(cb).ok().unwrap();
        // A large reply: handlers are estimated at 900 KB, 9 to a share.
        Ok(Bytes::from(vec![0u8; 900_000]))
    }
    async fn hop(&self, other: u32, levels: u32) -> Result<u32, Error> {
        if levels == 0 {
            return Ok(self.counted.fetch_add(1, Ordering::AcqRel) + 1);
        }
        let cb = self.cbs[other as usize].get().unwrap().clone();
        cb.back(levels).await
    }
}

/// A client's callback: calls the server (on its own connection) again.
struct Hopper(Arc<OnceLock<Remote<dyn Relay>>>, u32);

#[remote]
impl Back2 for Hopper {
    async fn back(&self, levels: u32) -> Result<u32, Error> {
        let relay = self.0.get().unwrap().clone();
        relay.hop(1 - self.1, levels - 1).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_chaining_through_two_connections_nest() {
    let root = Arc::new(RelayImpl::default());
    let relay_impl = root.clone();
    let s = serving::tcp(Limits::default(), move |_| {
        Remote::new(Arc::new(relay_impl.clone()) as Arc<dyn Relay>)
    })
    .await;
    let mut relays = Vec::new();
    let mut conns = Vec::new();
    for who in 0..2u32 {
        let (c, cell) = client::<dyn Relay>(s.local_addr()).await;
        let relay = cell.get().unwrap().clone();
        let cb = Remote::new(Arc::new(Hopper(cell, who)) as Arc<dyn Back2>);
        relay.register(who, cb).await.unwrap();
        relays.push(relay);
        conns.push(c);
    }
    let mut hops = Vec::new();
    for who in 0..2u32 {
        for _ in 0..32 {
            let relay = relays[who as usize].clone();
            // Client `who`'s call: the server calls the other client back,
            // which calls the server on its own connection.
            hops.push(tokio::spawn(async move { relay.hop(1 - who, 1).await }));
        }
    }
    let mut got = Vec::new();
    for h in hops {
        got.push(h.await.unwrap().expect("a chained call was answered"));
    }
    got.sort_unstable();
    assert_eq!(got, (1..=64).collect::<Vec<_>>());
    assert_eq!(root.counted.load(Ordering::Acquire), 64);
    for c in conns {
        c.close();
    }
}
