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
#[path = "support/set_aside.rs"]
mod set_aside;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use gate::Gate;
use holder::{hold_frame, serve};
use remote_core::proto::encode_pong;
use set_aside::{add, read_by_server, reply, send, small};

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
