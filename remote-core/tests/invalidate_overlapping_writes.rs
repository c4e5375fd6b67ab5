//! Overlapping writes and an honest holder that is only slightly late
//! (PROTOCOL.md §3.9, `driver/lateness.rs`). A late wait used to reserve
//! the whole rest of the timeout (1.75 s at the defaults) from the
//! holder's allowance up front: a holder acknowledging every push 300 ms
//! after it (50 ms past the prompt 250 ms, far under an eighth of wall
//! time on average) was not waited for once four writes overlapped:
//! three reservations held the 5.25 s allowance while using ~150 ms of
//! it, the fourth found it empty, stopped at once without the
//! acknowledgement and drained it, and the writes after it did not wait
//! for the holder at all (their readers could see stale cached values;
//! writes 3-5 of 8, 10 ms apart). The per-address allowance had the same
//! fault. Now a late wait reserves a slice (the prompt part) at a time,
//! and reservations of other waits under way never drain an allowance.

#[path = "support/late_holder.rs"]
mod late_holder;
#[path = "support/pipe.rs"]
mod pipe;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use late_holder::{holder, Doc, Page};
use pipe::head;
use remote_core::proto::encode_invalidated;
use remote_core::{Limits, Remote};
use tokio::io::{AsyncRead, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn overlapping_writes_still_wait_for_an_honest_slightly_late_holder() {
    const WRITES: usize = 8;
    let root: Arc<dyn Doc> = Arc::new(Page);
    // Defaults: 2 s timeout (prompt 250 ms), 3 missed acks' worth (5.25 s).
    let _conn = holder(&root, Limits::default(), Duration::from_millis(300)).await;
    let mut all = Vec::new();
    for _ in 0..WRITES {
        let root = root.clone();
        all.push(tokio::spawn(async move {
            remote_core::cache::invalidate(&root, &["text"]).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut missed = Vec::new();
    for (i, w) in all.into_iter().enumerate() {
        let r = w.await.unwrap();
        assert_eq!(r.notified, 1);
        if r.unacknowledged > 0 {
            missed.push((i, r.timed_out));
        }
    }
    // Lateness used: 8 x 50 ms = 0.4 s of a 5.25 s allowance.
    assert!(
        missed.is_empty(),
        "writes not waiting for an honest holder acknowledging in 300 ms \
         ((index, timed_out)): {missed:?}"
    );
}

/// Acknowledges each push read from `r` `delay` after it arrives, on `w`.
fn acknowledge_after<R, W>(mut r: R, w: W, delay: Duration) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let w = Arc::new(tokio::sync::Mutex::new(w));
    tokio::spawn(async move {
        while let Some(f) = raw::frame(&mut r).await {
            if raw::kind(&f) == 10 {
                let token = head(&f).1.unwrap();
                let w = w.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = w.lock().await.write_all(&encode_invalidated(token)).await;
                });
            }
        }
    })
}

/// The same for the allowance of a peer address: four honest TCP holders
/// behind one address, each of its own object, acknowledging in 300 ms;
/// eight overlapping writes, each to one of the objects (two per
/// connection: no connection's own allowance is ever short). Each used
/// to reserve 1.75 s from the address's allowance: the fourth found it
/// empty, stopped without the acknowledgement and drained it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_writes_still_wait_for_honest_holders_behind_one_address() {
    const HOLDERS: usize = 4;
    const WRITES: usize = 8;
    let docs: Vec<Arc<dyn Doc>> = (0..HOLDERS)
        .map(|_| Arc::new(Page) as Arc<dyn Doc>)
        .collect();
    // The connections are opened one by one: the ith serves docs[i].
    let next = Arc::new(std::sync::Mutex::new(docs.clone().into_iter()));
    let server = remote_core::Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(next.lock().unwrap().next().unwrap()));
    let mut ackers = Vec::new();
    for _ in 0..HOLDERS {
        let mut s = raw::connect(&server).await;
        s.write_all(&raw::hello(vec!["invalidate"])).await.unwrap();
        s.write_all(&raw::call(1, 0, "text", 60_000, &[0x90]))
            .await
            .unwrap();
        raw::next_of_kind(&mut s, raw::RETURN).await;
        let (r, w) = s.into_split();
        ackers.push(acknowledge_after(r, w, Duration::from_millis(300)));
    }
    let mut all = Vec::new();
    for i in 0..WRITES {
        let doc = docs[i % HOLDERS].clone();
        all.push(tokio::spawn(async move {
            remote_core::cache::invalidate(&doc, &["text"]).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut missed = Vec::new();
    for (i, w) in all.into_iter().enumerate() {
        let r = w.await.unwrap();
        assert_eq!(r.notified, 1);
        if r.unacknowledged > 0 {
            missed.push((i, r.timed_out));
        }
    }
    for a in ackers {
        a.abort();
    }
    assert!(
        missed.is_empty(),
        "writes not waiting for honest holders behind one address \
         acknowledging in 300 ms ((index, timed_out)): {missed:?}"
    );
}
