//! Our calls' reply slots (`replies.rs`) are freed however a call ends:
//! dropped by its caller, failed at its deadline, or failed because the
//! connection closed; and a waiting caller is woken with the outcome.

use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::call::Handle;
use crate::{ConnectionBuilder, Error};

/// A call to method `wait` on the peer's root within `timeout`.
fn call(
    handle: &Handle,
    timeout: Duration,
) -> impl std::future::Future<Output = Result<(), Error>> {
    crate::with_timeout(timeout, handle.call::<(), (), Error>("wait", ()))
}

#[tokio::test]
async fn a_reply_slot_is_freed_when_its_call_is_dropped_expires_or_is_lost() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(ours);
    // The peer says hello, then reads everything and answers nothing.
    let peer = tokio::spawn(async move {
        let (mut pr, mut pw) = tokio::io::split(theirs);
        pw.write_all(&super::reader::hello(None, None))
            .await
            .unwrap();
        let mut sink = vec![0u8; 4096];
        while matches!(pr.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let conn = ConnectionBuilder::new().over(r, w, "silent").await.unwrap();
    let shared = conn.shared.clone();
    let handle = Handle::root(shared.arc().clone());

    // Dropped by its caller after it was sent.
    let mut dropped = Box::pin(call(&handle, Duration::from_secs(3600)));
    assert!(dropped.as_mut().now_or_never().is_none());
    assert_eq!(shared.replies.in_use(), 1);
    drop(dropped);
    assert_eq!(shared.replies.in_use(), 0, "a dropped call keeps its slot");

    // Failed at its deadline by the connection's timer.
    let expired = tokio::time::timeout(
        Duration::from_secs(60),
        call(&handle, Duration::from_millis(50)),
    )
    .await
    .expect("the deadline never fired");
    assert!(
        matches!(expired, Err(Error::DeadlineExceeded(_))),
        "{expired:?}"
    );
    assert_eq!(shared.replies.in_use(), 0, "an expired call keeps its slot");

    // Waiting when the connection closes: woken with the loss.
    let waiting = tokio::spawn(call(&handle, Duration::from_secs(3600)));
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while shared.replies.in_use() == 0 && std::time::Instant::now() < end {
        tokio::task::yield_now().await;
    }
    assert_eq!(shared.replies.in_use(), 1);
    conn.close();
    let lost = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the waiting caller was never woken")
        .expect("the caller's task");
    assert!(matches!(lost, Err(Error::ConnectionLost(_))), "{lost:?}");
    assert_eq!(shared.replies.in_use(), 0, "a lost call keeps its slot");
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(60), peer).await;
}

/// A generated proxy's call borrows its handle (`Handle::call_ref`): never
/// polled, it sends nothing; dropped while waiting, it frees its reply
/// slot and the peer gets that call's cancel.
#[tokio::test]
async fn a_borrowed_call_sends_nothing_unpolled_and_cancels_dropped_while_waiting() {
    use crate::proto::{kind, Reader};

    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(ours);
    // The peer says hello, then reports each later frame's kind and call
    // id, and answers nothing.
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let peer = tokio::spawn(async move {
        let (mut pr, mut pw) = tokio::io::split(theirs);
        pw.write_all(&super::reader::hello(None, None))
            .await
            .unwrap();
        loop {
            let mut len = [0u8; 4];
            if pr.read_exact(&mut len).await.is_err() {
                break;
            }
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            if pr.read_exact(&mut f).await.is_err() {
                break;
            }
            let mut r = Reader::new(&f);
            r.array_len().unwrap();
            let k = r.uint().unwrap();
            if k != u64::from(kind::HELLO) {
                let _ = tx.send((k, r.uint().unwrap()));
            }
        }
    });
    let conn = ConnectionBuilder::new().over(r, w, "silent").await.unwrap();
    let shared = conn.shared.clone();
    let handle = Handle::root(shared.arc().clone());
    let call = || handle.call_ref::<(), (), Error>("wait", ());

    drop(call());
    assert_eq!(shared.replies.in_use(), 0, "an unpolled call took a slot");
    let mut waiting = call();
    assert!(waiting.as_mut().now_or_never().is_none());
    assert_eq!(shared.replies.in_use(), 1);
    drop(waiting);
    assert_eq!(shared.replies.in_use(), 0, "a dropped call keeps its slot");

    // The frames up to the cancel: one call (the unpolled one sent none),
    // then its cancel.
    let frames = tokio::time::timeout(Duration::from_secs(60), async {
        let mut frames = Vec::new();
        while let Some((k, id)) = seen.recv().await {
            frames.push((k, id));
            if k == u64::from(kind::CANCEL) {
                break;
            }
        }
        frames
    })
    .await
    .expect("no cancel reached the peer");
    match frames[..] {
        [(call, a), (cancel, b)] => {
            assert_eq!(call, u64::from(kind::CALL), "{frames:?}");
            assert_eq!(cancel, u64::from(kind::CANCEL), "{frames:?}");
            assert_eq!(a, b, "the cancel names another call: {frames:?}");
        }
        _ => panic!("expected one call then its cancel: {frames:?}"),
    }
    conn.close();
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(60), peer).await;
}
