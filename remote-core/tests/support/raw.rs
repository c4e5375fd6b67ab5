//! A hand-played peer for the hostile-peer tests: connect a raw socket,
//! say hello, write frames, and read the replies and goodbyes back, each
//! read bounded by [`WAIT`] so a missing frame fails the test instead of
//! hanging it. Included by `#[path = "support/raw.rs"] mod raw;`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use remote_core::proto::{encode, Hello, Reader};
use remote_core::ServerHandle;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one expected frame may take on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// Message kind codes (PROTOCOL.md §3).
pub const HELLO: u64 = 0;
pub const CALL: u64 = 1;
pub const RETURN: u64 = 2;
pub const ERROR: u64 = 3;
pub const RELEASE: u64 = 4;
pub const CANCEL: u64 = 5;
pub const GOODBYE: u64 = 6;
pub const PING: u64 = 7;
pub const PONG: u64 = 8;

/// A version-1 hello frame listing `features`, with no authentication.
pub fn hello(features: Vec<&str>) -> Vec<u8> {
    encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features,
        auth: None,
    })
}

/// The `host:port` of a TCP server.
pub fn tcp_addr(server: &ServerHandle) -> String {
    let addr = server.local_addr();
    addr.strip_prefix("tcp://").unwrap_or(&addr).to_owned()
}

/// A raw socket to `server`, nothing sent yet.
pub async fn connect(server: &ServerHandle) -> TcpStream {
    TcpStream::connect(tcp_addr(server)).await.unwrap()
}

/// A raw socket to `server` that sent a hello listing `features` (the
/// server's hello is left unread).
pub async fn raw_with(server: &ServerHandle, features: Vec<&str>) -> TcpStream {
    let mut s = connect(server).await;
    s.write_all(&hello(features)).await.unwrap();
    s
}

/// A raw socket to `server` that sent a plain hello.
pub async fn raw(server: &ServerHandle) -> TcpStream {
    raw_with(server, vec![]).await
}

/// A raw socket that completed the handshake: sent a plain hello and read
/// the server's (checked to be a hello).
pub async fn opened(server: &ServerHandle) -> TcpStream {
    let mut s = raw(server).await;
    let f = frame(&mut s).await.expect("the server's hello");
    assert_eq!(kind(&f), HELLO, "hello first");
    s
}

/// The next frame's payload, or `None` at the end of the stream. Panics if
/// nothing arrives within [`WAIT`].
pub async fn frame<R: AsyncRead + Unpin>(s: &mut R) -> Option<Vec<u8>> {
    let read = async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut f).await.ok()?;
        Some(f)
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the peer sent nothing for 60 s")
}

/// The message kind of a payload.
pub fn kind(f: &[u8]) -> u64 {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    r.uint().unwrap()
}

/// Reads frames until one of `kind`; returns it. Panics at the end of the
/// stream.
pub async fn next_of_kind<R: AsyncRead + Unpin>(s: &mut R, want: u64) -> Vec<u8> {
    loop {
        let f = frame(s).await.expect("connection closed");
        if kind(&f) == want {
            return f;
        }
    }
}

/// Reads until a goodbye (its reason) or the end of the stream (`None`).
pub async fn goodbye<R: AsyncRead + Unpin>(s: &mut R) -> Option<String> {
    while let Some(f) = frame(s).await {
        if kind(&f) == GOODBYE {
            let mut r = Reader::new(&f[2..]);
            return Some(r.str().unwrap().to_owned());
        }
    }
    None
}

/// Reads until the end of the stream, failing on any goodbye.
pub async fn eof_without_goodbye<R: AsyncRead + Unpin>(s: &mut R) {
    if let Some(reason) = goodbye(s).await {
        panic!("unexpected goodbye: {reason}");
    }
}
