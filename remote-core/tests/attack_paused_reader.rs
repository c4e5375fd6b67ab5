//! A reader waiting for room to start a call still reads, to notice its
//! peer's close, but only into its buffer's spare room. It used to make
//! that room first (`reserve`) whenever little was left: the reader's
//! wait starts again on each of its turns (a timer, a control message),
//! so a peer that sent more than the room behind a waiting call doubled
//! the buffer on every turn, outside the memory budget (found by a
//! red-team pass: 391 MiB in one second with 100 ms keepalive turns).
//!
//! A heavy call waits behind a running one while its peer sends 64 MiB
//! more; the live heap is sampled for two seconds of 100 ms timer turns.
//! One test per binary: the counting allocator counts the whole process.

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
use std::time::Duration;

use gate::Gate;
use holder::{hold_frame, serve};
use remote_core::Limits;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_reader_reads_into_its_spare_room_only() {
    let gate = Arc::new(Gate::default());
    let limits = Limits {
        keepalive_interval: Some(Duration::from_millis(100)),
        ..Limits::default()
    };
    let server = serve(limits, gate.clone()).await;
    let big = hold_frame(1, (1 << 20) - 64);
    let mut running = raw::opened(&server).await;
    running.write_all(&big).await.unwrap();
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    let mut waiting = raw::raw_with(&server, vec!["keepalive"]).await;
    let f = raw::bounded(raw::frame(&mut waiting)).await.expect("hello");
    assert_eq!(raw::kind(&f), raw::HELLO);
    waiting.write_all(&big).await.unwrap();
    assert!(raw::eventually(|| server.calls_waiting_for_memory() == 1).await);
    let baseline = counting::live();
    let (_r, mut w) = waiting.into_split();
    let flood = tokio::spawn(async move {
        let junk = vec![0xc0u8; 1 << 20];
        for _ in 0..64 {
            if w.write_all(&junk).await.is_err() {
                break;
            }
        }
        w
    });
    // Growth cannot be waited for when it must not happen: this window
    // (about twenty of the reader's timer turns) only makes the check
    // sensitive; the test passes whatever the machine's speed when the
    // reader reads into its spare room only.
    let mut peak = 0isize;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(counting::live() - baseline);
    }
    flood.abort();
    gate.open.add_permits(2);
    drop(running);
    assert!(
        peak < 8 << 20,
        "the waiting reader's buffer grew by {} MiB",
        peak >> 20
    );
}
