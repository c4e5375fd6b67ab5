//! What a server's client caches hold (it calls a `#[remote(cache(..))]`
//! method on objects its clients pass it) stays within their bounds,
//! whatever object ids the peer picks. A red-team pass found a version
//! record kept for every (object id, method) ever looked up, 291 bytes for
//! each fresh id, for the connection's life; and entries weighed by their
//! bytes alone (3 here), 5.7 MB held per connection against about 30 KB
//! counted in `server_cache_max_bytes`.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use std::sync::Arc;

use remote_core::{remote, Error, Limits, Remote, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[remote]
pub trait Profile {
    #[remote(cache(ttl = "30s"))]
    async fn name(&self) -> Result<String, Error>;
}

#[remote]
pub trait Hub {
    /// Reads a visitor's (cached) name.
    async fn visit(&self, p: Remote<dyn Profile>) -> Result<String, Error>;
}

struct H;

#[remote]
impl Hub for H {
    async fn visit(&self, p: Remote<dyn Profile>) -> Result<String, Error> {
        p.name().await
    }
}

async fn server(limits: Limits) -> ServerHandle {
    serving::tcp(limits, |_| Remote::new(Arc::new(H) as Arc<dyn Hub>)).await
}

/// The return `"x"` to call `id`.
fn name_x(id: u64) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 9, 0x93, 0x02, 0xce];
    f.extend_from_slice(&(id as u32).to_be_bytes());
    f.extend_from_slice(&[0xa1, b'x']);
    f
}

/// Visits passing our objects `ids`, 100 at a time, answering the server's
/// `name` calls; each batch ends once its visits are answered and, if
/// every id is fresh, their objects released (the server forgot them).
async fn visit(s: &mut TcpStream, ids: std::ops::Range<u32>, fresh: bool) {
    let ids: Vec<u32> = ids.collect();
    for batch in ids.chunks(100) {
        let mut calls = Vec::new();
        for (c, k) in batch.iter().enumerate() {
            let mut args = vec![0x91, 0xd6, 0x01];
            args.extend_from_slice(&k.to_be_bytes());
            calls.extend(raw::call(c as u32 + 1, 0, "visit", 60_000, &args));
        }
        s.write_all(&calls).await.unwrap();
        let (mut answered, mut released) = (0, 0);
        while answered < batch.len() || (fresh && released < batch.len()) {
            let f = raw::frame(s).await.expect("the connection stays open");
            match raw::kind(&f) {
                raw::CALL => s.write_all(&name_x(raw::id_of(&f))).await.unwrap(),
                raw::RETURN => answered += 1,
                raw::RELEASE => released += 1,
                k => panic!("kind {k}: {:?}", raw::error_of(&f)),
            }
        }
    }
}

/// One connection passes a fresh object id at each visit: once its cache
/// is full, what the server holds no longer grows with them.
#[test]
fn fresh_object_ids_leave_no_bookkeeping() {
    counting::measured(raw::bounded(async {
        let server = server(Limits {
            cache_max_entries: 1000,
            ..Limits::default()
        })
        .await;
        let mut s = raw::opened(&server).await;
        // The cache fills (1,000 entries), and the tables grow to a batch.
        visit(&mut s, 1..3001, true).await;
        let base = counting::live();
        visit(&mut s, 3001..13_001, true).await;
        let grew = counting::live() - base;
        // 10,000 ids: 2.9 MB with a record kept for each.
        assert!(grew < 512 << 10, "{grew} bytes more after 10,000 fresh ids");
        drop(s);
        server.shutdown(std::time::Duration::from_secs(5)).await;
    }));
}

/// `conns` connections each make 4,000 visits, passing fresh object ids
/// or the same one, and stay open: what the server holds more.
async fn held(conns: usize, fresh: bool) -> isize {
    let server = server(Limits {
        server_cache_max_bytes: 2 << 20,
        ..Limits::default()
    })
    .await;
    // The server's one-off allocations.
    let mut s = raw::opened(&server).await;
    visit(&mut s, 1..101, true).await;
    drop(s);
    assert!(raw::eventually(|| server.connections() == 0).await);
    let base = counting::live();
    let mut socks = Vec::new();
    for _ in 0..conns {
        let mut s = raw::opened(&server).await;
        if fresh {
            visit(&mut s, 1..4001, true).await;
        } else {
            for _ in 0..40 {
                visit(&mut s, 1..2, false).await;
            }
        }
        socks.push(s);
    }
    let grew = counting::live() - base;
    drop(socks);
    server.shutdown(std::time::Duration::from_secs(5)).await;
    grew
}

/// Together, a server's client caches hold about `server_cache_max_bytes`
/// (2 MiB here): 8 connections' 32,000 entries of a few bytes each are
/// weighed with what each costs beside them.
#[test]
fn client_caches_together_hold_about_their_bound() {
    counting::measured(raw::bounded(async {
        let one = held(8, false).await;
        let fresh = held(8, true).await;
        // Weighed by their bytes alone: 10.6 MB held.
        assert!(
            fresh - one < 4 << 20,
            "{} bytes more held by 32,000 entries",
            fresh - one
        );
    }));
}
