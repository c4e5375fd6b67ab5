//! Our calls' deadlines are kept by one connection timer (`expiry.rs`): a
//! call with a deadline earlier than every waiting call's re-arms it, and
//! an expired call is failed here and cancelled at the peer, even when the
//! peer never answers.

use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::call::Handle;
use crate::proto::{kind, Reader};
use crate::{ConnectionBuilder, Error};

/// Reads one length-prefixed frame (its payload).
async fn frame(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut f).await.ok()?;
    Some(f)
}

fn kind_of(f: &[u8]) -> u64 {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    r.uint().unwrap()
}

#[tokio::test]
async fn a_short_deadline_expires_while_a_long_call_waits_on_a_silent_peer() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(ours);
    // The peer says hello, then reads everything and answers nothing; it
    // reports the kinds of the frames it gets.
    let (kinds_tx, mut kinds) = mpsc::unbounded_channel();
    let peer = tokio::spawn(async move {
        let (mut pr, mut pw) = tokio::io::split(theirs);
        pw.write_all(&super::reader::hello(None, None))
            .await
            .unwrap();
        while let Some(f) = frame(&mut pr).await {
            let _ = kinds_tx.send(kind_of(&f));
        }
    });
    let conn = ConnectionBuilder::new().over(r, w, "silent").await.unwrap();
    let handle = Handle::root(conn.shared.arc().clone());

    // Sent first, with a deadline far away: the timer is armed for it.
    let long = remote_core_call(&handle, Duration::from_secs(3600));
    tokio::pin!(long);
    assert!(long.as_mut().now_or_never().is_none());
    // A later call with a short deadline must re-arm the timer.
    let short = remote_core_call(&handle, Duration::from_millis(100));
    let r = tokio::time::timeout(Duration::from_secs(60), short)
        .await
        .expect("the short deadline never fired");
    match r {
        Err(Error::DeadlineExceeded(budget)) => {
            assert!(budget <= Duration::from_millis(100), "{budget:?}")
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    // The long call still waits.
    assert!(long.as_mut().now_or_never().is_none());
    // The peer saw both calls, then the expired call's cancel.
    let mut seen = Vec::new();
    let got_cancel = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(k) = kinds.recv().await {
            seen.push(k);
            if k == u64::from(kind::CANCEL) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got_cancel, Ok(true), "frames seen: {seen:?}");
    let calls = seen.iter().filter(|&&k| k == u64::from(kind::CALL)).count();
    assert_eq!(calls, 2, "frames seen: {seen:?}");
    conn.close();
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(60), peer).await;
}

/// A call to method `wait` on the peer's root within `timeout`.
fn remote_core_call(
    handle: &Handle,
    timeout: Duration,
) -> impl std::future::Future<Output = Result<(), Error>> {
    crate::with_timeout(timeout, handle.call::<(), (), Error>("wait", ()))
}
