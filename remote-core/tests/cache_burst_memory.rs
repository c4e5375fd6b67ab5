//! The memo (`memo_max_bytes`) and the client cache (`cache_max_bytes`)
//! hold no more than their bounds after a burst of large results: their
//! moka stores evict for size only in housekeeping, which ran every so many
//! operations, so right after a burst (and for as long as nothing touched
//! them) they held two to three times their bounds (found by a red-team
//! pass: a 16 MiB memo held 47 MiB, a connection's 8 MiB cache 23 MiB).
//! Heap counted by a counting allocator; the tests run one at a time.

#[path = "support/counting.rs"]
mod counting;

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

#[remote]
impl Pages for Site {
    async fn page(&self, k: u32, len: u32) -> Result<String, Error> {
        let mut page = k.to_string();
        page.push_str(&"p".repeat(len as usize - page.len()));
        Ok(page)
    }
    async fn cached(&self, k: u32, len: u32) -> Result<String, Error> {
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
