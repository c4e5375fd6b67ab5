//! Arguments that decode into far more memory than their frame.
//!
//! The share accounting (PROTOCOL.md §9, driver/share.rs) counts what a
//! running handler's arguments hold. It used to count the call frame's
//! length, assuming arguments decode "into about as much"; but a
//! `Vec<String>` of empty strings is 1 byte per element on the wire and 24
//! bytes (plus the `Vec`'s growth slack) decoded. Eight 1 MiB calls to a
//! handler that awaits were admitted at once (their frames fit the 8 MiB
//! share) and held 257 MiB (found by a red-team pass). Each item of the
//! arguments now counts `DECODED_ITEM` (48) bytes on top of the frame, so
//! such a call counts 49 MiB and runs alone ("one handler may always
//! run").
//!
//! A raw peer pipelines 1 MiB calls to a handler that awaits; the test lets
//! them finish one by one and measures, each time one runs, how many run
//! and the live heap (a counting allocator). One test per binary: the
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
async fn arguments_count_at_their_decoded_size_while_their_handler_runs() {
    const CALLS: u32 = 12;
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let mut s = raw::opened(&server).await;
    // One small reply first: the reply estimate drops to its floor, so the
    // share admits handlers by what their arguments hold.
    s.write_all(&raw::call(0, 0, "add", 60_000, &[0x92, 0x01, 0x02]))
        .await
        .unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::RETURN);
    let n = (1usize << 20) - 64;
    let frames: Vec<Vec<u8>> = (1..=CALLS).map(|id| hold_frame(id, n)).collect();
    let baseline = counting::live();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        for f in &frames {
            w.write_all(f).await.unwrap();
        }
        (w, frames)
    });
    // Each call in turn: once it runs, measure, then let it finish.
    let mut peak = 0isize;
    for i in 0..CALLS as usize {
        assert!(
            raw::eventually(|| gate.done.load(SeqCst) == i && gate.running.load(SeqCst) >= 1).await,
            "call {i} never ran"
        );
        if i == 0 {
            // With the first call running, a second would start as soon as
            // its frame is read if arguments counted at their frame's
            // length. Its start cannot be waited for when it must not
            // happen: this window only makes the check sensitive (the test
            // passes whatever the machine's speed when the count is right).
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                raw::eventually(|| gate.running.load(SeqCst) >= 2),
            )
            .await;
        }
        peak = peak.max(counting::live() - baseline);
        gate.open.add_permits(1);
    }
    for _ in 0..CALLS {
        let f = raw::bounded(raw::frame(&mut r)).await.expect("a reply");
        assert_eq!(raw::kind(&f), raw::RETURN, "{:?}", raw::error_of(&f));
    }
    let (_w, _frames) = raw::bounded(writer).await.unwrap();
    let most = gate.most.load(SeqCst);
    // Each call counts 49 MiB against an 8 MiB share: it runs alone. It
    // holds about 24-32 MiB decoded; the frames read ahead and the buffers
    // add a few MiB. Eight at once held 257 MiB.
    let bound: isize = 80 << 20;
    assert!(
        peak <= bound && most == 1,
        "{most} handlers ran at once, holding {} MiB decoded from 1 MiB frames \
         (bound {} MiB)",
        peak >> 20,
        bound >> 20
    );
}
