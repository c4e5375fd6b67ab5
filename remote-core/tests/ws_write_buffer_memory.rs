//! What a WebSocket server connection keeps, outside the memory budget,
//! after a burst of replies of 64 KiB or less: tungstenite's write buffer
//! keeps the capacity of the batch it gathered before writing out, and the
//! server replaced it only after a single message over 64 KiB (a red-team
//! pass: 8 pipelined replies of 60 KiB left about 100 KB per idle
//! connection, uncounted). Now it is replaced once more than 16 KiB were
//! written, as soon as it holds nothing, so an idle connection keeps about
//! what it keeps over TCP, outside the budget. Measured with a counting
//! global allocator.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/noted.rs"]
mod noted;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use counting::{live, measured};
use remote_core::collections::SharedMap;
use remote_core::{Limits, ServerHandle};
use tokio::io::{AsyncWriteExt, BufReader};

const CONNS: usize = 32;
const CALLS: u32 = 8;
const VALUE: usize = 60 << 10;

/// A server of a map holding one 60 KiB value at `addr`, and `CONNS`
/// connections to it past their hellos (over WebSocket if `ws`).
async fn open(addr: &str, ws: bool) -> (ServerHandle, Vec<BufReader<tokio::net::TcpStream>>) {
    let map = SharedMap::<u32, String>::new();
    map.remote().insert(1, "v".repeat(VALUE)).await.unwrap();
    let limits = Limits {
        max_connections_per_peer: 256,
        ..Limits::default()
    };
    let (server, _) = noted::serve(map, limits, addr).await;
    let mut held = Vec::new();
    for _ in 0..CONNS {
        held.push(if ws {
            raw::ws_opened(&server).await
        } else {
            BufReader::new(raw::opened(&server).await)
        });
    }
    assert!(raw::eventually(|| server.connections() == CONNS).await);
    (server, held)
}

/// Sends each connection `CALLS` pipelined reads of the value and reads
/// every reply.
async fn burst(held: &mut [BufReader<tokio::net::TcpStream>], ws: bool) {
    for s in held.iter_mut() {
        let gets: Vec<u8> = (0..CALLS)
            .flat_map(|i| {
                let call = raw::call(10 + i, 0, "get", 60_000, &[0x91, 0x01]);
                if ws {
                    raw::ws_binary(&call)
                } else {
                    call
                }
            })
            .collect();
        s.get_mut().write_all(&gets).await.unwrap();
    }
    for s in held.iter_mut() {
        for _ in 0..CALLS {
            let reply = if ws {
                raw::bounded(raw::ws_frame(s)).await.expect("a reply").1[4..].to_vec()
            } else {
                raw::bounded(raw::frame(s)).await.expect("a reply")
            };
            assert_eq!(raw::kind(&reply), raw::RETURN);
        }
    }
}

/// The heap in use less what `server` counts in its memory budget (the
/// buffers a connection keeps for its next large frame are counted).
fn uncounted(server: &ServerHandle) -> isize {
    live() - server.buffered_bytes() as isize
}

async fn compare() {
    // Over TCP: what a connection keeps after the burst, read.
    let (tcp_server, mut tcp) = open("tcp://127.0.0.1:0", false).await;
    let before = uncounted(&tcp_server);
    burst(&mut tcp, false).await;
    // Its replies freed once written and read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tcp_kept = (uncounted(&tcp_server) - before) / CONNS as isize;
    drop(tcp);
    tcp_server.shutdown(Duration::from_secs(5)).await;

    let (ws_server, mut ws) = open("ws://127.0.0.1:0/", true).await;
    let before = uncounted(&ws_server);
    burst(&mut ws, true).await;
    let bound = tcp_kept + (32 << 10);
    let kept = || (uncounted(&ws_server) - before) / CONNS as isize;
    assert!(
        raw::eventually(|| kept() <= bound).await,
        "an idle ws connection keeps {} bytes after the burst, a tcp one {tcp_kept} (counted: {})",
        kept(),
        ws_server.buffered_bytes()
    );
    drop(ws);
    ws_server.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn an_idle_connection_keeps_no_write_buffer_after_a_burst_of_small_replies() {
    measured(compare());
}
