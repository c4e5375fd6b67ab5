//! The memo (`memo_max_bytes`) and the client cache (`cache_max_bytes`)
//! hold no more than their bounds after a burst of large results: their
//! moka stores evict for size only in housekeeping, which ran every so many
//! operations, so right after a burst (and for as long as nothing touched
//! them) they held two to three times their bounds (found by a red-team
//! pass: a 16 MiB memo held 47 MiB, a connection's 8 MiB cache 23 MiB).
//! Heap counted by a counting allocator; the tests run one at a time.

#[path = "support/counting.rs"]
mod counting;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote};

#[remote]
pub trait Pages {
    /// A page of `len` bytes, memoised by the server.
    #[remote(memoize(ttl = "1h"))]
    async fn page(&self, k: u32, len: u32) -> Result<String, Error>;
    /// The same, cached by the client.
    #[remote(cache(ttl = "1h"))]
    async fn cached(&self, k: u32, len: u32) -> Result<String, Error>;
}

struct Site;

/// Calls of `Site::cached` served (the tests run one at a time).
static CACHED_SERVED: AtomicUsize = AtomicUsize::new(0);

#[remote]
impl Pages for Site {
    async fn page(&self, k: u32, len: u32) -> Result<String, Error> {
        let mut page = k.to_string();
        page.push_str(&"p".repeat(len as usize - page.len()));
        Ok(page)
    }
    async fn cached(&self, k: u32, len: u32) -> Result<String, Error> {
        CACHED_SERVED.fetch_add(1, Ordering::SeqCst);
        self.page(k, len).await
    }
}

const MIB: isize = 1 << 20;

/// A client and a server of `Site` under `limits`, and the client's root.
async fn site(limits: Limits) -> ((Connection, Connection), Remote<dyn Pages>) {
    let pair = Connection::pair(
        ConnectionBuilder::new().limits(limits.clone()),
        ConnectionBuilder::new()
            .limits(limits)
            .serve(Remote::new(Arc::new(Site) as Arc<dyn Pages>)),
    )
    .await
    .unwrap();
    let root = pair.0.root::<dyn Pages>();
    (pair, root)
}

#[test]
fn a_burst_of_memoised_replies_leaves_the_memo_at_its_bound() {
    counting::measured(async {
        let limits = Limits {
            memo_max_bytes: 8 << 20,
            ..Limits::default()
        };
        let (_pair, root) = site(limits).await;
        // Warm the connection's buffers with a reply of the size.
        root.cached(u32::MAX, 900 << 10).await.unwrap();
        let before = counting::live();
        for k in 0..64 {
            assert_eq!(root.page(k, 900 << 10).await.unwrap().len(), 900 << 10);
        }
        let held = counting::live() - before;
        // 64 replies of 900 KiB: 56 MiB unless evicted.
        assert!(held < 8 * MIB + 6 * MIB, "the memo holds {held} bytes");
    });
}

#[test]
fn a_burst_of_cached_results_leaves_the_client_cache_at_its_bound() {
    counting::measured(async {
        let limits = Limits {
            cache_max_bytes: 8 << 20,
            ..Limits::default()
        };
        let (_pair, root) = site(limits).await;
        root.page(u32::MAX, 400 << 10).await.unwrap();
        let before = counting::live();
        for k in 0..100 {
            assert_eq!(root.cached(k, 400 << 10).await.unwrap().len(), 400 << 10);
        }
        let held = counting::live() - before;
        // 100 results of 400 KiB: 39 MiB unless evicted.
        assert!(held < 8 * MIB + 6 * MIB, "the cache holds {held} bytes");
    });
}

/// Calls a client's [`Pages`] it is passed, from the server.
#[remote]
pub trait Visitor {
    /// Reads `n` cached pages of 400 KiB from `site`, from page `from` on,
    /// twice (while the server holds `site`, its cache entries are found).
    async fn visit(&self, site: Remote<dyn Pages>, from: u32, n: u32) -> Result<(), Error>;
}

struct Crawler;

#[remote]
impl Visitor for Crawler {
    async fn visit(&self, site: Remote<dyn Pages>, from: u32, n: u32) -> Result<(), Error> {
        for _ in 0..2 {
            for k in from..from + n {
                assert_eq!(site.cached(k, 400 << 10).await?.len(), 400 << 10);
            }
        }
        Ok(())
    }
}

/// Where a server calls cached methods on objects its clients pass it,
/// its connections' client caches together keep within
/// `server_cache_max_bytes`, not only each within `cache_max_bytes` (a
/// red-team pass: eight connections held 133 MiB; 1,024 could hold 8 GiB).
#[test]
fn a_servers_client_caches_keep_within_one_bound_together() {
    counting::measured(async {
        let server = remote_core::Server::builder()
            .limits(Limits {
                cache_max_bytes: 8 << 20,
                server_cache_max_bytes: 12 << 20,
                ..Limits::default()
            })
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(|_| Remote::new(Arc::new(Crawler) as Arc<dyn Visitor>));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let c = Connection::connect(server.local_addr()).await.unwrap();
            let site = Remote::new(Arc::new(Site) as Arc<dyn Pages>);
            let visitor = c.root::<dyn Visitor>();
            // Warm the connection's buffers with a page of the size.
            visitor.visit(site.clone(), u32::MAX - 1, 1).await.unwrap();
            clients.push((c, site, visitor));
        }
        let before = counting::live();
        for (_, site, visitor) in &clients {
            // 20 pages of 400 KiB: 8 MiB for each connection's cache.
            visitor.visit(site.clone(), 0, 20).await.unwrap();
        }
        let held = counting::live() - before;
        // Eight caches of 8 MiB each: 64 MiB without the shared bound.
        assert!(held < 12 * MIB + 6 * MIB, "the caches hold {held} bytes");
        // Closed connections give their caches' bytes back to the bound:
        // a new client's pages are cached again (each page of the visit,
        // read twice, is served once).
        for (c, _, _) in &clients {
            c.close();
        }
        drop(clients);
        assert!(eventually(|| server.connections() == 0).await);
        let c = Connection::connect(server.local_addr()).await.unwrap();
        let site = Remote::new(Arc::new(Site) as Arc<dyn Pages>);
        let visitor = c.root::<dyn Visitor>();
        let served = CACHED_SERVED.load(Ordering::SeqCst);
        visitor.visit(site, 0, 3).await.unwrap();
        assert_eq!(CACHED_SERVED.load(Ordering::SeqCst) - served, 3);
        server.shutdown(std::time::Duration::from_secs(5)).await;
    });
}

/// Polls `cond` for at most 60 s; whether it held.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cond()
}
