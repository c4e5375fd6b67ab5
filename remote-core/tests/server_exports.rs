//! Objects a server exports are bounded on all its connections together
//! (`max_server_exports`), besides each connection's reserve of
//! `RESERVED_EXPORTS`: peers that each stay under `max_exports` cannot
//! together make the server hold more, a bystander still gets its first
//! references, and what is released or closed is given back.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use raw::eventually;
use remote_core::proto::RESERVED_EXPORTS;
use remote_core::{
    remote, Connection, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle,
};

#[remote]
pub trait Maker {
    /// `n` new objects.
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Maker>>, Error>;
    /// 7, from `obj` (a call back if it is the caller's).
    async fn seven(&self, obj: Remote<dyn Maker>) -> Result<u32, Error>;
}

/// Counts itself in `live` while it exists.
struct M(Arc<AtomicUsize>);

impl M {
    fn remote(live: &Arc<AtomicUsize>) -> Remote<dyn Maker> {
        live.fetch_add(1, SeqCst);
        Remote::new(Arc::new(M(live.clone())) as Arc<dyn Maker>)
    }
}

impl Drop for M {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

#[remote]
impl Maker for M {
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Maker>>, Error> {
        Ok((0..n).map(|_| M::remote(&self.0)).collect())
    }
    async fn seven(&self, _obj: Remote<dyn Maker>) -> Result<u32, Error> {
        Ok(7)
    }
}

const POOL: usize = 200;

fn limits() -> Limits {
    Limits {
        max_exports: 1_000,
        max_server_exports: POOL,
        ..Limits::default()
    }
}

async fn server(live: &Arc<AtomicUsize>) -> ServerHandle {
    let live = live.clone();
    Server::builder()
        .limits(limits())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| M::remote(&live))
}

/// Makes objects on `conn`'s root until one is refused: the proxies made,
/// and the refusal.
async fn make_until_refused(conn: &Connection, most: usize) -> (Vec<Remote<dyn Maker>>, Error) {
    let root = conn.root::<dyn Maker>();
    let mut held = Vec::new();
    for _ in 0..most {
        match root.many(1).await {
            Ok(objs) => held.extend(objs),
            Err(e) => return (held, e),
        }
    }
    panic!("{most} objects made, none refused");
}

fn assert_names_pool(e: &Error) {
    match e {
        Error::Remote(re) => {
            assert_eq!(re.kind, "limit_exceeded", "{re}");
            assert!(
                re.message.contains(&format!("max_server_exports = {POOL}")),
                "{}",
                re.message
            );
        }
        other => panic!("expected max_server_exports, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_share_one_bound_and_each_keeps_a_reserve() {
    let live = Arc::new(AtomicUsize::new(0));
    let s = server(&live).await;
    let exports = || s.stats().calls.exports;
    let a = Connection::connect(s.local_addr()).await.unwrap();
    let b = Connection::connect(s.local_addr()).await.unwrap();

    // One connection takes the whole pool, well under its `max_exports`.
    let (mut held_a, e) = make_until_refused(&a, 1_000).await;
    assert_names_pool(&e);
    assert_eq!(held_a.len(), POOL);
    // Another still gets its reserve, and no more.
    let (held_b, e) = make_until_refused(&b, 1_000).await;
    assert_names_pool(&e);
    assert_eq!(held_b.len(), RESERVED_EXPORTS);
    assert_eq!(exports(), POOL + RESERVED_EXPORTS);
    assert!(!a.is_closed() && !b.is_closed(), "refusals close nothing");

    // Released references make room for the others.
    held_a.truncate(POOL - 100);
    assert!(
        eventually(|| exports() == POOL - 100 + RESERVED_EXPORTS).await,
        "{} exported after the releases",
        exports()
    );
    let (more_b, e) = make_until_refused(&b, 1_000).await;
    assert_names_pool(&e);
    assert_eq!(
        more_b.len(),
        100 - RESERVED_EXPORTS,
        "up to the pool's limit"
    );

    // A connection that closes gives back everything it held.
    a.close();
    drop(held_a);
    assert!(
        eventually(|| exports() == 100).await,
        "{} exported after the close",
        exports()
    );
    let c = Connection::connect(s.local_addr()).await.unwrap();
    let (held_c, e) = make_until_refused(&c, 1_000).await;
    assert_names_pool(&e);
    assert_eq!(held_c.len(), POOL - 100);
    drop((held_b, more_b, held_c));
    assert!(
        eventually(|| exports() == 0).await,
        "{} exported",
        exports()
    );
}

#[tokio::test]
async fn exports_of_a_refused_reply_are_given_back() {
    let live = Arc::new(AtomicUsize::new(0));
    let s = server(&live).await;
    let a = Connection::connect(s.local_addr()).await.unwrap();
    let root = a.root::<dyn Maker>();
    let mut held = root.many(POOL as u32 - 1).await.unwrap();
    // Room for one more: a reply of two exports the first, is refused at
    // the second, and gives the first back. Many in a row leave the count
    // where it was.
    for _ in 0..3 * POOL {
        assert_names_pool(&root.many(2).await.unwrap_err());
    }
    assert_eq!(s.stats().calls.exports, POOL - 1);
    // Objects made for the refused replies are dropped, not kept.
    assert!(
        eventually(|| live.load(SeqCst) == POOL).await,
        "{} objects alive",
        live.load(SeqCst)
    );
    held.extend(root.many(1).await.unwrap());
    assert_names_pool(&root.many(1).await.unwrap_err());
    // The server's own objects passed back to it are not exports.
    assert_eq!(root.seven(held[0].clone()).await.unwrap(), 7);
    assert_eq!(s.stats().calls.exports, POOL);
}

/// A standalone connection is bounded by `max_exports` alone: the server's
/// pool is a server's.
#[tokio::test]
async fn a_standalone_connection_has_only_max_exports() {
    let live = Arc::new(AtomicUsize::new(0));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new()
            .limits(limits())
            .serve(M::remote(&live)),
    )
    .await
    .unwrap();
    let (held, e) = make_until_refused(&client, 2_000).await;
    match e {
        Error::Remote(re) => assert!(re.message.contains("max_exports = 1000"), "{re}"),
        other => panic!("expected max_exports, got {other:?}"),
    }
    assert_eq!(held.len(), 1_000);
}

/// The connections of one address share a part of the pool, each past its
/// reserve.
#[tokio::test]
async fn one_address_gets_at_most_its_part() {
    let live = Arc::new(AtomicUsize::new(0));
    let limits = Limits {
        max_exports_per_peer: 100,
        ..limits()
    };
    let s = Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve({
            let live = live.clone();
            move |_| M::remote(&live)
        });
    let a = Connection::connect(s.local_addr()).await.unwrap();
    let b = Connection::connect(s.local_addr()).await.unwrap();
    let per_peer = |e: &Error| match e {
        Error::Remote(re) => {
            assert_eq!(re.kind, "limit_exceeded", "{re}");
            assert!(re.message.contains("max_exports_per_peer = 100"), "{re}");
        }
        other => panic!("expected max_exports_per_peer, got {other:?}"),
    };
    let (held_a, e) = make_until_refused(&a, 1_000).await;
    per_peer(&e);
    assert_eq!(held_a.len(), 100, "well under the pool's {POOL}");
    let (held_b, e) = make_until_refused(&b, 1_000).await;
    per_peer(&e);
    assert_eq!(held_b.len(), RESERVED_EXPORTS, "the reserve");
    // What one connection gives back, the address's others may take.
    drop(held_a);
    assert!(
        eventually(|| s.stats().calls.exports == RESERVED_EXPORTS).await,
        "{} exported after the releases",
        s.stats().calls.exports
    );
    let (more_b, e) = make_until_refused(&b, 1_000).await;
    per_peer(&e);
    assert_eq!(held_b.len() + more_b.len(), 100);
}
