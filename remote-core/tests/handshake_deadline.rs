//! One `handshake_timeout` from a server's accept to the end of the
//! handshake, whatever the transport does first (PROTOCOL.md §10): a TLS
//! handshake, a WebSocket upgrade and the hello share the bound. Found by
//! a red-team pass: over `tls://` the TLS handshake and the hello each had
//! their own, so a peer that used nearly all of both held its connection
//! slot for about twice the timeout before its hello, and was served.
#![cfg(all(feature = "tls", feature = "websocket"))]

#[path = "support/pki.rs"]
mod pki;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use pki::Ca;
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle, TlsServerConfig};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

const LIMIT: Duration = Duration::from_secs(2);

#[remote]
pub trait Nop {
    async fn nop(&self) -> Result<(), Error>;
}

struct N;

#[remote]
impl Nop for N {
    async fn nop(&self) -> Result<(), Error> {
        Ok(())
    }
}

async fn server(ca: &Ca, addr: &str) -> ServerHandle {
    let s = ca.server();
    let tls = TlsServerConfig::from_pem(s.cert_pem.as_bytes(), s.key_pem.as_bytes()).unwrap();
    Server::builder()
        .limits(Limits {
            handshake_timeout: LIMIT,
            ..Limits::default()
        })
        .tls(tls)
        .bind(addr)
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(N) as Arc<dyn Nop>))
}

/// Connects TCP to `server`, sits idle for three quarters of the limit,
/// then runs the TLS handshake (with `alpn`). Returns the stream (`None`
/// if the server cut the handshake) and when the TCP connect began.
async fn late_tls(
    ca: &Ca,
    server: &ServerHandle,
    alpn: &[&[u8]],
) -> (Option<TlsStream<tokio::net::TcpStream>>, Instant) {
    let addr = server.local_addr();
    let authority = addr
        .split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let connector = ca.raw_client(alpn);
    let began = Instant::now();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    tokio::time::sleep_until(began + LIMIT * 3 / 4).await;
    let name = ServerName::try_from("localhost").unwrap();
    (connector.connect(name, tcp).await.ok(), began)
}

/// How long after `began` the cut came, checked to be within one limit
/// (not cut early, and not given more: a second limit after a TLS
/// handshake would end at 1.75 limits at the soonest, a close waiting for
/// an upgrade at one limit and 5 s).
fn assert_one_limit(began: Instant, what: &str) {
    let after = began.elapsed();
    assert!(
        after >= LIMIT,
        "{what} cut after {after:?}, before handshake_timeout"
    );
    assert!(
        after < LIMIT * 8 / 5,
        "{what} cut only {after:?} after the accept, more than one handshake_timeout"
    );
}

#[tokio::test]
async fn a_tls_peer_gets_one_handshake_timeout_from_accept_to_hello() {
    let ca = Ca::new("handshake deadline");
    let server = server(&ca, "tls://127.0.0.1:0").await;
    let (tls, began) = late_tls(&ca, &server, &[b"remote/1"]).await;
    let mut tls = tls.expect("the TLS handshake, a quarter of the limit before it ends");
    // The hello never comes: the server says why and closes, one limit
    // after the accept.
    let reason = raw::bounded(raw::goodbye(&mut tls)).await;
    assert_one_limit(began, "tls://");
    let reason = reason.expect("a goodbye before the close");
    assert!(reason.contains("handshake_timeout"), "{reason}");
}

#[tokio::test]
async fn a_wss_peer_gets_one_handshake_timeout_from_accept_to_hello() {
    let ca = Ca::new("handshake deadline");
    let server = server(&ca, "wss://127.0.0.1:0/").await;
    let (tls, began) = late_tls(&ca, &server, &[]).await;
    let tls = tls.expect("the TLS handshake, a quarter of the limit before it ends");
    let mut s = raw::ws_upgrade(tls, "localhost").await;
    // Upgraded; the hello never comes.
    let reason = raw::bounded(raw::ws_goodbye(&mut s)).await;
    assert_one_limit(began, "wss://");
    let reason = reason.expect("a goodbye before the close");
    assert!(reason.contains("handshake_timeout"), "{reason}");
}

/// Reads from `s` until it ends (EOF or an error).
async fn until_closed(s: &mut (impl tokio::io::AsyncRead + Unpin)) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    while let Ok(n) = raw::bounded(s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// The start of an upgrade request that never ends (no blank line).
const UNENDING_UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n";

/// A WebSocket upgrade that never ends fails at the connection's deadline,
/// and the socket is closed with the slot: a close waiting to write its
/// goodbye through the upgrade kept the socket open 5 s longer (a
/// red-team pass: about 1.5 × `max_connections` sockets held).
#[tokio::test]
async fn a_websocket_upgrade_that_never_ends_closes_its_socket_at_the_deadline() {
    let ca = Ca::new("handshake deadline");
    let ws = server(&ca, "ws://127.0.0.1:0/").await;
    let authority = ws
        .local_addr()
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let began = Instant::now();
    let mut s = tokio::net::TcpStream::connect(&authority).await.unwrap();
    s.write_all(UNENDING_UPGRADE).await.unwrap();
    until_closed(&mut s).await;
    assert_one_limit(began, "ws:// upgrade");

    let wss = server(&ca, "wss://127.0.0.1:0/").await;
    let (tls, began) = late_tls(&ca, &wss, &[]).await;
    let mut tls = tls.expect("the TLS handshake, a quarter of the limit before it ends");
    tls.write_all(UNENDING_UPGRADE).await.unwrap();
    until_closed(&mut tls).await;
    assert_one_limit(began, "wss:// upgrade");
}
