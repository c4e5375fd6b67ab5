//! Counts of heavy replies (and cached hits) that an honest handler no
//! longer holds are let go, and do not fill the memory budget for every
//! other caller (a review of the holding in `held.rs`):
//!
//! - a call made on a blocking thread (a blocking handler, work handed to
//!   `blocking::spawn_blocking`) lets go of the replies decoded before it
//!   started, as a handler's task does (its counts were captured as a
//!   stream batch's and held again with nothing let go: 300 calls of
//!   49 KB replies, each dropped, held 14.7 MB counted);
//! - a cached hit lets go of what was decoded before it (held with
//!   nothing let go, a handler reading a cached value in a loop piled up
//!   one count per hit until the budget was full, its hits then went to
//!   the peer, and other connections' replies waited for room);
//! - work handed to `spawn_blocking` and not awaited does not keep its
//!   handler's counts after the handler returns.
//!
//! The controls (an async handler moving on) passed before too.

#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote, ServerHandle};

#[remote]
pub trait Hub {
    /// A blocking method: asks `dir` for its names `rounds` times, dropping
    /// each batch, then waits for `go_on` holding nothing.
    fn rounds_sync(&self, dir: Remote<dyn SyncNames>, rounds: u32) -> Result<u64, Error>;
    /// `rounds_sync`, async.
    async fn rounds(&self, dir: Remote<dyn Names>, rounds: u32) -> Result<u64, Error>;
    /// `rounds_sync`'s calls made by work handed to
    /// `blocking::spawn_blocking`, then waits in the handler.
    async fn rounds_handed(&self, dir: Remote<dyn SyncNames>, rounds: u32) -> Result<u64, Error>;
    /// Reads `dir`'s cached names `hits` times, dropping each, then waits
    /// for `go_on` holding nothing.
    async fn hits(&self, dir: Remote<dyn CachedNames>, hits: u32) -> Result<u64, Error>;
    /// Asks `dir` for its names once: how many.
    async fn once(&self, dir: Remote<dyn Names>) -> Result<u64, Error>;
    /// Asks `dir` for its names, drops them, hands a slow job to
    /// `blocking::spawn_blocking` without awaiting it, and returns.
    async fn then_detached(&self, dir: Remote<dyn Names>) -> Result<u64, Error>;
}

#[remote]
pub trait Names {
    async fn names(&self) -> Result<Vec<String>, Error>;
}

#[remote]
pub trait SyncNames {
    fn names(&self) -> Result<Vec<String>, Error>;
}

#[remote]
pub trait CachedNames {
    #[remote(cache(ttl = "60s"))]
    async fn names(&self) -> Result<Vec<String>, Error>;
}

#[derive(Default)]
struct HubImpl {
    holding: AtomicUsize,
    /// Hits `hits` got so far.
    hits_done: AtomicUsize,
    go_on: AtomicBool,
}

impl HubImpl {
    fn wait_sync(&self) {
        self.holding.fetch_add(1, SeqCst);
        while !self.go_on.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    async fn wait(&self) {
        self.holding.fetch_add(1, SeqCst);
        while !self.go_on.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[remote]
impl Hub for HubImpl {
    fn rounds_sync(&self, dir: Remote<dyn SyncNames>, rounds: u32) -> Result<u64, Error> {
        let mut n = 0;
        for _ in 0..rounds {
            n += dir.names()?.len() as u64;
        }
        self.wait_sync();
        Ok(n)
    }
    async fn rounds(&self, dir: Remote<dyn Names>, rounds: u32) -> Result<u64, Error> {
        let mut n = 0;
        for _ in 0..rounds {
            n += dir.names().await?.len() as u64;
        }
        self.wait().await;
        Ok(n)
    }
    async fn rounds_handed(&self, dir: Remote<dyn SyncNames>, rounds: u32) -> Result<u64, Error> {
        let n = remote_core::blocking::spawn_blocking(move || {
            let mut n = 0;
            for _ in 0..rounds {
                n += dir.names()?.len() as u64;
            }
            Ok::<_, Error>(n)
        })
        .await
        .unwrap()?;
        self.wait().await;
        Ok(n)
    }
    async fn hits(&self, dir: Remote<dyn CachedNames>, hits: u32) -> Result<u64, Error> {
        let mut n = 0;
        for _ in 0..hits {
            n += dir.names().await?.len() as u64;
            self.hits_done.fetch_add(1, SeqCst);
        }
        self.wait().await;
        Ok(n)
    }
    async fn once(&self, dir: Remote<dyn Names>) -> Result<u64, Error> {
        Ok(dir.names().await?.len() as u64)
    }
    async fn then_detached(&self, dir: Remote<dyn Names>) -> Result<u64, Error> {
        let n = dir.names().await?.len() as u64;
        drop(remote_core::blocking::spawn_blocking(|| {
            // Until the test has looked (at most a minute).
            let end = Instant::now() + Duration::from_secs(60);
            while !DETACHED_GO_ON.load(SeqCst) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
        Ok(n)
    }
}

/// Lets `then_detached`'s job end.
static DETACHED_GO_ON: AtomicBool = AtomicBool::new(false);

async fn server(budget: usize) -> (ServerHandle, Arc<HubImpl>) {
    let hub = Arc::new(HubImpl::default());
    let served = hub.clone();
    let limits = Limits {
        memory_budget: budget,
        ..Limits::default()
    };
    let server = serving::tcp(limits, move |_| Remote::new(served.clone() as Arc<dyn Hub>)).await;
    (server, hub)
}

/// 100,000 empty names: 4.9 MB counted.
struct Many(u32, AtomicUsize);

#[remote]
impl Names for Many {
    async fn names(&self) -> Result<Vec<String>, Error> {
        self.1.fetch_add(1, SeqCst);
        Ok(vec![String::new(); self.0 as usize])
    }
}

#[remote]
impl SyncNames for Many {
    fn names(&self) -> Result<Vec<String>, Error> {
        self.1.fetch_add(1, SeqCst);
        Ok(vec![String::new(); self.0 as usize])
    }
}

/// 1,000 names of 1,000 bytes (1 MB; 1.05 MB counted per hit).
struct Long(AtomicUsize);

#[remote]
impl CachedNames for Long {
    async fn names(&self) -> Result<Vec<String>, Error> {
        self.0.fetch_add(1, SeqCst);
        Ok(vec!["x".repeat(1000); 1000])
    }
}

const NAMES: u32 = 100_000;
/// What one reply of `NAMES` empty names counts (its bytes and 48 per
/// item), about.
const ONE: usize = NAMES as usize * 49;
const ROUNDS: u32 = 5;

/// Runs `call` (a handler asking `ROUNDS` times for 4.9 MB and then
/// waiting, holding nothing), and returns what the server counts while it
/// waits.
async fn counted_while_waiting<F>(below: usize, call: impl FnOnce(Remote<dyn Hub>) -> F) -> usize
where
    F: std::future::Future<Output = Result<u64, Error>> + Send + 'static,
{
    counted_while_waiting_for(ROUNDS as u64 * NAMES as u64, below, call).await
}

/// [`counted_while_waiting`] for a handler getting `total` names in all:
/// what is counted once it is below `below` (what was let go is given
/// back by then), or after 60 s.
async fn counted_while_waiting_for<F>(
    total: u64,
    below: usize,
    call: impl FnOnce(Remote<dyn Hub>) -> F,
) -> usize
where
    F: std::future::Future<Output = Result<u64, Error>> + Send + 'static,
{
    let (server, hub) = server(32 << 20).await;
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let task = tokio::spawn(call(client.root::<dyn Hub>()));
    assert!(raw::eventually(|| hub.holding.load(SeqCst) == 1).await);
    raw::eventually(|| server.buffered_bytes() < below).await;
    let counted = server.buffered_bytes();
    hub.go_on.store(true, SeqCst);
    assert_eq!(raw::bounded(task).await.unwrap().unwrap(), total);
    counted
}

/// Replies of 1,000 empty names: 49 KB counted, so counted whole on
/// arrival (at most `SMALL_FRAME`, 64 KiB) and decoded without waiting
/// for room.
const SMALL: u32 = 1000;
const SMALL_ONE: usize = SMALL as usize * 49;
const SMALL_ROUNDS: u32 = 300;

/// Control: an async handler asking 300 times for 49 KB, dropping each,
/// holds one reply's count at most while it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_handler_moving_on_from_small_heavy_replies_holds_one_count() {
    let counted = counted_while_waiting_for(
        SMALL_ROUNDS as u64 * SMALL as u64,
        4 * SMALL_ONE,
        |hub| async move {
            let dir: Remote<dyn Names> = Remote::new(Arc::new(Many(SMALL, AtomicUsize::new(0))));
            hub.rounds(dir, SMALL_ROUNDS).await
        },
    )
    .await;
    assert!(counted < 4 * SMALL_ONE, "{counted} bytes counted");
}

/// A blocking handler asking 300 times for 49 KB, dropping each: each
/// reply is decoded at once inside `for_blocking_thread`'s `captured`
/// scope, so its count comes back as a stream batch's would and is held
/// again with `since: None` (`back_on_blocking_thread`), letting nothing
/// go: every reply stays counted for a handler holding nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_moving_on_from_small_heavy_replies_holds_one_count() {
    let counted = counted_while_waiting_for(
        SMALL_ROUNDS as u64 * SMALL as u64,
        4 * SMALL_ONE,
        |hub| async move {
            let dir: Remote<dyn SyncNames> =
                Remote::new(Arc::new(Many(SMALL, AtomicUsize::new(0))));
            remote_core::blocking::spawn_blocking(move || hub.rounds_sync(dir, SMALL_ROUNDS))
                .await
                .unwrap()
        },
    )
    .await;
    assert!(
        counted < 4 * SMALL_ONE,
        "{counted} bytes counted for a blocking handler holding nothing (one reply: {SMALL_ONE})"
    );
}

/// The same calls made by work handed to `blocking::spawn_blocking`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_handed_to_a_blocking_thread_moving_on_from_small_heavy_replies_holds_one_count() {
    let counted = counted_while_waiting_for(
        SMALL_ROUNDS as u64 * SMALL as u64,
        4 * SMALL_ONE,
        |hub| async move {
            let dir: Remote<dyn SyncNames> =
                Remote::new(Arc::new(Many(SMALL, AtomicUsize::new(0))));
            hub.rounds_handed(dir, SMALL_ROUNDS).await
        },
    )
    .await;
    assert!(
        counted < 4 * SMALL_ONE,
        "{counted} bytes counted for a handler holding nothing (one reply: {SMALL_ONE})"
    );
}

/// Control: an async handler asking 5 times for 4.9 MB, dropping each,
/// holds one reply's count at most while it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_handler_moving_on_holds_one_count() {
    let counted = counted_while_waiting(2 * ONE, |hub| async move {
        let dir: Remote<dyn Names> = Remote::new(Arc::new(Many(NAMES, AtomicUsize::new(0))));
        hub.rounds(dir, ROUNDS).await
    })
    .await;
    assert!(counted < 2 * ONE, "{counted} bytes counted");
}

/// Control (passes): a blocking handler asking 5 times for 4.9 MB,
/// dropping each, holds one count: a reply that heavy always waits for
/// room (`heavy_reply::weighed`), and the wait lets go (`held::let_go`).
/// Compare the replies counted whole on arrival, below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_moving_on_holds_one_count() {
    let counted = counted_while_waiting(2 * ONE, |hub| async move {
        let dir: Remote<dyn SyncNames> = Remote::new(Arc::new(Many(NAMES, AtomicUsize::new(0))));
        remote_core::blocking::spawn_blocking(move || hub.rounds_sync(dir, ROUNDS))
            .await
            .unwrap()
    })
    .await;
    assert!(
        counted < 2 * ONE,
        "{counted} bytes counted for a blocking handler holding nothing (one reply: {ONE})"
    );
}

/// Control (passes): the same calls made by work handed to
/// `blocking::spawn_blocking`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_handed_to_a_blocking_thread_moving_on_holds_one_count() {
    let counted = counted_while_waiting(2 * ONE, |hub| async move {
        let dir: Remote<dyn SyncNames> = Remote::new(Arc::new(Many(NAMES, AtomicUsize::new(0))));
        hub.rounds_handed(dir, ROUNDS).await
    })
    .await;
    assert!(
        counted < 2 * ONE,
        "{counted} bytes counted for a handler holding nothing (one reply: {ONE})"
    );
}

/// A handler reads a cached 1 MB value 40 times, dropping each: every hit
/// stays counted (they let nothing go), the 16 MiB budget fills, and the
/// hits that find no room are asked of the peer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_hits_read_in_a_loop_hold_one_count() {
    const HITS: u32 = 40;
    let (server, hub) = server(16 << 20).await;
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let long = Arc::new(Long(AtomicUsize::new(0)));
    let dir: Remote<dyn CachedNames> = Remote::new(long.clone());
    let root = client.root::<dyn Hub>();
    let start = Instant::now();
    let task = tokio::spawn(async move { root.hits(dir, HITS).await });
    let waiting = raw::eventually(|| hub.holding.load(SeqCst) == 1 || task.is_finished()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let counted = server.buffered_bytes();
    let asked = long.0.load(SeqCst);
    let done = hub.hits_done.load(SeqCst);
    hub.go_on.store(true, SeqCst);
    assert!(
        waiting,
        "the handler neither failed nor finished its hits in 60 s: {done} hits done, the peer \
         asked {asked} times, {counted} bytes counted"
    );
    let r = raw::bounded(task).await.unwrap();
    let took = start.elapsed();
    assert!(
        matches!(r, Ok(n) if n == HITS as u64 * 1000) && counted < 3 << 20 && asked == 1,
        "{r:?} after {took:?}, {done} of {HITS} hits done; a handler holding nothing: \
         {counted} bytes counted; the peer was asked {asked} times for a value cached for 60 s"
    );
}

/// A handler that dropped its 4.9 MB reply and returned, leaving a slow
/// job on a blocking thread: its count leaves the budget when the handler
/// returns, not when the job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_blocking_job_does_not_keep_its_handlers_counts() {
    let (server, _) = server(32 << 20).await;
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let dir: Remote<dyn Names> = Remote::new(Arc::new(Many(NAMES, AtomicUsize::new(0))));
    let hub = client.root::<dyn Hub>();
    assert_eq!(
        raw::bounded(hub.then_detached(dir)).await.unwrap(),
        NAMES as u64
    );
    // The job runs on until the test says so: counted until then, the
    // count never goes.
    raw::eventually(|| server.buffered_bytes() < ONE / 2).await;
    let counted = server.buffered_bytes();
    DETACHED_GO_ON.store(true, SeqCst);
    assert!(
        counted < ONE / 2,
        "{counted} bytes still counted while the handler's detached job runs, after it returned"
    );
}

/// While one handler's piled-up hits fill the server's 16 MiB budget (and
/// it waits for a reply its own counts keep out), an honest client on
/// another connection asks for one 4.9 MB reply: it waits for room until
/// its 3 s bound, though nothing holds any value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_piled_up_by_one_handler_do_not_stall_other_connections() {
    let (server, hub) = server(16 << 20).await;
    let looping = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let dir: Remote<dyn CachedNames> = Remote::new(Arc::new(Long(AtomicUsize::new(0))));
    let root = looping.root::<dyn Hub>();
    let task = tokio::spawn(async move { root.hits(dir, 40).await });
    // Until its hits stop coming (the budget full of them).
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let done = hub.hits_done.load(SeqCst);
        if done == last || task.is_finished() {
            break;
        }
        last = done;
    }
    let other = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let names: Remote<dyn Names> = Remote::new(Arc::new(Many(NAMES, AtomicUsize::new(0))));
    let start = Instant::now();
    let r = remote_core::with_timeout(Duration::from_secs(3), other.root::<dyn Hub>().once(names))
        .await;
    let took = start.elapsed();
    let counted = server.buffered_bytes();
    hub.go_on.store(true, SeqCst);
    task.abort();
    assert!(
        matches!(r, Ok(n) if n == NAMES as u64),
        "{r:?} after {took:?}, another connection's handler stuck after {last} hits with \
         {counted} bytes counted"
    );
}
