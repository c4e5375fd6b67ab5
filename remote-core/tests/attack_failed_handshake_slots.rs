//! A connection whose handshake fails keeps its `max_connections` slot
//! while its writer still holds the socket (red-team pass 36: a WebSocket
//! goodbye behind pongs the peer never read, the slot given back at once).
//! A file of its own: it counts the process's sockets.

#[path = "support/add.rs"]
mod add;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::{Duration, Instant};

use add::{Add, Impl};
use remote_core::{Limits, Remote, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// How long a close writes the goodbye (`CLOSE_GRACE`).
const GRACE: Duration = Duration::from_secs(5);

/// Sockets this process has open.
fn sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handshake_holds_its_slot_while_its_socket_is_open() {
    let server = Server::builder()
        .limits(Limits {
            max_connections: 2,
            ..Limits::default()
        })
        .bind("ws://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Add>));
    let authority = server
        .local_addr()
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let base = sockets();
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let s = sock.connect(authority.parse().unwrap()).await.unwrap();
    let mut s = raw::ws_upgrade(s, &authority).await;
    // Pings whose pongs it never reads, then a hello that is not one: the
    // goodbye waits behind the pongs, the socket held by the writer.
    let pings = raw::ws_pings(20_000);
    let _ = tokio::time::timeout(Duration::from_secs(2), s.get_mut().write_all(&pings)).await;
    let _ = s
        .get_mut()
        .write_all(&raw::ws_binary(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]))
        .await;
    // Until the server's socket is gone, its slot is counted. (The count
    // is read first: the slot goes back after the socket is closed.)
    let end = Instant::now() + GRACE * 3;
    loop {
        let counted = server.connections();
        let open = sockets().saturating_sub(base + 1);
        assert!(
            open <= counted,
            "{open} server socket(s) open with {counted} connection(s) counted"
        );
        if open == 0 || Instant::now() > end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And given back once it is gone.
    assert!(raw::eventually(|| server.connections() == 0).await);
    drop(s);
}
