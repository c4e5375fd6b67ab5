//! What an idle WebSocket connection keeps, outside the memory budget,
//! compared with an idle TCP connection: tungstenite allocates its read
//! buffer at the upgrade and keeps it for the connection's life. At its
//! default (128 KiB) every upgraded connection cost about 128 KiB more
//! than over TCP (found by a red-team pass); the transport now asks for
//! 8 KiB (`transport/ws.rs`). Measured with a counting allocator (one
//! test per binary).

#[path = "support/add.rs"]
mod add;
#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use counting::live;
use remote_core::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNS: usize = 64;

async fn per_connection(ws: bool) -> isize {
    let limits = Limits {
        max_connections_per_peer: 256,
        ..Limits::default()
    };
    let addr = if ws {
        "ws://127.0.0.1:0/"
    } else {
        "tcp://127.0.0.1:0"
    };
    let server = add::serve(addr, limits).await;
    let baseline = live();
    let mut held = Vec::new();
    for _ in 0..CONNS {
        let mut s = if ws {
            raw::ws_upgraded(&server).await
        } else {
            tokio::io::BufReader::new(raw::connect(&server).await)
        };
        let hello = raw::hello(vec![]);
        s.get_mut()
            .write_all(&if ws { raw::ws_binary(&hello) } else { hello })
            .await
            .unwrap();
        // The server's hello (some bytes of it) shows the connection is open.
        let mut b = [0u8; 8];
        tokio::time::timeout(raw::WAIT, s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        held.push(s);
    }
    assert!(raw::eventually(|| server.connections() == held.len()).await);
    let grown = live() - baseline;
    drop(held);
    assert!(raw::eventually(|| server.connections() == 0).await);
    grown / CONNS as isize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_connection_costs_about_what_a_tcp_one_does() {
    let tcp = per_connection(false).await;
    let ws = per_connection(true).await;
    println!("idle connection after the hello: tcp {tcp} bytes, ws {ws} bytes");
    assert!(
        ws <= tcp + (32 << 10),
        "an idle ws connection holds {ws} bytes, a tcp one {tcp}"
    );
}
