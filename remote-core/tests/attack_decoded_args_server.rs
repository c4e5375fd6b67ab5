//! Arguments that decode far larger than their frame, summed over a
//! server's connections.
//!
//! Each connection counts what its running handlers' arguments hold
//! (`attack_decoded_args.rs`), but one handler may always run per
//! connection: four connections each running one 1 MiB call of empty
//! strings held 128 MiB against the 64 MiB memory budget (found by a
//! red-team pass), and `max_connections` of them would hold that many
//! times 32 MiB. A heavy call (one whose arguments count more than 64 KiB)
//! now waits for room in the budget before it starts, and a running
//! handler's arguments stay counted in the budget until it stops. A light
//! call from another connection is still served meanwhile.
//!
//! Raw peers each send one such call to a handler that waits; the test
//! lets them finish one by one and measures, each time one runs, how many
//! run and the live heap (a counting allocator). One test per binary: the
//! allocator counts the whole process.

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
use remote_core::Limits;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_arguments_wait_for_room_in_the_servers_budget() {
    const CONNS: usize = 4;
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        conns.push(raw::opened(&server).await);
    }
    let mut bystander = raw::opened(&server).await;
    let n = (1usize << 20) - 64;
    let frame = hold_frame(1, n);
    let baseline = counting::live();
    for s in &mut conns {
        s.write_all(&frame).await.unwrap();
    }
    drop(frame);
    let mut peak = 0isize;
    for i in 0..CONNS {
        assert!(
            raw::eventually(|| gate.done.load(SeqCst) == i && gate.running.load(SeqCst) >= 1).await,
            "call {i} never ran"
        );
        if i == 0 {
            // With the first call running, another connection's would start
            // as soon as its frame is read if the budget did not count
            // them. Its start cannot be waited for when it must not happen:
            // this window only makes the check sensitive (the test passes
            // whatever the machine's speed when the count is right).
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                raw::eventually(|| gate.running.load(SeqCst) >= 2),
            )
            .await;
            // Small calls are still served while heavy ones wait.
            bystander
                .write_all(&raw::call(7, 0, "add", 60_000, &[0x92, 0x01, 0x02]))
                .await
                .unwrap();
            let f = raw::bounded(raw::frame(&mut bystander))
                .await
                .expect("a reply");
            assert_eq!(raw::kind(&f), raw::RETURN, "{:?}", raw::error_of(&f));
        }
        peak = peak.max(counting::live() - baseline);
        gate.open.add_permits(1);
    }
    for s in &mut conns {
        let f = raw::bounded(raw::frame(s)).await.expect("a reply");
        assert_eq!(raw::kind(&f), raw::RETURN, "{:?}", raw::error_of(&f));
    }
    let most = gate.most.load(SeqCst);
    // Each call counts 49 MiB, so only one fits in the 64 MiB budget at a
    // time. It holds about 24-32 MiB decoded; the four frames read and the
    // buffers add a few MiB. Four at once held 128 MiB.
    let bound: isize = 48 << 20;
    assert!(
        peak <= bound && most == 1,
        "{most} handlers ran at once on {CONNS} connections, holding {} MiB decoded \
         from 1 MiB frames (bound {} MiB)",
        peak >> 20,
        bound >> 20
    );
}
