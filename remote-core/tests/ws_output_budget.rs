//! What the WebSocket layer holds of a server connection's output counts
//! in the memory budget until it is in the socket: the bytes a write hands
//! it (up to 128 KiB) and tungstenite's write buffer. Uncounted, a peer
//! that read nothing held about 260 KiB each outside the budget, unbounded
//! in sum (a red-team pass: 200 such peers, +59.5 MiB of heap with 1.9 MiB
//! counted), and as the budget never looked short, `pressure_stall_timeout`
//! never closed them.

#[path = "support/noted.rs"]
mod noted;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use noted::closed_for;
use remote_core::collections::SharedMap;
use remote_core::Limits;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_held_by_the_websocket_layer_counts_and_silent_readers_are_closed() {
    let map = SharedMap::<u32, String>::new();
    map.remote().insert(1, "v".repeat(100 << 10)).await.unwrap();
    let limits = noted::judged(4 << 20);
    let (server, reasons) = noted::serve(map.clone(), limits, "ws://127.0.0.1:0/").await;
    // 20 peers each ask for three replies of 100 KiB and read nothing:
    // 6 MiB of output, more than the budget.
    let gets: Vec<u8> = (0..3)
        .flat_map(|i| raw::ws_binary(&raw::call(100 + i, 0, "get", 600_000, &[0x91, 0x01])))
        .collect();
    let mut peers = Vec::new();
    for _ in 0..20 {
        let mut s = raw::ws_opened(&server).await;
        s.get_mut().write_all(&gets).await.unwrap();
        peers.push(s);
    }
    // Their replies count in the budget wherever they wait, so it runs
    // short, and those that read nothing are closed for it.
    assert!(
        raw::eventually(|| closed_for(&reasons, "pressure_stall_timeout") >= 10).await,
        "closed: {}, counted: {} bytes",
        closed_for(&reasons, "pressure_stall_timeout"),
        server.buffered_bytes()
    );
    noted::honest_large_insert(&server, &map, Duration::from_secs(60)).await;
    drop(peers);
}

/// A busy honest client over `ws://`, 32 reads of 100 KiB at a time: what
/// the WebSocket layer counts of its output stays within what it can hold
/// (the writer flushes only once its queue is empty, so counted until a
/// flush, bytes long in the socket piled up: 27–47.5 MB counted for this
/// client in a red-team pass, 3.8 MB over TCP), and all of it is given
/// back once the client is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_clients_output_counts_no_more_than_the_websocket_layer_holds() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;

    use remote_core::collections::RemoteMap;
    use remote_core::Connection;

    let map = SharedMap::<u32, String>::new();
    map.remote().insert(1, "v".repeat(100 << 10)).await.unwrap();
    let (server, _) = noted::serve(map, Limits::default(), "ws://127.0.0.1:0/").await;
    let server = Arc::new(server);
    let idle = server.buffered_bytes();
    let (stop, most) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = {
        let (stop, most, server) = (stop.clone(), most.clone(), server.clone());
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                most.fetch_max(server.buffered_bytes(), Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let conn = Connection::connect(server.local_addr()).await.unwrap();
    let root = conn.root::<dyn RemoteMap<u32, String>>();
    let mut readers = Vec::new();
    for _ in 0..32 {
        let root = root.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..20 {
                assert_eq!(root.get(1).await.unwrap().unwrap().len(), 100 << 10);
            }
        }));
    }
    for r in readers {
        raw::bounded(r).await.unwrap();
    }
    stop.store(true, Relaxed);
    sampler.await.unwrap();
    let most = most.load(Relaxed);
    // 32 replies queued at most (3.2 MB), counted by capacity in the
    // queue and again in the batch being written (each grown by a quarter
    // past what it holds), the WebSocket layer's 320 KiB, and the calls'
    // frames: 6 MB on average, 9.2 MB at most in some 250 runs on a
    // loaded machine (the bound was 8 MiB, and failed one run in the
    // suite). Counted until a flush alone, the bytes piled up to 47.5 MB.
    assert!(most < 12 << 20, "{most} bytes counted at most");
    drop(root);
    conn.close();
    assert!(
        raw::eventually(|| server.buffered_bytes() <= idle).await,
        "{} counted after the close, {idle} before",
        server.buffered_bytes()
    );
}
