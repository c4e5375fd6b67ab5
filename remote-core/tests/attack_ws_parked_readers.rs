//! Over `ws://`, a frame header held back waiting for room in the memory
//! budget (`transport/ws_meter.rs`) watches the socket meanwhile, as the
//! frame reader's wait does over TCP (`attack_parked_readers.rs`): a peer
//! that announces a large frame while the budget is full and then closes
//! frees its connection at once. (Found by a red-team pass: 40 such
//! connections stayed open until the idle timeout, 30 s.)

#[path = "support/add.rs"]
mod add;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use raw::{eventually, ws_binary, ws_frame, ws_upgraded};
use remote_core::{Limits, ServerHandle};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An open ws connection that sent the header of a 1 MiB binary message
/// and `extra` bytes of it.
async fn announce(server: &ServerHandle, extra: usize) -> BufReader<TcpStream> {
    let mut r = ws_upgraded(server).await;
    r.get_mut()
        .write_all(&ws_binary(&raw::hello(vec![])))
        .await
        .unwrap();
    let (_, h) = raw::bounded(ws_frame(&mut r)).await.expect("a hello");
    assert_eq!(raw::kind(&h[4..]), 0, "the server's hello");
    let mut b = vec![0x82u8, 0x80 | 127];
    b.extend_from_slice(&(1u64 << 20).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.resize(b.len() + extra, 0);
    r.get_mut().write_all(&b).await.unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_headers_waiting_for_room_notice_their_peers_close() {
    let limits = Limits {
        memory_budget: 4 << 20,
        max_connections: 64,
        max_connections_per_peer: 64,
        // Longer than the wait below: only noticing the close frees them.
        unauthenticated_idle_timeout: Duration::from_secs(300),
        ..Limits::default()
    };
    let server = add::serve("ws://127.0.0.1:0/", limits).await;
    // Four partial messages of 1 MiB fill the budget.
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(announce(&server, 1).await);
    }
    assert!(eventually(|| server.buffered_bytes() >= 3 << 20).await);
    // Forty more announce 1 MiB each, wait for room, and close.
    for _ in 0..40 {
        drop(announce(&server, 0).await);
    }
    assert!(
        eventually(|| server.connections() == 4).await,
        "{} connections open after their peers closed",
        server.connections()
    );
    drop(holders);
    assert!(
        eventually(|| server.connections() == 0 && server.buffered_bytes() == 0).await,
        "{} connections, {} bytes counted",
        server.connections(),
        server.buffered_bytes()
    );
}
