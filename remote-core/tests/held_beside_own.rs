//! A heavy reply that cannot fit in the memory budget beside what its own
//! handler holds of replies to calls awaited with it fails at once with
//! `limit_exceeded`, rather than wait for its deadline for room only its
//! handler could give (a review of `held.rs`). The runtime cannot tell a
//! value the handler dropped from one it keeps (`join!(a, b)` against
//! `join!(a, async { b.await.len() })`), and counts every reply to calls
//! awaited together while the handler may hold them: with each reply
//! taking 4.9 MB of an 8 MiB budget, two awaited together are refused
//! even if the handler keeps only their lengths; with 16 MiB, both fit.

#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote, ServerHandle};

#[remote]
pub trait Hub {
    /// Asks `slow` for its names while, meanwhile, it asks `fast` for its
    /// names and keeps only their number; both numbers.
    async fn slow_and_fast(
        &self,
        slow: Remote<dyn Names>,
        fast: Remote<dyn Names>,
    ) -> Result<u64, Error>;
    /// Asks `dir` for its names `n` times, `width` calls at a time
    /// (`buffer_unordered`), keeping only how many came.
    async fn pipelined(&self, dir: Remote<dyn Names>, n: u32, width: u32) -> Result<u64, Error>;
}

#[remote]
pub trait Names {
    async fn names(&self) -> Result<Vec<String>, Error>;
}

struct HubImpl;

/// Bound on each handler's work: well above what it takes when nothing
/// waits for room.
const WITHIN: Duration = Duration::from_secs(5);

#[remote]
impl Hub for HubImpl {
    async fn slow_and_fast(
        &self,
        slow: Remote<dyn Names>,
        fast: Remote<dyn Names>,
    ) -> Result<u64, Error> {
        let work = async {
            let (a, b) = tokio::join!(slow.names(), async {
                // The fast names, dropped once counted.
                fast.names().await.map(|v| v.len())
            });
            Ok::<_, Error>(a?.len() as u64 + b? as u64)
        };
        remote_core::with_timeout(WITHIN, work).await
    }
    async fn pipelined(&self, dir: Remote<dyn Names>, n: u32, width: u32) -> Result<u64, Error> {
        let work = futures_util::stream::iter(0..n)
            .map(|_| dir.names())
            .buffer_unordered(width as usize)
            .try_fold(0u64, |sum, v| async move { Ok(sum + v.len() as u64) });
        remote_core::with_timeout(WITHIN, work).await
    }
}

/// Answers at once, or after `delay`.
struct Many(u32, Duration);

#[remote]
impl Names for Many {
    async fn names(&self) -> Result<Vec<String>, Error> {
        tokio::time::sleep(self.1).await;
        Ok(vec![String::new(); self.0 as usize])
    }
}

async fn server(budget: usize) -> ServerHandle {
    let limits = Limits {
        memory_budget: budget,
        ..Limits::default()
    };
    serving::tcp(limits, move |_| {
        Remote::new(Arc::new(HubImpl) as Arc<dyn Hub>)
    })
    .await
}

const NAMES: u32 = 100_000;

/// How `call` on a hub of a server with a `budget` ends, and in how long.
async fn ended_on<F, T>(
    budget: usize,
    call: impl FnOnce(Remote<dyn Hub>) -> F,
) -> (Result<T, Error>, Duration)
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    let server = server(budget).await;
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let hub = client.root::<dyn Hub>();
    let start = Instant::now();
    let r = raw::bounded(call(hub)).await;
    (r, start.elapsed())
}

fn refused_beside_its_handler<T: std::fmt::Debug>(r: &Result<T, Error>, took: Duration) {
    let text = format!("{r:?}");
    assert!(
        text.contains("limit_exceeded") || text.contains("LimitExceeded"),
        "{text}"
    );
    assert!(text.contains("its caller holds"), "{text}");
    // Long before the handler's 5 s bound: refused when it arrived.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

fn slow_and_fast(hub: Remote<dyn Hub>) -> impl std::future::Future<Output = Result<u64, Error>> {
    let slow: Remote<dyn Names> = Remote::new(Arc::new(Many(NAMES, Duration::from_millis(300))));
    let fast: Remote<dyn Names> = Remote::new(Arc::new(Many(NAMES, Duration::ZERO)));
    async move { hub.slow_and_fast(slow, fast).await }
}

fn pipelined(hub: Remote<dyn Hub>) -> impl std::future::Future<Output = Result<u64, Error>> {
    let dir: Remote<dyn Names> = Remote::new(Arc::new(Many(NAMES, Duration::ZERO)));
    async move { hub.pipelined(dir, 4, 2).await }
}

/// A handler awaits a slow callback while it asks a fast one for names
/// and keeps only their number: on 8 MiB the slow reply (started before
/// the fast one was decoded, so it cannot let it go) is refused at once;
/// on 16 MiB both are decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_beside_one_awaited_with_it_fits_or_is_refused_at_once() {
    let (r, took) = ended_on(8 << 20, slow_and_fast).await;
    refused_beside_its_handler(&r, took);
    let (r, took) = ended_on(16 << 20, slow_and_fast).await;
    assert!(
        matches!(r, Ok(n) if n == 2 * NAMES as u64),
        "{r:?} after {took:?}"
    );
}

/// A handler pipelines 4 calls, 2 at a time (`buffer_unordered(2)`),
/// keeping only how many names each returned: two replies may be held at
/// once, refused at once on 8 MiB, all decoded on 16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_heavy_replies_fits_two_at_a_time_or_is_refused_at_once() {
    let (r, took) = ended_on(8 << 20, pipelined).await;
    refused_beside_its_handler(&r, took);
    let (r, took) = ended_on(16 << 20, pipelined).await;
    assert!(
        matches!(r, Ok(n) if n == 4 * NAMES as u64),
        "{r:?} after {took:?}"
    );
}
