//! Buffers a connection keeps for its next large frame (`driver/kept.rs`)
//! are counted in the memory budget, and given back as soon as a task
//! waits for room: a connection's next large call never waits for room its
//! own kept buffer holds (a red-team pass: the call waited until its
//! deadline, and over TCP the reader spun meanwhile, at a core's full
//! CPU, each wait for room waking it to give back what it then kept).

#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use remote_core::collections::{RemoteMap, SharedMap};
use remote_core::{ConnectionBuilder, Limits, Server};

/// A string of `len` copies of `c`.
fn value(c: u8, len: usize) -> String {
    char::from(c).to_string().repeat(len)
}

/// Over `scheme`, on a 4 MiB budget: large replies (the server's writer
/// then keeps the last one's buffer, counted), then a call of `big` bytes
/// that fits in the budget only without that buffer. It completes within
/// its default deadline, and what the server counts goes back.
async fn large_call_after_large_replies(scheme: &str, big: usize) {
    let map = SharedMap::<u32, String>::new();
    let m = map.clone();
    let limits = Limits {
        memory_budget: 4 << 20,
        max_frame_len: 4 << 20,
        ..Limits::default()
    };
    let server = Server::builder()
        .limits(limits.clone())
        .bind(scheme)
        .await
        .unwrap()
        .serve(move |_| m.remote());
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .connect(server.local_addr())
        .await
        .unwrap();
    let root = conn.root::<dyn RemoteMap<u32, String>>();
    root.insert(0, value(b'a', 900 << 10)).await.unwrap();
    for _ in 0..3 {
        let v = root.get(0).await.unwrap();
        assert_eq!(v.map(|v| v.len()), Some(900 << 10));
    }
    // The last reply's buffer is kept, counted.
    assert!(
        raw::eventually(|| server.buffered_bytes() >= 900 << 10).await,
        "{scheme}: no buffer kept ({} bytes counted)",
        server.buffered_bytes()
    );
    assert_eq!(root.insert(1, value(b'b', big)).await.unwrap(), None);
    assert_eq!(
        map.remote().get(1).await.unwrap().map(|v| v.len()),
        Some(big)
    );
    conn.close();
    assert!(
        raw::eventually(|| server.buffered_bytes() == 0).await,
        "{scheme}: {} bytes still counted",
        server.buffered_bytes()
    );
    server.shutdown(Duration::from_secs(5)).await;
}

/// Over TCP a call is read into room for its frame and counted once more
/// for its arguments, up to the budget less an eighth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_call_does_not_wait_for_its_connections_kept_buffer_over_tcp() {
    raw::bounded(large_call_after_large_replies(
        "tcp://127.0.0.1:0",
        3300 << 10,
    ))
    .await;
}

/// Over WebSocket a message in fragments counts twice while it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_call_does_not_wait_for_its_connections_kept_buffer_over_websocket() {
    raw::bounded(large_call_after_large_replies(
        "ws://127.0.0.1:0/",
        1700 << 10,
    ))
    .await;
}
