//! Client-side caching (CACHING.md): a cache hit against the same call made
//! remotely, and what a miss adds to a remote call.
//!
//! Client and server in this process over an in-memory pair on one
//! current-thread runtime, as `call/memory` in `rpc.rs`. Groups:
//!
//! - `cache/hit`: a cached method called again with the same arguments.
//! - `cache/remote`: the same method, uncached (a plain remote call).
//! - `cache/miss`: the cached method with new arguments every call (lookup,
//!   remote call, store; evictions once the cache is full).
//! - `memo/hit`: a `memoize`d method called again with the same arguments:
//!   still a round trip, but the server neither decodes the arguments nor
//!   runs the handler.
//! - `invalidate/alone`: an `invalidates(..)` write on an object no other
//!   connection holds (the pushed invalidation has nobody to wait for).
//! - `invalidate/one_holder`: the same write while a second client holds
//!   the object: the reply waits for that client's acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote};

/// A lookup, cached and not.
#[remote]
pub trait Lookup {
    /// `x + 1`, cached.
    #[remote(cache(ttl = "1h"))]
    async fn cached(&self, x: u64) -> Result<u64, Error>;
    /// `x + 1`, never cached.
    async fn plain(&self, x: u64) -> Result<u64, Error>;
    /// `x + 1`, memoised by the server.
    #[remote(memoize(ttl = "1h"))]
    async fn memoized(&self, x: u64) -> Result<u64, Error>;
    /// A write that invalidates `cached` and `memoized`.
    #[remote(invalidates(cached, memoized))]
    async fn write(&self) -> Result<(), Error>;
}

struct Inc;

#[remote]
impl Lookup for Inc {
    async fn cached(&self, x: u64) -> Result<u64, Error> {
        Ok(x + 1)
    }
    async fn plain(&self, x: u64) -> Result<u64, Error> {
        Ok(x + 1)
    }
    async fn memoized(&self, x: u64) -> Result<u64, Error> {
        Ok(x + 1)
    }
    async fn write(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args()
}

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let obj: Arc<dyn Lookup> = Arc::new(Inc);
    let pair = || {
        rt.block_on(async {
            Connection::pair(
                ConnectionBuilder::new().limits(Limits::default()),
                ConnectionBuilder::new().serve(Remote::new(obj.clone())),
            )
            .await
            .unwrap()
        })
    };
    let (client, _server) = pair();
    let proxy = client.root::<dyn Lookup>();
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));
    rt.block_on(proxy.cached(7)).unwrap();
    g.bench_function("hit", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(proxy.cached(7).await.unwrap(), 8) })
    });
    g.bench_function("remote", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(proxy.plain(7).await.unwrap(), 8) })
    });
    let next = std::cell::Cell::new(1_000u64);
    g.bench_function("miss", |b| {
        b.to_async(&rt).iter(|| async {
            let x = next.get();
            next.set(x + 1);
            assert_eq!(proxy.cached(x).await.unwrap(), x + 1)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("memo");
    g.throughput(Throughput::Elements(1));
    rt.block_on(proxy.memoized(7)).unwrap();
    g.bench_function("hit", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(proxy.memoized(7).await.unwrap(), 8) })
    });
    g.finish();

    let mut g = c.benchmark_group("invalidate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("alone", |b| {
        b.to_async(&rt)
            .iter(|| async { proxy.write().await.unwrap() })
    });
    let (other, _other_server) = pair();
    g.bench_function("one_holder", |b| {
        b.to_async(&rt)
            .iter(|| async { proxy.write().await.unwrap() })
    });
    g.finish();
    drop(other);
    let s = client.cache_stats();
    eprintln!(
        "cache stats: hits {} misses {} evictions {} entries {} bytes {}",
        s.hits, s.misses, s.evictions, s.entries, s.bytes
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = cache
}
criterion_main!(benches);
