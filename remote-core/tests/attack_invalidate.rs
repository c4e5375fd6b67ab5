//! A hostile holder of a shared object against pushed invalidation
//! (PROTOCOL.md §3.9): a peer that acknowledges every `invalidate` just
//! after `invalidation_ack_timeout` (so it is never "lagging" when the
//! next write comes) holds writes up by at most
//! `invalidation_max_missed_acks` timeouts in total, not one per write.
//! Runs on tokio's paused clock: a wait that times out takes exactly the
//! timeout, one that is skipped takes no time.

#[path = "support/pipe.rs"]
mod pipe;

use std::sync::Arc;
use std::time::Duration;

use pipe::{frame, head, raw_peer};
use remote_core::proto::encode_invalidated;
use remote_core::{remote, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

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

#[tokio::test(start_paused = true)]
async fn a_peer_acknowledging_each_push_too_late_stalls_writes_a_bounded_total() {
    let root: Arc<dyn Doc> = Arc::new(Page);
    let timeout = Duration::from_secs(2);
    let limits = Limits {
        invalidation_ack_timeout: timeout,
        invalidation_max_missed_acks: 3,
        ..Limits::default()
    };
    let (server_end, mut pr, mut pw) =
        raw_peer(Remote::new(root.clone()), limits, vec!["invalidate"]).await;
    assert_eq!(head(&frame(&mut pr).await.unwrap()).0, 0, "hello");
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
            if let (10, Some(t)) = head(&frame(&mut pr).await.unwrap()) {
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
