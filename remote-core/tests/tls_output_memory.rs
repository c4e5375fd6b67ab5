//! What rustls holds of a `tls://` server connection's output counts in
//! the memory budget until it is in the socket. A write into a TLS stream
//! returns once rustls took the bytes, and they wait in its buffer while
//! the peer reads nothing: uncounted, about 55 KiB per such connection
//! (a red-team pass), so over `max_connections` nearly the budget again.
//! Measured with a counting global allocator against the same peers over
//! plain TCP.
#![cfg(feature = "tls")]

#[path = "support/counting.rs"]
mod counting;
#[path = "support/noted.rs"]
mod noted;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use counting::{live, measured};
use pki::Ca;
use remote_core::collections::SharedMap;
use remote_core::{Limits, Server, ServerHandle, TlsServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::ServerName;

const CONNS: usize = 16;
const CALLS: u32 = 16;
const VALUE: usize = 60 << 10;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A socket to `authority` with a 4 KiB receive buffer: once its peer
/// stops reading, the server's writes stall soon.
async fn small_socket(authority: &str) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(authority.parse().unwrap()).await.unwrap()
}

/// `CONNS` peers past their hellos, over TLS with `ca` or plain TCP.
async fn peers(server: &ServerHandle, ca: Option<&Ca>) -> Vec<Box<dyn Stream>> {
    let addr = server.local_addr();
    let authority = addr.split("://").nth(1).unwrap().to_owned();
    let mut held: Vec<Box<dyn Stream>> = Vec::new();
    for _ in 0..CONNS {
        let tcp = small_socket(&authority).await;
        let mut s: Box<dyn Stream> = match ca {
            Some(ca) => {
                let name = ServerName::try_from("localhost").unwrap();
                let tls = ca.raw_client(&[b"remote/1"]).connect(name, tcp).await;
                Box::new(tls.unwrap())
            }
            None => Box::new(tcp),
        };
        s.write_all(&raw::hello(vec![])).await.unwrap();
        assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
        held.push(s);
    }
    assert!(raw::eventually(|| server.connections() == CONNS).await);
    held
}

/// The heap held beyond what `server` counts in its memory budget, per
/// connection, once every peer asked for `CALLS` values of 60 KiB and
/// read nothing, and the server's writes stalled.
async fn uncounted(server: ServerHandle, ca: Option<&Ca>) -> isize {
    let mut held = peers(&server, ca).await;
    let before = live() - server.buffered_bytes() as isize;
    let gets: Vec<u8> = (0..CALLS)
        .flat_map(|i| raw::call(10 + i, 0, "get", 600_000, &[0x91, 0x01]))
        .collect();
    for s in held.iter_mut() {
        s.write_all(&gets).await.unwrap();
    }
    // Every reply made, and nothing more written: each writer waits for
    // its socket, what the transport holds of the output at its fullest.
    let answered = CONNS as u64 * u64::from(CALLS);
    assert!(raw::eventually(|| server.stats().calls.calls_finished >= answered).await);
    // No event says so: three quiet samples in a row (one could be a
    // writer starved on a loaded machine, measuring the output short).
    let mut out = server.stats().calls.bytes_out;
    let mut quiet = 0;
    while quiet < 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = server.stats().calls.bytes_out;
        quiet = if now == out { quiet + 1 } else { 0 };
        out = now;
    }
    let per = (live() - server.buffered_bytes() as isize - before) / CONNS as isize;
    drop(held);
    server.shutdown(Duration::from_secs(5)).await;
    per
}

async fn compare() {
    let map = SharedMap::<u32, String>::new();
    map.remote().insert(1, "v".repeat(VALUE)).await.unwrap();
    let limits = Limits {
        max_connections_per_peer: 256,
        ..Limits::default()
    };
    let (tcp_server, _) = noted::serve(map.clone(), limits.clone(), "tcp://127.0.0.1:0").await;
    let tcp = uncounted(tcp_server, None).await;

    let ca = Ca::new("test ca");
    let issued = ca.server();
    let tls =
        TlsServerConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    let m = map.clone();
    let tls_server = Server::builder()
        .limits(limits)
        .tls(tls)
        .bind("tls://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| m.remote());
    let tls = uncounted(tls_server, Some(&ca)).await;
    // rustls's own state and read buffers are not output: about 20 KiB.
    assert!(
        tls <= tcp + (32 << 10),
        "a tls:// connection whose peer reads nothing holds {tls} bytes uncounted, a tcp:// one {tcp}"
    );
}

#[test]
fn output_held_by_rustls_counts_in_the_budget() {
    measured(compare());
}
