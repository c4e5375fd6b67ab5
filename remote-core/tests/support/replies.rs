//! Raw calls that pass the server one of our objects, and raw replies of
//! many strings to the calls it makes back on it (the heavy-reply tests).
//! Included by `#[path = "support/replies.rs"] mod replies;` beside `raw`.
#![allow(dead_code, unreachable_pub)]

use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::ServerHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw;

/// `method(our object `object`)` on the root as call `k`, which may take
/// `timeout_ms`.
pub fn call_with_object(method: &str, k: u32, object: u32, timeout_ms: u32) -> Vec<u8> {
    let mut b = encode::begin(64);
    encode::call_head(&mut b, CallId(k), ObjectId(0), method, timeout_ms);
    b.extend_from_slice(&[0x91, 0xd6, 0x01]);
    b.extend_from_slice(&object.to_be_bytes());
    encode::finish(&mut b);
    b
}

/// A frame of `kind` 2 (a return) or 3 (an application error) to call
/// `id`, whose value (or error data) is `n` strings of `len` bytes.
pub fn strings(kind: u8, id: u64, n: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x93, kind, 0xce];
    p.extend_from_slice(&(id as u32).to_be_bytes());
    if kind == 3 {
        p.push(0x96);
        for s in ["application", "BigErr", "m"] {
            p.push(0xa0 | s.len() as u8);
            p.extend_from_slice(s.as_bytes());
        }
        p.extend_from_slice(&[0x90, 0xc0]); // no chain, no backtrace
    }
    p.push(0xdd);
    p.extend_from_slice(&n.to_be_bytes());
    for _ in 0..n {
        if len == 0 {
            p.push(0xa0);
        } else {
            p.push(0xda);
            p.extend_from_slice(&(len as u16).to_be_bytes());
            p.resize(p.len() + len, b'x');
        }
    }
    let mut f = (p.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&p);
    f
}

/// [`strings`] of `n` empty strings (a byte each on the wire).
pub fn empty_strings(kind: u8, id: u64, n: u32) -> Vec<u8> {
    strings(kind, id, n, 0)
}

/// A raw client of `server` that called `method(its object 1)`, which
/// may take `timeout_ms`, and was called back: the socket and the
/// callback's id.
pub async fn called_back(server: &ServerHandle, method: &str, timeout_ms: u32) -> (TcpStream, u64) {
    let (s, backs) = called_back_n(server, vec![], method, 1, timeout_ms).await;
    (s, backs[0])
}

/// A raw client of `server`, its hello listing `features`, that made
/// `calls` calls `method(its object 1)` at once (ids 1 to `calls`), each
/// of which may take `timeout_ms`, and was called back by each before
/// answering any: the socket and the callbacks' ids.
pub async fn called_back_n(
    server: &ServerHandle,
    features: Vec<&str>,
    method: &str,
    calls: u32,
    timeout_ms: u32,
) -> (TcpStream, Vec<u64>) {
    let mut s = raw::raw_with(server, features).await;
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
    let all: Vec<u8> = (1..=calls)
        .flat_map(|k| call_with_object(method, k, 1, timeout_ms))
        .collect();
    s.write_all(&all).await.unwrap();
    let mut backs = Vec::new();
    for _ in 0..calls {
        let back = raw::bounded(raw::next_of_kind(&mut s, raw::CALL)).await;
        backs.push(raw::id_of(&back));
    }
    (s, backs)
}
