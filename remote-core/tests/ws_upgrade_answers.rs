//! A WebSocket upgrade request the server cannot take is answered over
//! HTTP, naming its fault, instead of the connection just closing:
//! tungstenite answers only a request for a path the server does not serve
//! (404), and closed every malformed or oversized one without a word.
#![cfg(feature = "websocket")]

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use remote_core::{remote, Connection, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[remote]
pub trait Echo {
    async fn echo(&self, n: u64) -> Result<u64, Error>;
}

struct E;

#[remote]
impl Echo for E {
    async fn echo(&self, n: u64) -> Result<u64, Error> {
        Ok(n)
    }
}

async fn server(addr: &str) -> ServerHandle {
    Server::bind(addr)
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(E) as Arc<dyn Echo>))
}

fn authority(server: &ServerHandle) -> String {
    let addr = server.local_addr();
    let rest = addr.split("://").nth(1).unwrap();
    rest.split('/').next().unwrap().to_owned()
}

/// Writes `request` (a write the server cuts short is ignored: the answer
/// still comes) and reads the answer to its end: its status line and body.
async fn answer_to(mut s: impl AsyncRead + AsyncWrite + Unpin, request: &[u8]) -> (String, String) {
    let _ = raw::bounded(s.write_all(request)).await;
    let mut got = Vec::new();
    raw::bounded(s.read_to_end(&mut got))
        .await
        .expect("the answer, then the end of the stream");
    let text = String::from_utf8(got).expect("an HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap().to_owned();
    // Header names are case-insensitive (tungstenite writes them lower case).
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim())
        })
        .expect("a Content-Length");
    assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{text}");
    (status, body.to_owned())
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";

/// Each malformed request, and a word its answer's body must hold.
fn malformed() -> Vec<(String, &'static str)> {
    vec![
        (
            format!("POST /e HTTP/1.1\r\nHost: h\r\n{UPGRADE}{KEY}\r\n"),
            "GET",
        ),
        (
            format!("GET /e HTTP/1.1\r\nHost: h\r\n{UPGRADE}\r\n"),
            "sec-websocket-key",
        ),
        (
            format!("GET /e HTTP/1.1\r\nHost: h\r\n{KEY}\r\n"),
            "upgrade",
        ),
        (
            format!("GET /e HTTP/1.0\r\nHost: h\r\n{UPGRADE}{KEY}\r\n"),
            "1.1",
        ),
        ("G\u{1}T /e HTTP/1.1\r\n\r\n".to_owned(), "httparse"),
    ]
}

#[tokio::test]
async fn malformed_upgrades_get_a_bad_request_naming_their_fault() {
    let server = server("ws://127.0.0.1:0/e").await;
    let at = authority(&server);
    for (request, word) in malformed() {
        let s = TcpStream::connect(&at).await.unwrap();
        let (status, body) = answer_to(s, request.as_bytes()).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{request:?}: {body}");
        assert!(
            body.to_lowercase().contains(&word.to_lowercase()),
            "{request:?}: {body}"
        );
    }
    // The server serves on, and a wrong path is still a 404.
    let client = Connection::connect(server.local_addr()).await.unwrap();
    assert_eq!(client.root::<dyn Echo>().echo(7).await.unwrap(), 7);
    let s = TcpStream::connect(&at).await.unwrap();
    let (status, _) = answer_to(
        s,
        format!("GET /x HTTP/1.1\r\nHost: h\r\n{UPGRADE}{KEY}\r\n").as_bytes(),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

#[tokio::test]
async fn an_upgrade_request_too_large_is_answered_431() {
    let server = server("ws://127.0.0.1:0/e").await;
    let s = TcpStream::connect(authority(&server)).await.unwrap();
    let cookie = "a".repeat(40_000);
    let request = format!("GET /e HTTP/1.1\r\nHost: h\r\n{UPGRADE}{KEY}Cookie: c={cookie}\r\n\r\n");
    let (status, body) = answer_to(s, request.as_bytes()).await;
    assert_eq!(
        status, "HTTP/1.1 431 Request Header Fields Too Large",
        "{body}"
    );
    assert!(body.contains("16384 bytes"), "{body}");
}

/// An answer and the drain after it end at the handshake deadline, where
/// the connection's slot is given back (red-team pass 30: a peer that made
/// its request fail just before the deadline and went on sending held its
/// socket up to 1 s past it, about twice `max_connections` sockets).
#[tokio::test]
async fn an_answer_ends_at_the_handshake_deadline() {
    const LIMIT: Duration = Duration::from_secs(1);
    let server = Server::builder()
        .limits(Limits {
            handshake_timeout: LIMIT,
            ..Limits::default()
        })
        .bind("ws://127.0.0.1:0/e")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(E) as Arc<dyn Echo>));
    let began = tokio::time::Instant::now();
    let mut s = TcpStream::connect(authority(&server)).await.unwrap();
    s.write_all(b"GET /e HTTP/1.1\r\nHost: h\r\n")
        .await
        .unwrap();
    tokio::time::sleep_until(began + LIMIT * 9 / 10).await;
    // A header name that is no token: the request fails, and is answered.
    s.write_all(b"\x01: x\r\n\r\n").await.unwrap();
    // Go on sending, reading nothing, until the server has closed the
    // socket (a write then fails, after the reset the one before drew).
    let closed = raw::bounded(async {
        while s.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        began.elapsed()
    })
    .await;
    assert!(
        closed < LIMIT * 8 / 5,
        "the socket closed {closed:?} after the accept, past the handshake deadline"
    );
}

#[cfg(feature = "tls")]
#[path = "support/pki.rs"]
mod pki;

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_malformed_upgrade_over_tls_gets_its_answer_too() {
    use remote_core::TlsServerConfig;
    let ca = pki::Ca::new("ws upgrade answers");
    let issued = ca.server();
    let tls =
        TlsServerConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    let server = Server::builder()
        .tls(tls)
        .bind("wss://127.0.0.1:0/e")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(E) as Arc<dyn Echo>));
    let tcp = TcpStream::connect(authority(&server)).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let s = ca.raw_client(&[]).connect(name, tcp).await.unwrap();
    let (request, word) = malformed().swap_remove(1);
    let (status, body) = answer_to(s, request.as_bytes()).await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{body}");
    assert!(body.to_lowercase().contains(word), "{body}");
}
