//! A reply too large for a frame is refused without being encoded whole:
//! encoding stops at the frame limit (its own test binary: a counting
//! global allocator measures what the process allocates meanwhile; one
//! test, so nothing else runs meanwhile).

#[path = "support/counting.rs"]
mod counting;

use std::sync::Arc;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};

#[remote]
pub trait Big {
    /// `0..n`, encoded 5 bytes per number past 65,535.
    async fn numbers(&self, n: u32) -> Result<Vec<u32>, Error>;
    /// `n` bytes of arguments back.
    async fn echo(&self, data: Vec<u32>) -> Result<u32, Error>;
}

struct Impl;

#[remote]
impl Big for Impl {
    async fn numbers(&self, n: u32) -> Result<Vec<u32>, Error> {
        Ok((0..n).collect())
    }
    async fn echo(&self, data: Vec<u32>) -> Result<u32, Error> {
        Ok(data.len() as u32)
    }
}

/// Bytes the process allocated in all (not net) while `f` ran.
async fn allocated_by<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let before = counting::GLOBAL.stats().bytes_allocated;
    let out = f.await;
    (out, counting::GLOBAL.stats().bytes_allocated - before)
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversized_reply_or_call_stops_encoding_at_the_frame_limit() {
    let served: Remote<dyn Big> = Remote::new(Arc::new(Impl));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(served),
    )
    .await
    .unwrap();
    let big = client.root::<dyn Big>();
    assert_eq!(big.numbers(10).await.unwrap().len(), 10);

    // 4 Mi numbers: 16 MiB as a value, about 20 MiB encoded, against the
    // default 1 MiB frame limit.
    const N: u32 = 4 << 20;
    let value = (N as usize) * 4;
    let (r, allocated) = allocated_by(big.numbers(N)).await;
    let e = r.expect_err("too large for a frame");
    assert_eq!(e.limit_name(), Some("max_frame_len"), "{e}");
    println!("oversized reply: {allocated} bytes allocated for a {value}-byte value");
    // The value itself, and the encode up to the limit (its buffer
    // doubling to 2 MiB). Encoded whole, the buffer grew to 32 MiB: 64 MiB
    // allocated in all.
    assert!(
        allocated < value + (8 << 20),
        "{allocated} bytes allocated for a reply of {value}"
    );

    // The same for a call's arguments, on the caller's side.
    let data: Vec<u32> = (0..N).collect();
    let (r, allocated) = allocated_by(big.echo(data)).await;
    let e = r.expect_err("too large for a frame");
    assert_eq!(e.limit_name(), Some("max_frame_len"), "{e}");
    assert!(
        allocated < 8 << 20,
        "{allocated} bytes allocated for the arguments"
    );
    // The connection goes on.
    assert_eq!(big.echo(vec![1, 2, 3]).await.unwrap(), 3);
}
