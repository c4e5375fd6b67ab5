//! Heavy calls (arguments that count more than 64 KiB: the frame and 48
//! bytes per item) wait for room in the server's memory budget before they
//! start, and count in it until their handler stops (PROTOCOL.md §9). The
//! server-wide bound itself is measured in `attack_decoded_args_server.rs`.

#[path = "support/gate.rs"]
mod gate;
#[path = "support/holder.rs"]
mod holder;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use gate::Gate;
use holder::{hold_frame, Holder, Impl};
use remote_core::{Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;

/// Empty strings in a frame of a little less than 1 MiB.
const N: usize = (1 << 20) - 64;

async fn serve(limits: Limits, gate: Arc<Gate>) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(Impl(gate.clone())) as Arc<dyn Holder>))
}

/// The reply to `hold`: how many strings the handler got.
fn held_count(f: &[u8]) -> u64 {
    assert_eq!(raw::kind(f), raw::RETURN, "{:?}", raw::error_of(f));
    // [2, id, value]: a fixarray of 3, kind 2, a small id, then a uint32.
    assert_eq!(f[..3], [0x93, 0x02, 0x01]);
    assert_eq!(f[3], 0xce, "a uint32");
    u64::from(u32::from_be_bytes([f[4], f[5], f[6], f[7]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_heavier_than_the_whole_budget_still_runs() {
    // 49 MiB of arguments against a 4 MiB budget: it waits for half of the
    // budget, never for more than there is.
    let limits = Limits {
        memory_budget: 4 << 20,
        ..Limits::default()
    };
    let gate = Arc::new(Gate::default());
    gate.open.add_permits(1);
    let server = serve(limits, gate.clone()).await;
    let mut s = raw::opened(&server).await;
    s.write_all(&hold_frame(1, N)).await.unwrap();
    let f = raw::bounded(raw::frame(&mut s)).await.expect("a reply");
    assert_eq!(held_count(&f), N as u64);
    assert!(
        raw::eventually(|| server.buffered_bytes() < 64 << 10).await,
        "its count was not given back: {} bytes",
        server.buffered_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_heavy_call_counts_in_the_budget_until_it_stops() {
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let mut s = raw::opened(&server).await;
    s.write_all(&hold_frame(1, N)).await.unwrap();
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    // The frame and 48 bytes per string.
    let weight = N * 49;
    assert!(
        server.buffered_bytes() >= weight,
        "a running handler holding 1M strings counts {} bytes",
        server.buffered_bytes()
    );
    gate.open.add_permits(1);
    let f = raw::bounded(raw::frame(&mut s)).await.expect("a reply");
    assert_eq!(held_count(&f), N as u64);
    assert!(
        raw::eventually(|| server.buffered_bytes() < 64 << 10).await,
        "its count was not given back: {} bytes",
        server.buffered_bytes()
    );
}
