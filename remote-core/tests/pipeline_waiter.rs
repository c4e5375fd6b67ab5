//! The calling side of a pipelined (kept-answer) call whose promise is the
//! call's waiter (`driver/promise.rs`), against a hand-played callee: every
//! way the call ends (an error reply, our deadline, a call too large to
//! send) settles the promise once, and `finish` goes out exactly once for
//! a call that was sent, never for one that was not.

#[path = "support/pipe.rs"]
mod pipe;

use std::sync::Arc;
use std::time::Duration;

use pipe::{frame, head, raw_peer, PeerRead};
use remote_core::proto::{encode, CallId, FEATURE_PIPELINE};
use remote_core::{remote, Connection, Error, Limits, Promise, Remote, RemoteError};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Opener {
    async fn open(&self, name: String) -> Result<Remote<dyn Opener>, Error>;
    async fn ping(&self) -> Result<(), Error>;
}

struct Here;

#[remote]
impl Opener for Here {
    async fn open(&self, _name: String) -> Result<Remote<dyn Opener>, Error> {
        Ok(Remote::new(Arc::new(Here) as Arc<dyn Opener>))
    }
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

const CALL: u64 = 1;
const CANCEL: u64 = 5;
const KEPT_CALL: u64 = 12;
const FINISH: u64 = 13;

/// Our connection (serving an `Opener` it never uses) to a raw callee
/// that lists the pipeline feature, and the callee's root as a proxy.
async fn setup(limits: Limits) -> (Connection, Remote<dyn Opener>, PeerRead, pipe::PeerWrite) {
    let root: Remote<dyn Opener> = Remote::new(Arc::new(Here));
    let (conn, mut pr, pw) = raw_peer(root, limits, vec![FEATURE_PIPELINE]).await;
    assert_eq!(head(&frame(&mut pr).await.unwrap()).0, 0, "hello");
    let api = conn.root::<dyn Opener>();
    (conn, api, pr, pw)
}

fn open(api: &Remote<dyn Opener>, name: String) -> Promise<dyn Opener> {
    api.handle().unwrap().pipeline("open", (name,))
}

/// Bounds a wait that only an event ends.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("not within 60 s")
}

/// Makes an ordinary call to the callee's root (a marker: frames queued
/// before it reach the callee before it), and returns the frames the
/// callee read up to it, as `(kind, id)`.
async fn frames_up_to_a_marker(
    api: &Remote<dyn Opener>,
    pr: &mut PeerRead,
) -> Vec<(u64, Option<u64>)> {
    let api = api.clone();
    tokio::spawn(async move {
        let _ = api.ping().await;
    });
    let mut seen = Vec::new();
    loop {
        let f = bounded(frame(pr)).await.expect("the connection is open");
        let h = head(&f);
        if h.0 == CALL {
            return seen;
        }
        seen.push(h);
    }
}

fn remote_error(kind: &str) -> RemoteError {
    RemoteError {
        kind: kind.into(),
        type_name: "test::E".into(),
        message: format!("{kind} from the callee"),
        chain: vec![],
        backtrace: None,
        data: None,
    }
}

fn count(seen: &[(u64, Option<u64>)], kind: u64, id: u64) -> usize {
    seen.iter().filter(|&&h| h == (kind, Some(id))).count()
}

#[tokio::test]
async fn a_pipelined_call_too_large_to_send_fails_and_no_finish_follows() {
    let limits = Limits {
        max_frame_len: 64 << 10,
        ..Limits::default()
    };
    let (conn, api, mut pr, _pw) = setup(limits).await;
    let p = open(&api, "x".repeat(100 << 10));
    match bounded(p.resolved()).await {
        Err(Error::LimitExceeded { .. }) => {}
        Err(e) if e.to_string().contains("max_frame_len") => {}
        Err(e) => panic!("expected the frame limit, got {e:?}"),
        Ok(_) => panic!("expected the frame limit, got an object"),
    }
    // Calls on it fail with the same error, and send nothing.
    assert!(bounded(p.ping()).await.is_err());
    let seen = frames_up_to_a_marker(&api, &mut pr).await;
    assert!(
        !seen.iter().any(|h| h.0 == KEPT_CALL || h.0 == FINISH),
        "frames for a call never sent: {seen:?}"
    );
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn an_error_reply_settles_the_promise_and_finish_goes_once_after_its_calls() {
    let (conn, api, mut pr, mut pw) = setup(Limits::default()).await;
    let p = open(&api, "a".into());
    let f = bounded(frame(&mut pr)).await.unwrap();
    let (k, id) = head(&f);
    assert_eq!(k, KEPT_CALL);
    let id = id.unwrap();
    // A call on the promise, sent before its reply.
    let on_promise = {
        let p = p.clone();
        tokio::spawn(async move { p.ping().await })
    };
    let f = bounded(frame(&mut pr)).await.unwrap();
    assert_ne!(head(&f).0, FINISH);
    let e = remote_error("nope");
    pw.write_all(&encode::error(CallId(id as u32), &e, &Limits::default()))
        .await
        .unwrap();
    match bounded(p.resolved()).await {
        Err(Error::Remote(r)) => assert_eq!(r.kind, "nope"),
        Err(e) => panic!("expected the callee's error, got {e:?}"),
        Ok(_) => panic!("expected the callee's error, got an object"),
    }
    let seen = frames_up_to_a_marker(&api, &mut pr).await;
    assert_eq!(count(&seen, FINISH, id), 1, "finish once: {seen:?}");
    // A second marker: no finish came late.
    let seen = frames_up_to_a_marker(&api, &mut pr).await;
    assert_eq!(count(&seen, FINISH, id), 0, "finish twice: {seen:?}");
    drop(on_promise);
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn our_deadline_cancels_and_finishes_once_and_a_late_reply_is_dropped() {
    let limits = Limits {
        default_deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let (conn, api, mut pr, mut pw) = setup(limits).await;
    let p = open(&api, "slow".into());
    let f = bounded(frame(&mut pr)).await.unwrap();
    let (k, id) = head(&f);
    assert_eq!(k, KEPT_CALL);
    let id = id.unwrap();
    match bounded(p.resolved()).await {
        Err(Error::DeadlineExceeded(budget)) => {
            assert_eq!(budget, Duration::from_millis(300));
        }
        Err(e) => panic!("expected the call's deadline, got {e:?}"),
        Ok(_) => panic!("expected the call's deadline, got an object"),
    }
    let seen = frames_up_to_a_marker(&api, &mut pr).await;
    assert_eq!(count(&seen, CANCEL, id), 1, "cancel once: {seen:?}");
    assert_eq!(count(&seen, FINISH, id), 1, "finish once: {seen:?}");
    // The callee's one reply to the cancelled call is dropped quietly.
    let e = remote_error("cancelled");
    pw.write_all(&encode::error(CallId(id as u32), &e, &Limits::default()))
        .await
        .unwrap();
    let seen = frames_up_to_a_marker(&api, &mut pr).await;
    assert_eq!(count(&seen, FINISH, id), 0, "finish twice: {seen:?}");
    assert!(matches!(
        bounded(p.resolved()).await,
        Err(Error::DeadlineExceeded(_))
    ));
    assert!(!conn.is_closed());
}
