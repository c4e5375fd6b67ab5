//! A write's pushed invalidation looks only at the connections holding
//! the object (or serving it as their root), not at every connection that
//! negotiated `invalidate`: a thousand idle ones, each serving its own
//! root, added 47 µs to every write (a red-team pass), which an attacker
//! gets by opening connections and doing nothing.

#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use remote_core::cache::push_stats;
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote};

#[remote]
pub trait Cell {
    #[remote(cache(ttl = "30s"))]
    async fn get(&self) -> Result<u64, Error>;
    #[remote(invalidates(get))]
    async fn set(&self, v: u64) -> Result<(), Error>;
    /// A cell shared by every connection.
    async fn shared(&self) -> Result<Remote<dyn Cell>, Error>;
}

struct C(AtomicU64, Option<Arc<C>>);

#[remote]
impl Cell for C {
    async fn get(&self) -> Result<u64, Error> {
        Ok(self.0.load(Ordering::Relaxed))
    }
    async fn set(&self, v: u64) -> Result<(), Error> {
        self.0.store(v, Ordering::Relaxed);
        Ok(())
    }
    async fn shared(&self) -> Result<Remote<dyn Cell>, Error> {
        Ok(Remote::new(self.1.clone().unwrap() as Arc<dyn Cell>))
    }
}

const IDLE: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_looks_only_at_the_connections_holding_the_object() {
    raw::bounded(async {
        let shared = Arc::new(C(AtomicU64::new(0), None));
        let limits = Limits {
            max_connections_per_peer: 1024,
            ..Limits::default()
        };
        let server = serving::tcp(limits, move |_| {
            let own = C(AtomicU64::new(0), Some(shared.clone()));
            Remote::new(Arc::new(own) as Arc<dyn Cell>)
        })
        .await;
        // Idle peers that listed `invalidate`, each served its own root.
        let mut idle = Vec::new();
        for _ in 0..IDLE {
            let mut s = raw::raw_with(&server, vec!["invalidate"]).await;
            assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
            idle.push(s);
        }
        // Two clients caching the shared cell's `get`.
        let connect = || ConnectionBuilder::new().connect(server.local_addr());
        let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
        let (ca, cb) = (
            a.root::<dyn Cell>().shared().await.unwrap(),
            b.root::<dyn Cell>().shared().await.unwrap(),
        );
        assert!(raw::eventually(|| server.connections() == IDLE + 2).await);
        assert_eq!(cb.get().await.unwrap(), 0);
        // A write of the shared cell reaches the other holder only...
        let before = push_stats();
        ca.set(7).await.unwrap();
        let after = push_stats();
        assert_eq!(after.pushed - before.pushed, 1);
        // ...which then reads the new value, not its cached one...
        assert_eq!(cb.get().await.unwrap(), 7);
        // ...and the write looked at the two holders, not at the idle
        // connections (each of which serves another root).
        let examined = after.examined - before.examined;
        assert!(examined <= 2, "looked at {examined} connections");
        // A write of its own root looks at its own connection only.
        let before = push_stats();
        a.root::<dyn Cell>().set(1).await.unwrap();
        let examined = push_stats().examined - before.examined;
        assert!(examined <= 1, "looked at {examined} connections");
        drop(idle);
    })
    .await;
}
