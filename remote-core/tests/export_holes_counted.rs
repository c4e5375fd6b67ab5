//! Review pass 51 (`dd59522`): an export table now counts in the server's
//! export pools (`max_server_exports`, `max_exports_per_peer`) every slot
//! up to its highest live id, as if each were a live export. Only the
//! same connection's later exports fill those holes. So an honest client
//! that keeps one object it got after a burst of others (a session made
//! after a page of 999 results, the results then released) is counted as
//! 1,000 exports while the server holds one object for it (a hole is a
//! ~64-byte `Option<ExportEntry>` and a 4-byte free id, against the ~360
//! bytes of a live export that the limit is sized for), and the
//! connections of the same address (a NAT, a proxy) are refused
//! `max_exports_per_peer` with two live objects counted as 2,000.
//! `Server::stats().exports` says 2 meanwhile, and the refusal says
//! "2000 objects already exported".
//!
//! Asserted: with two objects live for an address, a third
//! connection of that address gets 200 objects under a per-address limit
//! of 2,000.
//!
//! Fixed: a hole counts a quarter of an export (`proto/tables.rs`, `units`).

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use raw::eventually;
use remote_core::{remote, Connection, Error, Limits, Remote, Server, ServerHandle};

#[remote]
pub trait Maker {
    /// `n` new objects.
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Maker>>, Error>;
}

struct M;

#[remote]
impl Maker for M {
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Maker>>, Error> {
        Ok((0..n)
            .map(|_| Remote::new(Arc::new(M) as Arc<dyn Maker>))
            .collect())
    }
}

async fn server() -> ServerHandle {
    Server::builder()
        .limits(Limits {
            max_exports: 1_000,
            max_exports_per_peer: 2_000,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(M) as Arc<dyn Maker>))
}

#[tokio::test]
async fn released_objects_below_a_kept_one_do_not_count_as_exports_of_the_address() {
    let s = server().await;
    let mut kept = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..2 {
        let c = Connection::connect(s.local_addr()).await.unwrap();
        let root = c.root::<dyn Maker>();
        // A page of results, then one object kept for the session.
        let page = root.many(999).await.unwrap();
        kept.extend(root.many(1).await.unwrap());
        drop(page);
        conns.push(c);
    }
    assert!(
        eventually(|| s.stats().calls.exports == 2).await,
        "{} exported",
        s.stats().calls.exports
    );
    // A third connection of the same address, two objects live for it.
    let c = Connection::connect(s.local_addr()).await.unwrap();
    let got = c.root::<dyn Maker>().many(200).await;
    assert!(
        got.is_ok(),
        "two objects live for the address, yet 200 more refused: {:?}",
        got.err()
    );
    drop(kept);
}
