//! A served `#[remote]` object behind a `ws://` server, fed the fuzzer's
//! bytes as a client's raw TCP stream. The input's first byte: with bit 0
//! a valid upgrade request goes first, and its response is awaited (a
//! client waits for it, RFC 6455 §4.1: tungstenite refuses bytes right
//! behind the request); with bit 1 a hello in a binary WebSocket frame
//! follows, the rest right behind it; with bit 2 the rest is cut at 0xfe
//! bytes into masked binary frames (so the fuzzer reaches the protocol
//! too), else sent as it is (WebSocket frames of its own). Never panics;
//! the server closes the connection once the client's stream ends, and
//! then holds no connection, export, object or byte of its memory budget.
#![no_main]

#[path = "common/server.rs"]
mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use remote_core::ServerHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn server() -> &'static ServerHandle {
    static S: OnceLock<ServerHandle> = OnceLock::new();
    S.get_or_init(|| common::runtime().block_on(common::serve("ws://127.0.0.1:0/")))
}

/// A masked binary frame (mask key `0x5a` bytes) carrying `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0x5a; 4]);
    f.extend(payload.iter().map(|b| b ^ 0x5a));
    f
}

/// Reads the head of the upgrade response (a byte at a time: nothing of
/// what follows is taken), or up to the end of the stream.
async fn response(s: &mut tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let server = server();
    let authority = server
        .local_addr()
        .strip_prefix("ws://")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let mut upgrade = Vec::new();
    let mut input = Vec::new();
    if mode & 1 == 1 {
        upgrade.extend_from_slice(
            format!(
                "GET / HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        );
        if mode & 2 == 2 {
            input.extend(frame(&common::hello(vec![])));
        }
    }
    if mode & 4 == 4 {
        for part in data.split(|b| *b == 0xfe) {
            input.extend(frame(part));
        }
    } else {
        input.extend_from_slice(data);
    }
    common::runtime().block_on(async {
        let mut s = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect");
        if !upgrade.is_empty() {
            s.write_all(&upgrade).await.expect("the upgrade request");
            tokio::time::timeout(common::BOUND, response(&mut s))
                .await
                .expect("the upgrade is answered");
        }
        common::play(s, &input).await;
        common::settled(server).await;
    });
});
