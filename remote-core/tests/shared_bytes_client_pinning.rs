//! The same on a client (`driver/call/handle.rs` decodes a `Bytes` return
//! value lending the reply's frame): a hostile server answers a run of
//! large calls, then a large reply and a medium one in one write, and the
//! client keeps only the medium replies' values. They kept a kept read
//! buffer each alive (8 x 45,000 bytes kept 8.15 MB, red-team pass 28);
//! now at most four times their length.
//!
//! Its own test binary: a counting global allocator.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use bytes::Bytes;
use remote_core::proto::{encode, CallId};
use remote_core::{remote, ConnectionBuilder, Error};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[remote]
trait Blobs {
    async fn blob(&self, n: u32) -> Result<Bytes, Error>;
}

fn ret(id: u64, n: usize) -> Vec<u8> {
    let mut f = encode::begin(n + 32);
    encode::return_head(&mut f, CallId(id as u32));
    f.push(0xc6);
    f.extend_from_slice(&(n as u32).to_be_bytes());
    f.extend(std::iter::repeat_n(7u8, n));
    encode::finish(&mut f);
    f
}

fn run(rounds: usize, big: usize, gap: usize, small: usize) -> Vec<Bytes> {
    let rt = counting::runtime();
    let kept = rt.block_on(async move {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let h = raw::frame(&mut s).await.unwrap();
            assert_eq!(raw::kind(&h), raw::HELLO);
            s.write_all(&raw::hello(vec![])).await.unwrap();
            for _ in 0..rounds {
                for _ in 0..2 {
                    let c = raw::next_of_kind(&mut s, raw::CALL).await;
                    s.write_all(&ret(raw::id_of(&c), big)).await.unwrap();
                }
                let a = raw::next_of_kind(&mut s, raw::CALL).await;
                let b = raw::next_of_kind(&mut s, raw::CALL).await;
                let mut both = ret(raw::id_of(&a), big - gap);
                both.extend_from_slice(&ret(raw::id_of(&b), small));
                s.write_all(&both).await.unwrap();
            }
            s
        });
        let conn = ConnectionBuilder::new()
            .connect(&format!("tcp://{addr}"))
            .await
            .unwrap();
        let p = conn.root::<dyn Blobs>();
        let mut kept = Vec::new();
        for _ in 0..rounds {
            // Downloads checked and dropped...
            p.blob(0).await.unwrap();
            p.blob(0).await.unwrap();
            let (a, b) = tokio::join!(p.blob(1), p.blob(2));
            drop(a.unwrap());
            // ...and a small one kept (a cache entry).
            let b = b.unwrap();
            assert_eq!(b.len(), small);
            kept.push(b);
        }
        let s = server.await.unwrap();
        conn.close();
        drop(s);
        kept
    });
    drop(rt);
    kept
}

#[test]
fn a_hostile_server_pins_client_memory_with_a_kept_reply() {
    let _serial = counting::serial();
    drop(run(1, 200_000, 40_000, 20_000));
    for (gap, small) in [(60_000, 45_000), (18_000, 16_600)] {
        let before = counting::live();
        let kept = run(8, 1_000_000, gap, small);
        let live = counting::live() - before;
        let stored: usize = kept.iter().map(|b| b.len()).sum();
        assert!(
            live <= 4 * stored as isize,
            "8 kept replies of {small} bytes keep {live} bytes alive (> 4x {stored})"
        );
        drop(kept);
    }
}
