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
    let (client, _server) = rt.block_on(async {
        Connection::pair(
            ConnectionBuilder::new().limits(Limits::default()),
            ConnectionBuilder::new().serve(Remote::new(Arc::new(Inc) as Arc<dyn Lookup>)),
        )
        .await
        .unwrap()
    });
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
