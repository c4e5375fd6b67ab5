//! A peer that closes or resets its connection while its reader waits for
//! room is noticed at once, however much it sent that is not read yet.
//!
//! The attack (a red-team pass): a peer fills the memory budget with calls
//! of 60 KiB whose handlers call it back, sends more calls than can start
//! (its readers then wait for room its own handlers hold), and closes every
//! socket. The readers read no further than their buffer's spare room, so
//! they never reached the close; the handlers waited on callbacks nobody
//! would answer until their deadlines (600 s), holding the whole budget
//! and the connection slots with no socket left on the peer's side.
//! Now the socket under a waiting reader is watched for a close
//! (`driver/input/hang_up.rs`): each case here closes the connections,
//! and the server must free everything they held, over TCP, a Unix
//! socket, TLS and WebSocket.
#![cfg(all(unix, feature = "tls", feature = "websocket"))]

#[path = "support/asks_back.rs"]
mod asks_back;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use asks_back::{ask, limits, Impl, Svc, BUDGET, CALLS, PAD};
use raw::{bounded, eventually, kind, ws_binary, ws_frame, ws_upgrade, CALL, HELLO};
use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{Remote, Server, ServerHandle, TlsServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How the hostile peer reaches the server, and frames what it sends.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Tcp,
    Unix,
    Tls,
    Ws,
}

async fn serve(via: Via, ca: &pki::Ca, dir: &std::path::Path) -> ServerHandle {
    let builder = Server::builder().limits(limits());
    let builder = if via == Via::Tls {
        let issued = ca.server();
        let tls = TlsServerConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
            .unwrap();
        builder.tls(tls)
    } else {
        builder
    };
    let addr = match via {
        Via::Tcp => "tcp://127.0.0.1:0".to_owned(),
        Via::Unix => format!("unix://{}", dir.join("s.sock").display()),
        Via::Tls => "tls://127.0.0.1:0".to_owned(),
        Via::Ws => "ws://127.0.0.1:0/".to_owned(),
    };
    builder
        .bind(&addr)
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Svc>))
}

/// A hostile peer's connection, past the server's hello: the frames it
/// sends go through `frame`.
async fn open(server: &ServerHandle, via: Via, ca: &pki::Ca) -> Box<dyn Stream> {
    let addr = server.local_addr();
    let rest = addr.split("://").nth(1).unwrap().trim_end_matches('/');
    let tcp = || async {
        let s = TcpStream::connect(rest).await.unwrap();
        // Closed, it sends a reset whatever it has read (a killed
        // process's socket with input unread does too).
        s.set_zero_linger().unwrap();
        s
    };
    let mut s: Box<dyn Stream> = match via {
        Via::Tcp => Box::new(tcp().await),
        Via::Unix => Box::new(tokio::net::UnixStream::connect(rest).await.unwrap()),
        Via::Tls => {
            let name = ServerName::try_from("localhost").unwrap();
            let tls = ca
                .raw_client(&[b"remote/1"])
                .connect(name, tcp().await)
                .await;
            Box::new(tls.unwrap())
        }
        Via::Ws => Box::new(ws_upgrade(tcp().await, rest).await),
    };
    s.write_all(&frame(via, &raw::hello(vec![]))).await.unwrap();
    let theirs = if via == Via::Ws {
        let (_, f) = ws_frame(&mut s).await.expect("the server's hello");
        f[4..].to_vec()
    } else {
        raw::frame(&mut s).await.expect("the server's hello")
    };
    assert_eq!(kind(&theirs), HELLO);
    s
}

fn frame(via: Via, f: &[u8]) -> Vec<u8> {
    if via == Via::Ws {
        ws_binary(f)
    } else {
        f.to_vec()
    }
}

/// A hostile connection: what it reads, and the task writing its calls
/// (which may wait for the server to read on: a Unix socket buffers
/// less than they weigh).
struct Hostile {
    r: ReadHalf<Box<dyn Stream>>,
    writing: JoinHandle<WriteHalf<Box<dyn Stream>>>,
}

/// Fills the server's budget from connections each sending `CALLS` calls
/// of `PAD` bytes whose handlers call back, and reads from each the first
/// callback (so its handlers run). Returns the connections, whose readers
/// then wait for room with calls unread behind the head one.
async fn fill(server: &ServerHandle, via: Via, ca: &pki::Ca) -> Vec<Hostile> {
    let mut hostile = vec![];
    let mut id = 0;
    while server.buffered_bytes() < BUDGET {
        assert!(hostile.len() < 40, "the budget never filled");
        let (mut r, mut w) = tokio::io::split(open(server, via, ca).await);
        let mut calls = vec![];
        for _ in 0..CALLS {
            id += 1;
            calls.extend(frame(via, &ask(id, PAD)));
        }
        let writing = tokio::spawn(async move {
            w.write_all(&calls).await.unwrap();
            w
        });
        let first = if via == Via::Ws {
            ws_frame(&mut r).await.map(|(_, f)| f[4..].to_vec())
        } else {
            raw::frame(&mut r).await
        };
        assert_eq!(kind(&first.expect("a callback")), CALL);
        hostile.push(Hostile { r, writing });
    }
    hostile
}

/// Fills the budget over `via`, closes every hostile connection with
/// unread input (a reset over TCP), and checks that the server closes
/// them all and frees the budget, then serves a heavy call.
async fn closes_are_noticed(via: Via) {
    bounded(async {
        let ca = pki::Ca::new("closed while waiting");
        let dir = tempfile::tempdir().unwrap();
        let server = serve(via, &ca, dir.path()).await;
        let hostile = fill(&server, via, &ca).await;
        let n = hostile.len();
        assert!(server.connections() == n && server.buffered_bytes() >= BUDGET);
        for h in hostile {
            h.writing.abort();
            drop(h.r);
        }
        let freed = eventually(|| server.connections() == 0).await;
        let (c, b) = (server.connections(), server.buffered_bytes());
        assert!(
            freed,
            "{c} of {n} closed connections still open, {b} B of the budget held"
        );
        assert!(eventually(|| server.buffered_bytes() == 0).await);
        // The budget serves again: a heavy call from a fresh peer.
        let mut s = open(&server, via, &ca).await;
        s.write_all(&frame(via, &ask(1, PAD))).await.unwrap();
        let cb = if via == Via::Ws {
            ws_frame(&mut s).await.map(|(_, f)| f[4..].to_vec())
        } else {
            raw::frame(&mut s).await
        };
        assert_eq!(kind(&cb.expect("its callback")), CALL);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_over_tcp_is_noticed() {
    closes_are_noticed(Via::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_over_a_unix_socket_is_noticed() {
    closes_are_noticed(Via::Unix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_over_tls_is_noticed() {
    closes_are_noticed(Via::Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_over_websocket_is_noticed() {
    closes_are_noticed(Via::Ws).await;
}

/// Over WebSocket a large message waits for room before the reader sees
/// any of it, held back by the transport (`transport/ws_metered.rs`), which
/// reads ahead 8 KiB and then watches the socket too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_over_websocket_while_a_message_waits_is_noticed() {
    bounded(async {
        let ca = pki::Ca::new("closed while waiting");
        let dir = tempfile::tempdir().unwrap();
        let server = serve(Via::Ws, &ca, dir.path()).await;
        let hostile = fill(&server, Via::Ws, &ca).await;
        let n = hostile.len();
        let mut late = open(&server, Via::Ws, &ca).await;
        // Open (a call answered): its messages count in the budget.
        let nope = raw::call(1, 0, "nope", 60_000, &[0x90]);
        late.write_all(&ws_binary(&nope)).await.unwrap();
        let (_, reply) = ws_frame(&mut late).await.expect("a reply");
        assert_eq!(kind(&reply[4..]), raw::ERROR);
        // A call of 200 KiB, in one message the budget has no room for.
        let mut big = encode::begin(200 << 10);
        encode::call_head(&mut big, CallId(2), ObjectId(0), "ask", 600_000);
        big.extend_from_slice(&[0x92, 0xd6, 0x01, 0, 0, 0, 1, 0xdb]);
        big.extend_from_slice(&(200u32 << 10).to_be_bytes());
        big.resize(big.len() + (200 << 10), b'p');
        encode::finish(&mut big);
        late.write_all(&ws_binary(&big)).await.unwrap();
        assert!(eventually(|| server.connections() == n + 1).await);
        drop(late);
        let closed = eventually(|| server.connections() == n).await;
        assert!(closed, "the closed connection is still open");
        drop(hostile);
        assert!(eventually(|| server.buffered_bytes() == 0).await);
    })
    .await;
}
