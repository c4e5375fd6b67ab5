//! `pressure_stall_timeout` over WebSocket: a message the transport gathers
//! in fragments counts in the memory budget from its first fragment (twice
//! its length, as its length prefix tells), so while the budget is short
//! its rest must keep coming at the pace a large frame's rest does over
//! TCP (32 KiB per `pressure_stall_timeout`), or the peer is closed and
//! what it held goes to those waiting. (A red-team pass: a first fragment
//! of 8 bytes held 2 MiB of the budget until the idle timeout, and peers
//! doing so kept every honest large call waiting.)

#[path = "support/noted.rs"]
mod noted;
#[path = "support/raw.rs"]
mod raw;

use noted::{closed_for, Reasons};

use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::SharedMap;
use remote_core::ServerHandle;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A `ws://` server of a map on a budget of `budget` bytes, a peer judged
/// by its pace after a second, noting why each connection closed; nothing
/// else ends a connection for ten minutes.
async fn serve(map: Arc<SharedMap<u32, String>>, budget: usize) -> (ServerHandle, Reasons) {
    noted::serve(map, noted::judged(budget), "ws://127.0.0.1:0/").await
}

/// Eight open WebSocket connections, each having sent the first fragment
/// of a message holding a frame of 1 MiB less 64 (its length prefix and 4
/// bytes): counted twice, together they fill a budget of 16 MiB.
async fn squat(server: &ServerHandle) -> Vec<BufReader<TcpStream>> {
    let peers = squat_with(server, 8, (1 << 20) - 64).await;
    assert!(raw::eventually(|| server.buffered_bytes() > (15 << 20)).await);
    peers
}

/// `n` open WebSocket connections, each having sent the first fragment of
/// a message holding a frame of `len` bytes (its length prefix and 4
/// bytes).
async fn squat_with(server: &ServerHandle, n: usize, len: u32) -> Vec<BufReader<TcpStream>> {
    let mut peers = Vec::new();
    for _ in 0..n {
        let mut s = raw::ws_opened(server).await;
        let mut first = len.to_be_bytes().to_vec();
        first.extend_from_slice(&[0xc0; 4]);
        s.get_mut()
            .write_all(&raw::ws_fragment(true, false, &first))
            .await
            .unwrap();
        peers.push(s);
    }
    peers
}

/// Sends a fragment of `n` bytes more of each peer's message every 200 ms,
/// until aborted.
fn trickle(mut peers: Vec<BufReader<TcpStream>>, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let more = raw::ws_fragment(false, false, &vec![0xc0; n]);
        loop {
            for s in &mut peers {
                let _ = s.get_mut().write_all(&more).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Peers whose messages' rest comes a byte at a time are closed once
/// less than 32 KiB of it came in `pressure_stall_timeout` while the
/// budget is short, and an honest client's large call gets their room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_send_a_messages_first_fragment_and_a_trickle_give_their_room_back() {
    raw::bounded(async {
        let map = SharedMap::<u32, String>::new();
        let (server, reasons) = serve(map.clone(), 16 << 20).await;
        let trickle = trickle(squat(&server).await, 1);
        noted::honest_large_insert(&server, &map, Duration::from_secs(40)).await;
        assert!(closed_for(&reasons, "pressure_stall_timeout") > 0);
        trickle.abort();
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

/// Peers sending their messages' rest at more than the pace asked
/// (80 KiB/s, 32 KiB per second asked) are not closed while they keep the budget short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_sending_a_messages_rest_at_pace_are_not_closed() {
    raw::bounded(async {
        let map = SharedMap::<u32, String>::new();
        let (server, reasons) = serve(map.clone(), 16 << 20).await;
        let trickle = trickle(squat(&server).await, 16 << 10);
        // Four judges of each peer's pace.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(closed_for(&reasons, "pressure_stall_timeout"), 0);
        assert!(server.buffered_bytes() > (15 << 20), "the budget had room");
        trickle.abort();
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

/// Medium messages keep the pace too: 40 peers each send the first
/// fragment of a message of 30 KiB (counted twice, under 64 KiB, so
/// counted even with the budget used up) and then a byte at a time; with
/// them over a budget of 2 MiB, they are closed (from when the budget is
/// used up, so some already while the others open), and an honest
/// client's large call gets their room. (Only messages counting
/// more than 64 KiB kept a pace before, and such peers held the budget
/// until their idle timeout: a red-team pass, over TCP.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_trickle_medium_messages_give_their_room_back() {
    raw::bounded(async {
        let map = SharedMap::<u32, String>::new();
        let (server, reasons) = serve(map.clone(), 2 << 20).await;
        let trickle = trickle(squat_with(&server, 40, 30 << 10).await, 1);
        noted::honest_large_insert(&server, &map, Duration::from_secs(40)).await;
        assert!(closed_for(&reasons, "pressure_stall_timeout") > 0);
        trickle.abort();
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
