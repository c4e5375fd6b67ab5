//! A hostile holder of a shared object against pushed invalidation
//! (PROTOCOL.md §3.9): a peer that acknowledges every `invalidate` just
//! after `invalidation_ack_timeout` (so it is never "lagging" when the
//! next write comes) holds writes up by at most
//! `invalidation_max_missed_acks` timeouts in total, not one per write.
//! Runs on tokio's paused clock: a wait that times out takes exactly the
//! timeout, one that is skipped takes no time.

use std::sync::Arc;
use std::time::Duration;

use remote_core::proto::{encode, encode_invalidated, Hello, Reader};
use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// A shared document every connection reads.
#[remote]
pub trait Doc {
    /// The text.
    #[remote(cache(ttl = "1h"))]
    async fn text(&self) -> Result<String, Error>;
}

struct Page;

#[remote]
impl Doc for Page {
    async fn text(&self) -> Result<String, Error> {
        Ok("hello".into())
    }
}

/// Our connection serving `root` over a pipe to a raw peer that listed
/// the `invalidate` feature; returns the peer's halves.
async fn raw_peer(
    root: &Arc<dyn Doc>,
    limits: Limits,
) -> (Connection, ReadHalf<DuplexStream>, WriteHalf<DuplexStream>) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(ours);
    let (tr, mut tw) = tokio::io::split(theirs);
    let hello = encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features: vec!["invalidate"],
        auth: None,
    });
    tw.write_all(&hello).await.unwrap();
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .serve(Remote::new(root.clone()))
        .over(r, w, "raw peer")
        .await
        .unwrap();
    (conn, tr, tw)
}

/// Reads one frame's payload.
async fn frame(r: &mut ReadHalf<DuplexStream>) -> Vec<u8> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.unwrap();
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut f).await.unwrap();
    f
}

/// The kind and, for an `invalidate`, the token of a frame.
fn kind_and_token(f: &[u8]) -> (u64, Option<u64>) {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    let kind = r.uint().unwrap();
    (kind, (kind == 10).then(|| r.uint().unwrap()))
}

#[tokio::test(start_paused = true)]
async fn a_peer_acknowledging_each_push_too_late_stalls_writes_a_bounded_total() {
    let root: Arc<dyn Doc> = Arc::new(Page);
    let timeout = Duration::from_secs(2);
    let limits = Limits {
        invalidation_ack_timeout: timeout,
        invalidation_max_missed_acks: 3,
        ..Limits::default()
    };
    let (server_end, mut pr, mut pw) = raw_peer(&root, limits).await;
    assert_eq!(kind_and_token(&frame(&mut pr).await).0, 0, "hello");
    const WRITES: u32 = 10;
    let mut stalled = Duration::ZERO;
    for _ in 0..WRITES {
        let started = tokio::time::Instant::now();
        let report = remote_core::cache::invalidate(&root, &["text"]).await;
        stalled += started.elapsed();
        assert_eq!(report.notified, 1, "the peer holds the object");
        // The push still reaches the peer; it acknowledges it only now,
        // after the write gave up waiting: caught up, so not lagging.
        let token = loop {
            if let (10, Some(t)) = kind_and_token(&frame(&mut pr).await) {
                break t;
            }
        };
        pw.write_all(&encode_invalidated(token)).await.unwrap();
        // On the paused clock this returns once every task is idle: the
        // server has read the acknowledgement.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Three writes waited the full timeout; the other seven not at all
    // (before the bound, all ten waited: 20 s).
    assert!(
        stalled >= 3 * timeout && stalled < 4 * timeout,
        "writes stalled {stalled:?} in total"
    );
    assert!(!server_end.is_closed(), "a slow peer is never disconnected");
}
