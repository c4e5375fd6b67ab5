//! Independent attack review (issue 8 follow-up): over `ws://`, every
//! WebSocket ping is answered by the WebSocket layer, which queues the pong
//! in its own write buffer (unbounded by default) even when the peer reads
//! nothing; the frame reader never sees the pings, so no budget or
//! backpressure applies. Measured with a counting global allocator (one
//! test: the allocator counts the whole process).

#[path = "support/add.rs"]
mod add;
#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use counting::live;
use remote_core::Limits;
use tokio::io::AsyncWriteExt;

const BUDGET: usize = 4 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ping_flood_from_a_peer_that_never_reads_is_bounded() {
    let limits = Limits {
        memory_budget: BUDGET,
        ..Limits::default()
    };
    let server = add::serve("ws://127.0.0.1:0/", limits).await;
    let r = raw::ws_upgraded(&server).await;
    let baseline = live();
    // Masked ping frames with 125 bytes of payload (each pong echoes it),
    // sent before the hello; the peer reads nothing from here on.
    let batch = raw::ws_pings(8192);
    let mut s = r.into_inner();
    // 24 batches: 196,608 pings, 25 MB in, 25 MB of pongs to queue.
    let flood = async {
        for _ in 0..24 {
            s.write_all(&batch).await.unwrap();
        }
    };
    let mut peak = 0;
    let sampled = async {
        loop {
            peak = peak.max(live() - baseline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let wrote = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            _ = flood => {}
            _ = sampled => {}
        }
    })
    .await;
    // Let the server take in what the kernel still holds.
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < end {
        peak = peak.max(live() - baseline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "websocket ping flood (all sent: {}): live heap +{peak} bytes, counted {} (budget {BUDGET})",
        wrote.is_ok(),
        server.buffered_bytes()
    );
    let bound = BUDGET as isize;
    assert!(
        peak <= bound,
        "live heap grew {peak} bytes for pongs to a peer that reads nothing, bound {bound}"
    );
    drop(s);
}
