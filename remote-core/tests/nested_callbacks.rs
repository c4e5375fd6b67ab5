//! Calls that nest through callbacks: the server's handler calls the
//! client back, and the client's callback calls the server again before
//! it answers. The nested call must start even when the connection's
//! share is full of handlers waiting for those callbacks (at the defaults
//! 8 fill it before the first reply), or every call waits for the others
//! until its deadline (found by a red-team pass; each of our calls to the
//! peer now lends the room of one handler, `driver/share.rs`).

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use raw::eventually;
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle};

#[remote]
pub trait Back {
    /// The client's callback: calls the server's `visit(.., levels - 1)`
    /// before it answers.
    async fn back(&self, levels: u32) -> Result<u32, Error>;
}

#[remote]
pub trait Front {
    /// Counts one and returns the count at `levels` 0; else calls
    /// `back(levels)` on `cb`. `pad` only makes the call longer.
    async fn visit(&self, cb: Remote<dyn Back>, levels: u32, pad: String) -> Result<u32, Error>;
}

#[derive(Default)]
struct Served {
    counted: AtomicU32,
}

#[remote]
impl Front for Served {
    async fn visit(&self, cb: Remote<dyn Back>, levels: u32, _pad: String) -> Result<u32, Error> {
        if levels == 0 {
            return Ok(self.counted.fetch_add(1, Ordering::AcqRel) + 1);
        }
        cb.back(levels).await
    }
}

/// The client's callback, holding the server's root to call it back, and
/// the padding its calls carry.
struct Caller(Arc<OnceLock<Remote<dyn Front>>>, usize);

#[remote]
impl Back for Caller {
    async fn back(&self, levels: u32) -> Result<u32, Error> {
        let front = self.0.get().expect("root set before any call").clone();
        let cb = Remote::new(Arc::new(Caller(self.0.clone(), self.1)) as Arc<dyn Back>);
        front.visit(cb, levels - 1, "x".repeat(self.1)).await
    }
}

async fn server(root: Arc<Served>) -> ServerHandle {
    Server::builder()
        // Forty clients of one address.
        .limits(Limits {
            max_connections_per_peer: 64,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(root.clone() as Arc<dyn Front>))
}

/// `calls` calls at once on a fresh connection, each nesting `levels`
/// deep (a call of the client's, then `levels` callbacks each calling
/// the server again), each call carrying `pad` bytes more.
async fn nest(calls: usize, levels: u32, pad: usize) {
    nest_from(1, calls, levels, pad).await;
}

/// [`nest`] on `clients` fresh connections at once.
async fn nest_from(clients: usize, calls: usize, levels: u32, pad: usize) {
    let root = Arc::new(Served::default());
    let s = server(root.clone()).await;
    // A deadline short enough that a deadlock fails the test rather than
    // hanging it, long enough for a loaded machine.
    let limits = Limits {
        default_deadline: Duration::from_secs(20),
        ..Limits::default()
    };
    let mut conns = Vec::new();
    for _ in 0..clients {
        let c = ConnectionBuilder::new()
            .limits(limits.clone())
            .connect(s.local_addr())
            .await
            .unwrap();
        conns.push(c);
    }
    // Every client's calls at once.
    let mut visits = Vec::new();
    for c in &conns {
        let front_cell = Arc::new(OnceLock::new());
        let front = c.root::<dyn Front>();
        front_cell.set(front.clone()).ok().unwrap();
        visits.extend((0..calls).map(|_| {
            let cb = Remote::new(Arc::new(Caller(front_cell.clone(), pad)) as Arc<dyn Back>);
            let front = front.clone();
            tokio::spawn(async move { front.visit(cb, levels, "x".repeat(pad)).await })
        }));
    }
    let mut got = Vec::new();
    for v in visits {
        got.push(v.await.unwrap().expect("a nested call was answered"));
    }
    got.sort_unstable();
    // Every nested call ran once, each counted once.
    let all = (clients * calls) as u32;
    assert_eq!(got, (1..=all).collect::<Vec<_>>());
    assert_eq!(root.counted.load(Ordering::Acquire), all);
    for c in conns {
        c.close();
    }
    assert!(
        eventually(|| s.buffered_bytes() == 0 && s.connections() == 0).await,
        "{} bytes still counted",
        s.buffered_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_nesting_through_callbacks_on_a_fresh_connection_are_answered() {
    // Past the 8 handlers a fresh connection's share holds.
    nest(32, 1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_start_when_the_calls_set_aside_fill_their_room() {
    // 24 calls of 2 KB: past the 8 the share holds, the 16 KiB the reader
    // sets aside is full, so it stops reading; the calls back to the
    // client, once written, let the first set aside start.
    nest(24, 1, 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_nesting_three_deep_are_answered_up_to_the_calls_in_flight() {
    // Each holds three of the server's 128 calls in flight, and two of
    // the client's.
    nest(42, 2, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_clients_nesting_at_once_before_their_first_replies_are_answered() {
    // Every client's calls at once, each connection's share counting a
    // full frame (1 MiB) per handler before its first reply: whatever
    // bounds the sum of the shares must lend the nested calls their room
    // (when every running handler's reply was promised in the budget, 40
    // such clients waited for one another until their deadlines, found
    // by a red-team pass; SECURITY.md).
    nest_from(40, 8, 1, 0).await;
}
