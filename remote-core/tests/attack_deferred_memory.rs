//! A frame a server sets aside while it waits for room
//! (`driver/input/defer.rs`) is a copy: a view into the read buffer kept
//! its whole allocation alive, uncounted (a red-team pass held 2.5 MB,
//! with 2.3 KB counted, by sending 16 KiB of pongs after each call set
//! aside). One test in this binary: it measures the process's heap.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/gate.rs"]
mod gate;
#[path = "support/holder.rs"]
mod holder;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use gate::Gate;
use holder::{hold_frame, serve};
use remote_core::proto::{encode_pong, Reader};
use remote_core::{Limits, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn add(id: u32) -> Vec<u8> {
    raw::call(id, 0, "add", 60_000, &[0x92, 0x01, 0x02])
}

/// Waits until the server has read `n` bytes in all.
async fn read_by_server(server: &ServerHandle, n: u64) {
    assert!(
        raw::eventually(|| server.stats().calls.bytes_in >= n).await,
        "the server read {} of {n} bytes",
        server.stats().calls.bytes_in
    );
}

/// Writes `frame`, counting it in `sent`.
async fn send(s: &mut TcpStream, sent: &mut u64, frame: &[u8]) {
    s.write_all(frame).await.unwrap();
    *sent += frame.len() as u64;
}

/// The call id and whether it returned (or its error) of the next reply.
async fn reply(s: &mut TcpStream) -> (u64, Result<(), String>) {
    loop {
        let f = raw::frame(s).await.expect("connection closed");
        if raw::kind(&f) == raw::RETURN {
            let mut r = Reader::new(&f);
            r.array_len().unwrap();
            r.uint().unwrap();
            return (r.uint().unwrap(), Ok(()));
        }
        if let Some((id, kind, msg)) = raw::error_of(&f) {
            return (id, Err(format!("{kind}: {msg}")));
        }
    }
}

/// A budget of 1 MiB: its share is 128 KiB, so one handler running before
/// its connection's first reply (counted at a full frame) leaves no room
/// for a second call.
fn small() -> Limits {
    Limits {
        memory_budget: 1 << 20,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_set_aside_do_not_keep_read_buffers_alive() {
    let gate = Arc::new(Gate::default());
    let server = serve(small(), gate.clone()).await;
    // Pongs are part of the `keepalive` feature.
    let mut s = raw::raw_with(&server, vec!["keepalive"]).await;
    raw::frame(&mut s).await.expect("the server's hello");
    let mut sent = server.stats().calls.bytes_in;
    send(&mut s, &mut sent, &hold_frame(1, 0)).await;
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    read_by_server(&server, sent).await;
    let base = counting::live();
    // 100 calls set aside, each followed by 20 KiB of pongs (handled at
    // once) that fill the read buffer past it.
    let mut pongs = Vec::new();
    while pongs.len() < 20 << 10 {
        pongs.extend_from_slice(&encode_pong(12345));
    }
    for id in 2..102 {
        send(&mut s, &mut sent, &add(id)).await;
        send(&mut s, &mut sent, &pongs).await;
    }
    read_by_server(&server, sent).await;
    let grown = counting::live() - base;
    // A view of each would keep a read chunk (16 KiB) alive: 1.6 MB.
    assert!(
        grown < 256 << 10,
        "{grown} bytes held for 100 calls set aside"
    );
    gate.open.add_permits(1);
    for _ in 1..102 {
        let (id, r) = raw::bounded(reply(&mut s)).await;
        assert!(r.is_ok(), "call {id}: {r:?}");
    }
}
