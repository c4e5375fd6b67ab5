//! Handlers that call back to their caller keep being answered while the
//! caller's next calls wait for room (`driver/input/defer.rs`): at the
//! defaults, a connection's share holds 8 handlers before its first reply,
//! and the 9th call used to stop the reader in front of the replies those
//! 8 were waiting for, so every call ran into its deadline (found by a
//! red-team pass). Calls set aside keep their order, and what they count
//! in the budget is given back.

#[path = "support/raw.rs"]
mod raw;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raw::eventually;
use remote_core::{remote, Connection, Error, Remote, Server, ServerHandle};

#[remote]
pub trait Item {
    async fn get(&self) -> Result<u32, Error>;
}

#[remote]
pub trait Visit {
    /// Waits `wait_ms`, then sums `get()` of each item (calls back to the
    /// caller for its own items).
    async fn visit(&self, items: Vec<Remote<dyn Item>>, wait_ms: u64) -> Result<u32, Error>;
    /// Records `n`.
    async fn push(&self, n: u32) -> Result<(), Error>;
}

struct One;

#[remote]
impl Item for One {
    async fn get(&self) -> Result<u32, Error> {
        Ok(1)
    }
}

#[derive(Default)]
struct Visitor {
    pushed: Mutex<Vec<u32>>,
}

#[remote]
impl Visit for Visitor {
    async fn visit(&self, items: Vec<Remote<dyn Item>>, wait_ms: u64) -> Result<u32, Error> {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let mut sum = 0;
        for i in &items[..items.len().min(2)] {
            sum += i.get().await?;
        }
        Ok(sum)
    }
    async fn push(&self, n: u32) -> Result<(), Error> {
        self.pushed.lock().unwrap().push(n);
        Ok(())
    }
}

async fn server(root: Arc<Visitor>) -> ServerHandle {
    Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(root.clone() as Arc<dyn Visit>))
}

/// `calls` calls at once on one connection, each passing `refs` of the
/// caller's objects and called back on (up to) two of them.
async fn visit_at_once(c: &Connection, calls: usize, refs: usize) -> Vec<Result<u32, Error>> {
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let root = c.root::<dyn Visit>();
        let items: Vec<Remote<dyn Item>> = (0..refs)
            .map(|_| Remote::new(Arc::new(One) as Arc<dyn Item>))
            .collect();
        tasks.push(tokio::spawn(async move { root.visit(items, 50).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_handlers_call_back_are_all_answered() {
    let s = server(Arc::default()).await;
    let c = Connection::connect(s.local_addr()).await.unwrap();
    for r in visit_at_once(&c, 32, 1).await {
        assert_eq!(r.unwrap(), 1);
    }
    // With 300 references each, a call counts as heavy (PROTOCOL.md §9).
    for r in visit_at_once(&c, 12, 300).await {
        assert_eq!(r.unwrap(), 2);
    }
    // Everything counted for them is given back (a count left behind
    // would outlive the connection).
    c.close();
    assert!(
        eventually(|| s.buffered_bytes() == 0 && s.connections() == 0).await,
        "{} bytes still counted",
        s.buffered_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_set_aside_keep_their_order() {
    let root = Arc::new(Visitor::default());
    let s = server(root.clone()).await;
    let c = Connection::connect(s.local_addr()).await.unwrap();
    let r = c.root::<dyn Visit>();
    // On a fresh connection, 16 handlers that call back (8 fill the share
    // before the first reply, the rest are set aside), and behind them,
    // sent after them in this order, 100 calls set aside behind those.
    let visits: Vec<_> = (0..16)
        .map(|_| r.visit(vec![Remote::new(Arc::new(One) as Arc<dyn Item>)], 20))
        .collect();
    let pushes: Vec<_> = (0..100).map(|n| r.push(n)).collect();
    let (visits, pushes) = tokio::join!(
        futures_util::future::join_all(visits),
        futures_util::future::join_all(pushes)
    );
    for v in visits {
        assert_eq!(v.unwrap(), 1);
    }
    for p in pushes {
        p.unwrap();
    }
    assert_eq!(*root.pushed.lock().unwrap(), (0..100).collect::<Vec<_>>());
    c.close();
    assert!(
        eventually(|| s.buffered_bytes() == 0 && s.connections() == 0).await,
        "{} bytes still counted",
        s.buffered_bytes()
    );
}
