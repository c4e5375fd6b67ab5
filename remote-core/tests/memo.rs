//! Server-side memoisation (`#[remote(memoize(..))]`): a second call from
//! another connection to the same object does not run the handler; an
//! invalidation (a marked write, or the explicit handle) makes the next
//! call run it; errors are not kept; distinct objects never share; entries
//! expire on tokio's clock; memory stays under the bounds.

#[path = "support/serving.rs"]
mod serving;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote, Server};

/// Prices, expensive to compute.
#[remote]
pub trait Pricing {
    /// The price of `item`.
    #[remote(memoize(ttl = "1h"))]
    async fn quote(&self, item: String) -> Result<u64, Error>;
    /// Always fails.
    #[remote(memoize(ttl = "1h"))]
    async fn broken(&self, item: String) -> Result<u64, Error>;
    /// Sets the price of `item`.
    #[remote(invalidates(quote))]
    async fn set(&self, item: String, price: u64) -> Result<(), Error>;
    /// Another shop, with its own prices.
    async fn shop(&self, name: String) -> Result<Remote<dyn Pricing>, Error>;
}

#[derive(Default)]
struct Shop {
    prices: Mutex<HashMap<String, u64>>,
    /// Handler runs of `quote` and `broken`.
    runs: AtomicUsize,
    shops: Mutex<HashMap<String, Arc<dyn Pricing>>>,
}

#[remote]
impl Pricing for Shop {
    async fn quote(&self, item: String) -> Result<u64, Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(self.prices.lock().unwrap().get(&item).copied().unwrap_or(1))
    }
    async fn broken(&self, item: String) -> Result<u64, Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err(Error::Unauthenticated(format!("no price for {item}")))
    }
    async fn set(&self, item: String, price: u64) -> Result<(), Error> {
        self.prices.lock().unwrap().insert(item, price);
        Ok(())
    }
    async fn shop(&self, name: String) -> Result<Remote<dyn Pricing>, Error> {
        Ok(serving::named(&self.shops, name, || {
            Arc::new(Shop::default())
        }))
    }
}

fn runs(shop: &Shop) -> usize {
    shop.runs.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_second_call_from_another_connection_does_not_run_the_handler() {
    let shop = Arc::new(Shop::default());
    let root: Arc<dyn Pricing> = shop.clone();
    let (handle, a, b) = serving::two_clients(Limits::default(), root.clone()).await;
    let (pa, pb) = (a.root::<dyn Pricing>(), b.root::<dyn Pricing>());
    assert_eq!(pa.quote("tea".into()).await.unwrap(), 1);
    assert_eq!(pb.quote("tea".into()).await.unwrap(), 1);
    assert_eq!(runs(&shop), 1, "B's call was answered from the memo");
    let s = handle.memo_stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1), "{s:?}");
    assert!(s.bytes > 0);
    // Other arguments are another key.
    assert_eq!(pb.quote("coffee".into()).await.unwrap(), 1);
    assert_eq!(runs(&shop), 2);

    // A marked write through A invalidates the entry for every connection.
    pa.set("tea".into(), 7).await.unwrap();
    assert_eq!(pb.quote("tea".into()).await.unwrap(), 7);
    assert_eq!(runs(&shop), 3, "the write made B's next call run");
    assert_eq!(pa.quote("tea".into()).await.unwrap(), 7);
    assert_eq!(runs(&shop), 3);

    // A write the server makes itself, through the explicit handle.
    shop.prices.lock().unwrap().insert("tea".into(), 9);
    assert_eq!(pb.quote("tea".into()).await.unwrap(), 7, "still memoised");
    remote_core::cache::invalidate(&root, &["quote"]).await;
    assert_eq!(pb.quote("tea".into()).await.unwrap(), 9);
    assert_eq!(runs(&shop), 4);
    // Every invalidation in the process reaches every memo cache (tests
    // run in parallel here), so at least these two.
    assert!(handle.memo_stats().invalidations >= 2);
    handle.shutdown(Duration::from_secs(5)).await;
}

/// A client connected in memory to a connection serving `root`.
async fn client(root: &Arc<dyn Pricing>, limits: Limits) -> (Remote<dyn Pricing>, Connection) {
    let (c, s) = serving::in_memory(Remote::new(root.clone()), limits).await;
    (c.root::<dyn Pricing>(), s)
}

#[tokio::test]
async fn errors_are_not_memoised() {
    let shop = Arc::new(Shop::default());
    let (p, server) = client(&(shop.clone() as Arc<dyn Pricing>), Limits::default()).await;
    for _ in 0..2 {
        let e = p.broken("tea".into()).await.unwrap_err();
        assert!(e.to_string().contains("no price for tea"), "{e}");
    }
    assert_eq!(runs(&shop), 2);
    assert_eq!(server.memo_stats().entries, 0);
}

#[tokio::test]
async fn distinct_objects_never_share_an_entry() {
    let shop = Arc::new(Shop::default());
    let (p, _server) = client(&(shop.clone() as Arc<dyn Pricing>), Limits::default()).await;
    let (north, south) = (
        p.shop("north".into()).await.unwrap(),
        p.shop("south".into()).await.unwrap(),
    );
    north.set("tea".into(), 2).await.unwrap();
    south.set("tea".into(), 3).await.unwrap();
    for _ in 0..2 {
        assert_eq!(north.quote("tea".into()).await.unwrap(), 2);
        assert_eq!(south.quote("tea".into()).await.unwrap(), 3);
    }
    // Invalidating north's quotes leaves south's.
    north.set("tea".into(), 4).await.unwrap();
    assert_eq!(north.quote("tea".into()).await.unwrap(), 4);
    assert_eq!(south.quote("tea".into()).await.unwrap(), 3);
    let s = _server.memo_stats();
    assert_eq!((s.misses, s.hits), (3, 3), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_their_ttl_on_tokios_clock() {
    let shop = Arc::new(Shop::default());
    let (p, _server) = client(&(shop.clone() as Arc<dyn Pricing>), Limits::default()).await;
    p.quote("tea".into()).await.unwrap();
    p.quote("tea".into()).await.unwrap();
    assert_eq!(runs(&shop), 1);
    tokio::time::advance(Duration::from_secs(3601)).await;
    p.quote("tea".into()).await.unwrap();
    assert_eq!(runs(&shop), 2);
}

#[tokio::test]
async fn memory_stays_under_the_bounds_under_a_flood_of_distinct_keys() {
    let shop = Arc::new(Shop::default());
    let limits = Limits {
        memo_max_entries: 50,
        memo_max_bytes: 4096,
        ..Limits::default()
    };
    let (p, server) = client(&(shop.clone() as Arc<dyn Pricing>), limits).await;
    for i in 0..500 {
        p.quote(format!("item-{i}-{}", "x".repeat(i % 40)))
            .await
            .unwrap();
        if i % 50 == 0 {
            let s = server.memo_stats();
            assert!(s.entries <= 50 && s.bytes <= 4096, "{s:?}");
        }
    }
    let s = server.memo_stats();
    assert!(s.entries <= 50 && s.bytes <= 4096, "{s:?}");
    assert!(s.evictions > 0, "{s:?}");
    assert_eq!(s.misses, 500);
}

/// One account object shared by every user: its reply depends on who asks.
#[remote]
pub trait Wallet {
    /// The caller's own balance.
    #[remote(memoize(ttl = "1h"))]
    async fn mine(&self) -> Result<String, Error>;
}

#[derive(Default)]
struct Bank {
    runs: AtomicUsize,
}

#[remote]
impl Wallet for Bank {
    async fn mine(&self) -> Result<String, Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let user = remote_core::Peer::current().and_then(|p| p.user().map(str::to_owned));
        Ok(format!(
            "balance of {}",
            user.as_deref().unwrap_or("nobody")
        ))
    }
}

#[tokio::test]
async fn a_memoised_reply_never_reaches_another_user() {
    use remote_core::auth::Key;
    let key = |user: &str| Key::new(format!("{user}'s key, 32 bytes or more.."));
    let bank = Arc::new(Bank::default());
    let root: Arc<dyn Wallet> = bank.clone();
    let handle = Server::builder()
        .authenticate(move |user: &str| {
            (user == "alice" || user == "bob").then(|| (key(user), user.to_owned()))
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(root.clone()));
    let addr = handle.local_addr().to_owned();
    let login = |user: &str| ConnectionBuilder::new().credentials(user, key(user));
    let alice = login("alice").connect(&addr).await.unwrap();
    let bob = login("bob").connect(&addr).await.unwrap();
    let alice2 = login("alice").connect(&addr).await.unwrap();
    let mine = |c: &Connection| {
        let w = c.root::<dyn Wallet>();
        async move { w.mine().await.unwrap() }
    };
    assert_eq!(mine(&alice).await, "balance of alice");
    assert_eq!(mine(&bob).await, "balance of bob", "not alice's reply");
    assert_eq!(bank.runs.load(Ordering::SeqCst), 2);
    // The same user on another connection still shares the entry.
    assert_eq!(mine(&alice2).await, "balance of alice");
    assert_eq!(mine(&bob).await, "balance of bob");
    assert_eq!(
        bank.runs.load(Ordering::SeqCst),
        2,
        "both answered from the memo"
    );
    handle.shutdown(Duration::from_secs(5)).await;
}
