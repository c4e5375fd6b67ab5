//! A reply that waits for room to be decoded again (`heavy_reply::retried`)
//! waits outside the heavy calls' line, and no longer than its call's
//! deadline. Found by a review: a handler holding its own heavy arguments'
//! count asked a callback whose reply's types needed more than the budget
//! had beside them; the reply could never fit while the handler ran, yet
//! waited first in the line, holding back every byte given back, until
//! the deadline, and every other heavy call waited behind it. And its wait
//! counted a whole timeout from the reply's arrival: a callback bounded by
//! 2 s whose reply came at 1.8 s ran on to 3.8 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote};

#[remote]
pub trait Rows {
    async fn opt(&self, n: u32) -> Result<Vec<Option<[[u64; 32]; 2]>>, Error>;
    /// The same, answered after `ms` milliseconds.
    async fn slow(&self, n: u32, ms: u64) -> Result<Vec<Option<[[u64; 32]; 2]>>, Error>;
}

struct RowsImpl;

#[remote]
impl Rows for RowsImpl {
    async fn opt(&self, n: u32) -> Result<Vec<Option<[[u64; 32]; 2]>>, Error> {
        Ok(vec![None; n as usize])
    }
    async fn slow(&self, n: u32, ms: u64) -> Result<Vec<Option<[[u64; 32]; 2]>>, Error> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(vec![None; n as usize])
    }
}

#[remote]
pub trait Svc {
    /// Holds `blob` (its count) while it asks `dir` for `n` rows.
    async fn take(
        &self,
        blob: Vec<Option<[u64; 32]>>,
        dir: Remote<dyn Rows>,
        n: u32,
    ) -> Result<u64, Error>;
    /// As `take`, its callback (answered after `ms`) bounded by `timeout_ms`;
    /// how long the callback took, in milliseconds, whatever its outcome.
    async fn bounded(
        &self,
        blob: Vec<Option<[u64; 32]>>,
        dir: Remote<dyn Rows>,
        n: u32,
        ms: u64,
        timeout_ms: u64,
    ) -> Result<u64, Error>;
    /// Only heavy arguments.
    async fn just(&self, blob: Vec<Option<[u64; 32]>>) -> Result<u64, Error>;
}

struct SvcImpl;

#[remote]
impl Svc for SvcImpl {
    async fn take(
        &self,
        blob: Vec<Option<[u64; 32]>>,
        dir: Remote<dyn Rows>,
        n: u32,
    ) -> Result<u64, Error> {
        let t = Instant::now();
        let r = dir.opt(n).await;
        println!(
            "callback took {:?}: {:?}",
            t.elapsed(),
            r.as_ref().map(|v| v.len()).map_err(|e| e.to_string())
        );
        Ok(blob.len() as u64 + r?.len() as u64)
    }
    async fn bounded(
        &self,
        blob: Vec<Option<[u64; 32]>>,
        dir: Remote<dyn Rows>,
        n: u32,
        ms: u64,
        timeout_ms: u64,
    ) -> Result<u64, Error> {
        let t = Instant::now();
        let r = remote_core::with_timeout(Duration::from_millis(timeout_ms), dir.slow(n, ms)).await;
        println!(
            "bounded callback: {:?} after {:?}",
            r.as_ref().map(|v| v.len()).map_err(|e| e.to_string()),
            t.elapsed()
        );
        drop(blob);
        Ok(t.elapsed().as_millis() as u64)
    }
    async fn just(&self, blob: Vec<Option<[u64; 32]>>) -> Result<u64, Error> {
        Ok(blob.len() as u64)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_cannot_fit_beside_its_handlers_own_arguments_holds_up_nobody() {
    let server = ConnectionBuilder::new()
        .limits(Limits {
            memory_budget: 4 << 20,
            ..Limits::default()
        })
        .serve(Remote::new(Arc::new(SvcImpl) as Arc<dyn Svc>));
    let (client, _server) = Connection::pair(ConnectionBuilder::new(), server)
        .await
        .unwrap();
    let svc = client.root::<dyn Svc>();
    // One reply first: until then, each handler's reply is estimated at
    // `max_frame_len` in the budget (`share.rs`), and 1 MiB more does not
    // fit beside the arguments below.
    assert_eq!(svc.just(vec![]).await.unwrap(), 0);
    let rows = Remote::new(Arc::new(RowsImpl) as Arc<dyn Rows>);
    // ~3.45 MB of the 4 MiB budget held by the handler's arguments; the
    // reply's types want ~2.4 MB more (never beside them), though each
    // alone fits the seven eighths a wait in line may have. It waits for
    // room to its deadline (only its handler could give it), outside the
    // heavy calls' line.
    let first = {
        let svc = svc.clone();
        tokio::spawn(remote_core::with_timeout(
            Duration::from_secs(8),
            async move { svc.take(vec![None; 6_000], rows, 3_000).await },
        ))
    };
    // A bystander's call (about 290 KB by its types) fits beside the
    // handler's arguments (3.45 MB of the 4.19): it is answered while the
    // reply still waits. (First in the line, the reply held back every
    // byte given back, and the bystander's decode found no room.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let by = svc.just(vec![None; 500]).await;
    assert_eq!(by.unwrap(), 500);
    assert!(!first.is_finished(), "the reply waits on, to its deadline");
    let r = first.await.unwrap();
    let e = r.expect_err("the reply never had room");
    assert!(
        e.to_string().contains("memory_budget") || e.is_deadline(),
        "{e}"
    );
}

/// A call's wait for room for its reply starts a whole new timeout when
/// the reply arrives (`deadline::after(Instant::now(), budget)` in
/// `CallFuture::poll`): a callback bounded by `with_timeout(2 s)` whose
/// reply arrived at 1.8 s and found no room ran on to ~3.8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waiting_for_room_keeps_its_calls_deadline() {
    let server = ConnectionBuilder::new()
        .limits(Limits {
            memory_budget: 4 << 20,
            ..Limits::default()
        })
        .serve(Remote::new(Arc::new(SvcImpl) as Arc<dyn Svc>));
    let (client, _server) = Connection::pair(ConnectionBuilder::new(), server)
        .await
        .unwrap();
    let svc = client.root::<dyn Svc>();
    let rows = Remote::new(Arc::new(RowsImpl) as Arc<dyn Rows>);
    let took = remote_core::with_timeout(
        Duration::from_secs(30),
        svc.bounded(vec![None; 6_000], rows, 3_000, 1_800, 2_000),
    )
    .await
    .unwrap();
    // About 2 s with the call's own deadline; 3.8 s with a timeout counted
    // afresh from the reply.
    assert!(
        took < 3_000,
        "a callback bounded by a 2 s deadline ran for {took} ms"
    );
}
