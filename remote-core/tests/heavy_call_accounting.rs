//! What heavy calls count in the memory budget (PROTOCOL.md §9) is given
//! back however they end: cancelled while running, stopped by their
//! deadline, refused at dispatch (unknown method or object, bad
//! arguments), dropped with their connection while waiting in line for
//! room or while running. The count never wraps and comes back to where
//! it started. (After a red-team pass that tried each of these.)

#[path = "support/gate.rs"]
mod gate;
#[path = "support/holder.rs"]
mod holder;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use gate::Gate;
use holder::{array_args as args, serve};
use remote_core::proto::{encode, CallId};
use remote_core::Limits;
use tokio::io::AsyncWriteExt;

/// Empty strings in a frame of a little less than 1 MiB: 49 MiB counted.
const BIG: usize = (1 << 20) - 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_calls_ended_every_way_give_their_count_back() {
    let gate = Arc::new(Gate::default());
    let budget = Limits::default().memory_budget;
    let server = serve(Limits::default(), gate.clone()).await;
    let idle = server.buffered_bytes();
    let within = || {
        let n = server.buffered_bytes();
        assert!(n <= budget, "{n} bytes counted against {budget}");
    };
    // X runs a 49 MiB call that waits.
    let mut x = raw::opened(&server).await;
    x.write_all(&raw::call(1, 0, "hold", 600_000, &args(BIG, 0xa0)))
        .await
        .unwrap();
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    within();
    // Y's heavy call waits in line for room; Y then drops its connection.
    let mut y = raw::opened(&server).await;
    y.write_all(&raw::call(1, 0, "hold", 600_000, &args(BIG, 0xa0)))
        .await
        .unwrap();
    assert!(raw::eventually(|| server.calls_waiting_for_memory() == 1).await);
    drop(y);
    // Z's heavy call (28 MiB) waits, with a 1.5 s deadline once it runs.
    let mut z = raw::opened(&server).await;
    z.write_all(&raw::call(1, 0, "hold", 1_500, &args(600_000, 0xa0)))
        .await
        .unwrap();
    assert!(raw::eventually(|| server.calls_waiting_for_memory() >= 1).await);
    // X cancels its call: the handler is aborted, and Z gets the room.
    x.write_all(&encode::cancel(CallId(1))).await.unwrap();
    let (_, kind, _) = raw::bounded(raw::next_error(&mut x)).await;
    assert_eq!(kind, "cancelled");
    // Z runs, then its deadline stops it.
    let (_, kind, _) = raw::bounded(raw::next_error(&mut z)).await;
    assert_eq!(kind, "deadline_exceeded");
    within();
    // Heavy calls that fail at dispatch.
    let mut w = raw::opened(&server).await;
    for (id, target, method, item, want) in [
        (2, 0, "nope", 0xa0u8, "unknown_method"),
        (3, 99, "hold", 0xa0, "unknown_object"),
        (4, 0, "add", 0xc0, "bad_arguments"),
        (5, 0, "hold", 0xc0, "bad_arguments"), // nils for strings
    ] {
        w.write_all(&raw::call(id, target, method, 600_000, &args(BIG, item)))
            .await
            .unwrap();
        let (_, kind, message) = raw::bounded(raw::next_error(&mut w)).await;
        assert_eq!(kind, want, "call {id}: {message}");
    }
    // A heavy call with a 1 ms deadline...
    w.write_all(&raw::call(6, 0, "hold", 1, &args(BIG, 0xa0)))
        .await
        .unwrap();
    let (_, kind, _) = raw::bounded(raw::next_error(&mut w)).await;
    assert_eq!(kind, "deadline_exceeded");
    // ...and one running when its connection drops.
    let done = gate.done.load(SeqCst);
    w.write_all(&raw::call(7, 0, "hold", 600_000, &args(BIG, 0xa0)))
        .await
        .unwrap();
    assert!(
        raw::eventually(|| gate.running.load(SeqCst) == 1).await,
        "call 7 never ran: {} bytes counted, {} in line, {} running, {} done",
        server.buffered_bytes(),
        server.calls_waiting_for_memory(),
        gate.running.load(SeqCst),
        gate.done.load(SeqCst)
    );
    assert!(
        server.buffered_bytes() >= BIG * 49,
        "a running 49 MiB call counts {} bytes",
        server.buffered_bytes()
    );
    drop(w);
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 0).await);
    assert_eq!(gate.done.load(SeqCst), done, "aborted, not ended");
    drop(x);
    drop(z);
    assert!(
        raw::eventually(|| server.connections() == 0 && server.buffered_bytes() <= idle).await,
        "count left: {} bytes (idle: {idle})",
        server.buffered_bytes()
    );
}
