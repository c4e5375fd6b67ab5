//! Raw-socket helpers for the tests of calls a server sets aside while
//! they wait for room (`driver/input/defer.rs`). Included by
//! `#[path = "support/set_aside.rs"] mod set_aside;` next to `raw`.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use remote_core::{Limits, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::gate::Gate;
use super::holder::{hold_frame, serve};
use super::raw;

pub fn add(id: u32) -> Vec<u8> {
    raw::call(id, 0, "add", 60_000, &[0x92, 0x01, 0x02])
}

/// Waits until the server has read `n` bytes in all.
pub async fn read_by_server(server: &ServerHandle, n: u64) {
    assert!(
        raw::eventually(|| server.stats().calls.bytes_in >= n).await,
        "the server read {} of {n} bytes",
        server.stats().calls.bytes_in
    );
}

/// Writes `frame`, counting it in `sent`.
pub async fn send(s: &mut TcpStream, sent: &mut u64, frame: &[u8]) {
    s.write_all(frame).await.unwrap();
    *sent += frame.len() as u64;
}

/// The call id and whether it returned (or its error) of the next reply.
pub async fn reply(s: &mut TcpStream) -> (u64, Result<(), String>) {
    loop {
        let f = raw::frame(s).await.expect("connection closed");
        if raw::kind(&f) == raw::RETURN {
            return (raw::id_of(&f), Ok(()));
        }
        if let Some((id, kind, msg)) = raw::error_of(&f) {
            return (id, Err(format!("{kind}: {msg}")));
        }
    }
}

/// A budget of 1 MiB: its share is 128 KiB, so one handler running before
/// its connection's first reply (counted at a full frame) leaves no room
/// for a second call.
pub fn small() -> Limits {
    Limits {
        memory_budget: 1 << 20,
        ..Limits::default()
    }
}

/// A `Holder` server with a [`small`] budget, a raw connection to it that
/// completed the handshake, and one `hold` call (id 1) running on it,
/// waiting on the gate: its share holds no other call. Also what the
/// server will have read once it reads what was sent.
pub async fn one_holding() -> (Arc<Gate>, ServerHandle, TcpStream, u64) {
    let gate = Arc::new(Gate::default());
    let server = serve(small(), gate.clone()).await;
    let mut s = raw::opened(&server).await;
    let mut sent = server.stats().calls.bytes_in;
    send(&mut s, &mut sent, &hold_frame(1, 0)).await;
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    (gate, server, s, sent)
}
