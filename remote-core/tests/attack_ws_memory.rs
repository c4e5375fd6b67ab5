//! Independent attack review (issue 8 follow-up): over `ws://`, the
//! WebSocket layer buffers a whole message (up to `max_frame_len + 4`)
//! before the frame reader and its memory budget see a byte of it, even
//! before the hello. Measured with a counting global allocator (one test:
//! the allocator counts the whole process). Fixed for the hello
//! (transport/ws_meter.rs): before it, at most `max_handshake_frame_len`
//! and a header are read past what was delivered.

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
const CONNS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_websocket_messages_before_the_hello_stay_within_the_budget() {
    let limits = Limits {
        memory_budget: BUDGET,
        // Long enough to measure on a loaded machine; an attacker simply
        // reconnects every 10 s at the default.
        handshake_timeout: Duration::from_secs(120),
        max_connections_per_peer: 64,
        ..Limits::default()
    };
    let server = add::serve("ws://127.0.0.1:0/", limits).await;
    let baseline = live();
    // Each: the upgrade, then one masked binary WebSocket frame announcing
    // 1 MiB (under max_frame_len + 4), of which all but one byte is sent.
    let len: u64 = 1 << 20;
    let mut head = vec![0x82u8, 0x80 | 127];
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]); // masking key: payload as is
    let body = vec![0u8; len as usize - 1];
    let mut held = Vec::new();
    for _ in 0..CONNS {
        let mut r = raw::ws_upgraded(&server).await;
        // The server may refuse the message part way (the fix): a failed
        // write is then expected.
        let _ = r.get_mut().write_all(&head).await;
        let _ = r.get_mut().write_all(&body).await;
        held.push(r);
    }
    // Wait until the server has taken in what was sent, or has refused
    // every connection (or 60 s).
    let want = (CONNS as isize) * (len as isize) / 2;
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut peak = 0;
    while tokio::time::Instant::now() < end {
        peak = peak.max(live() - baseline);
        if peak > want + BUDGET as isize || server.connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    peak = peak.max(live() - baseline);
    println!(
        "{CONNS} partial ws messages before the hello: live heap +{peak} bytes, counted {} (budget {BUDGET})",
        server.buffered_bytes()
    );
    // A message over max_handshake_frame_len before the hello is refused
    // once that much is buffered, as a frame over it would be over TCP.
    assert_eq!(server.connections(), 0, "every over-long hello refused");
    let bound = BUDGET as isize + (2 << 20);
    assert!(
        peak <= bound,
        "live heap grew {peak} bytes for {CONNS} partial messages, bound {bound}"
    );
    drop(held);
}
