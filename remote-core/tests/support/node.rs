//! A test object for ordering and counting tests: `add`, `make` (a fresh
//! object), `read` (a call back on an object passed in), `echo` and
//! `echo_later` (a handler that waits once, so it runs in a task of its
//! own), each object counted in a shared `live` counter while it exists.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};

#[remote]
pub trait Node {
    /// `a + b + self's id`.
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error>;
    /// A fresh object with id `id`.
    async fn make(&self, id: u64) -> Result<Remote<dyn Node>, Error>;
    /// `obj.add(0, 0)`, called from here (a callback if `obj` is the
    /// caller's).
    async fn read(&self, obj: Remote<dyn Node>) -> Result<u64, Error>;
    /// Echoes `data`.
    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, Error>;
    /// Echoes `data` after yielding once: not finished by the reader's
    /// inline poll, so its handler is spawned.
    async fn echo_later(&self, data: Vec<u8>) -> Result<Vec<u8>, Error>;
}

pub(crate) struct N {
    id: u64,
    live: Arc<AtomicUsize>,
}

impl N {
    pub(crate) fn remote(id: u64, live: &Arc<AtomicUsize>) -> Remote<dyn Node> {
        live.fetch_add(1, SeqCst);
        Remote::new(Arc::new(N {
            id,
            live: live.clone(),
        }) as Arc<dyn Node>)
    }
}

impl Drop for N {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

#[remote]
impl Node for N {
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error> {
        Ok(a + b + self.id)
    }
    async fn make(&self, id: u64) -> Result<Remote<dyn Node>, Error> {
        Ok(N::remote(id, &self.live))
    }
    async fn read(&self, obj: Remote<dyn Node>) -> Result<u64, Error> {
        obj.add(0, 0).await
    }
    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        Ok(data)
    }
    async fn echo_later(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        tokio::task::yield_now().await;
        Ok(data)
    }
}

/// A client and a server connected over an in-memory pipe of `pipe` bytes
/// each way; the server's root (an `N` of id 0) counts its objects in the
/// returned counter.
pub(crate) async fn pair(pipe: usize) -> (Connection, Connection, Arc<AtomicUsize>) {
    let server_live = Arc::new(AtomicUsize::new(0));
    let (a, b) = tokio::io::duplex(pipe);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let served = ConnectionBuilder::new()
        .serve(N::remote(0, &server_live))
        .over(br, bw, "client");
    let (client, server) = tokio::join!(ConnectionBuilder::new().over(ar, aw, "server"), served);
    (client.unwrap(), server.unwrap(), server_live)
}

/// Every reference given back, once the calls are done: the server exports
/// nothing and holds only its root alive; the client exports nothing and
/// holds none of its objects. (Needs `support/raw.rs` as `mod raw`.)
pub(crate) async fn all_released(
    server_exports: impl Fn() -> usize,
    server_live: &AtomicUsize,
    client: &Connection,
    client_live: &AtomicUsize,
) {
    assert!(
        crate::raw::eventually(|| server_exports() == 0 && server_live.load(SeqCst) == 1).await,
        "server exports {} objects, {} alive",
        server_exports(),
        server_live.load(SeqCst)
    );
    assert!(
        crate::raw::eventually(|| client.exported_objects() == 0 && client_live.load(SeqCst) == 0)
            .await,
        "client exports {} objects, {} alive",
        client.exported_objects(),
        client_live.load(SeqCst)
    );
}
