//! A peer flooding invalidating writes against server-side memoisation:
//! what the memo cache keeps per invalidation is bounded (one record per
//! invalidated object and method, at most `memo_max_entries`), so the
//! server's memory does not grow with the number of writes, and memoised
//! reads keep being served. One test per binary: [`counting::live`]
//! counts the whole process.

#[path = "support/counting.rs"]
mod counting;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};

/// Prices; `shop` hands out another object with its own.
#[remote]
pub trait Pricing {
    /// The price of `item`.
    #[remote(memoize(ttl = "1h"))]
    async fn quote(&self, item: String) -> Result<u64, Error>;
    /// Sets the price of `item`.
    #[remote(invalidates(quote))]
    async fn set(&self, item: String, price: u64) -> Result<(), Error>;
    /// Another shop.
    async fn shop(&self) -> Result<Remote<dyn Pricing>, Error>;
}

#[derive(Default)]
struct Shop {
    prices: Mutex<HashMap<String, u64>>,
    runs: AtomicUsize,
}

#[remote]
impl Pricing for Shop {
    async fn quote(&self, item: String) -> Result<u64, Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(self.prices.lock().unwrap().get(&item).copied().unwrap_or(1))
    }
    async fn set(&self, item: String, price: u64) -> Result<(), Error> {
        self.prices.lock().unwrap().insert(item, price);
        Ok(())
    }
    async fn shop(&self) -> Result<Remote<dyn Pricing>, Error> {
        Ok(Remote::new(Arc::new(Shop::default()) as Arc<dyn Pricing>))
    }
}

#[tokio::test]
async fn a_flood_of_invalidating_writes_does_not_grow_the_memo_cache() {
    let shop = Arc::new(Shop::default());
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(Remote::new(shop.clone() as Arc<dyn Pricing>)),
    )
    .await
    .unwrap();
    let root = client.root::<dyn Pricing>();
    let other = root.shop().await.unwrap();
    // Something memoised, so invalidations have entries to consider.
    for item in ["tea", "coffee"] {
        root.quote(item.into()).await.unwrap();
    }
    // Warm up every path once, then measure.
    for i in 0..100 {
        other.set("tea".into(), i).await.unwrap();
    }
    let before = counting::live();
    const WRITES: u64 = 20_000;
    for i in 0..WRITES {
        other.set("tea".into(), i).await.unwrap();
    }
    let grown = counting::live() - before;
    // Before the fix each write left a moka predicate (~200 bytes) until
    // a scan of the whole cache ran: about 4 MB here.
    assert!(
        grown < 256 << 10,
        "{grown} bytes held after {WRITES} invalidating writes"
    );
    // The root's entries were not touched by the other object's writes.
    assert_eq!(root.quote("tea".into()).await.unwrap(), 1);
    assert_eq!(shop.runs.load(Ordering::SeqCst), 2, "served from the memo");
    // And its own write still invalidates.
    root.set("tea".into(), 5).await.unwrap();
    assert_eq!(root.quote("tea".into()).await.unwrap(), 5);
}
