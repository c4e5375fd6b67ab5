//! On several workers the reader hands the replies of a run of frames to
//! their callers together, when it next waits for input (`replies.rs`,
//! `Deliveries`). Every reply reaches its own caller however many come in
//! one read (more than a batch holds, out of order), including the replies
//! read just before the peer closes the connection: they are the callers'
//! answers, not a lost connection. Each step is bounded, so a reply left
//! in a batch fails the test instead of hanging it.

#[path = "support/pipe.rs"]
mod pipe;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use remote_core::{remote, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Echo {
    async fn echo(&self, x: u32) -> Result<u32, Error>;
}

/// What the client serves (nothing is called on it here).
struct Local;

#[remote]
impl Echo for Local {
    async fn echo(&self, x: u32) -> Result<u32, Error> {
        Ok(x)
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("within 30 s")
}

/// A MessagePack unsigned integer.
fn uint(v: u64) -> Vec<u8> {
    match v {
        0..=0x7f => vec![v as u8],
        0x80..=0xff => vec![0xcc, v as u8],
        0x100..=0xffff => [&[0xcd][..], &(v as u16).to_be_bytes()].concat(),
        _ => [&[0xce][..], &(v as u32).to_be_bytes()].concat(),
    }
}

/// A connection to a hand-played peer, the peer's hello read.
async fn peer() -> (remote_core::Connection, pipe::PeerRead, pipe::PeerWrite) {
    let (conn, mut pr, pw) = pipe::raw_peer(
        Remote::new(Arc::new(Local) as Arc<dyn Echo>),
        Limits::default(),
        vec![],
    )
    .await;
    let _hello = bounded(pipe::frame(&mut pr)).await.unwrap();
    (conn, pr, pw)
}

/// `calls` calls of `echo(i)` in flight; the hand-played server reads them
/// all, answers them in reverse order in one write, then (if `close`)
/// shuts its side. Every caller gets its own argument back.
async fn answered_in_one_write(calls: u32, close: bool) {
    let (conn, mut pr, mut pw) = peer().await;
    let root = conn.root::<dyn Echo>();
    let callers: Vec<_> = (0..calls)
        .map(|i| {
            let root = root.clone();
            tokio::spawn(async move { root.echo(i % 100).await })
        })
        .collect();
    let mut replies = Vec::new();
    for _ in 0..calls {
        let call = bounded(pipe::frame(&mut pr)).await.unwrap();
        let (kind, id) = pipe::head(&call);
        assert_eq!(kind, 1, "a call");
        // `echo`'s one argument, a fixint, is the call's last byte.
        let x = *call.last().unwrap();
        let mut reply = vec![0x93, 0x02];
        reply.extend(uint(id.unwrap()));
        reply.push(x);
        replies.push(reply);
    }
    let mut out = Vec::new();
    for r in replies.iter().rev() {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    pw.write_all(&out).await.unwrap();
    if close {
        pw.shutdown().await.unwrap();
    }
    for (i, caller) in callers.into_iter().enumerate() {
        let got = bounded(caller).await.unwrap();
        assert_eq!(got.ok(), Some(i as u32 % 100), "call {i}");
    }
    if close {
        bounded(async {
            while !conn.is_closed() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_replies_reaches_each_caller() {
    answered_in_one_write(8, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_replies_than_a_batch_holds_reach_each_caller() {
    answered_in_one_write(150, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_read_just_before_the_peer_closes_are_answers() {
    answered_in_one_write(8, true).await;
    answered_in_one_write(150, true).await;
}

#[tokio::test(flavor = "current_thread")]
async fn on_one_thread_too() {
    answered_in_one_write(150, true).await;
}

struct PanicsOnWake;

impl Wake for PanicsOnWake {
    fn wake(self: Arc<Self>) {
        panic!("a waker that panics");
    }
}

/// The reply frame answering `call` (`echo(x)`, x a fixint) with x.
fn reply_to(call: &[u8]) -> Vec<u8> {
    let mut reply = vec![0x93, 0x02];
    reply.extend(uint(pipe::head(call).1.unwrap()));
    reply.push(*call.last().unwrap());
    let mut f = (reply.len() as u32).to_be_bytes().to_vec();
    f.extend(reply);
    f
}

// Found by a red-team pass: a caller polled by hand with a waker that
// panics, its reply in the same batch as two others: the panic was the
// reader's, and the others' replies, out of the table the close fails,
// were never handed over (they waited for good). The panic is caught and
// the others get their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_waker_does_not_strand_the_batch() {
    let (conn, mut pr, mut pw) = peer().await;
    let root = conn.root::<dyn Echo>();
    let waker = Waker::from(Arc::new(PanicsOnWake));
    let mut a = Box::pin(root.echo(1));
    assert!(a
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    let mut out = reply_to(&bounded(pipe::frame(&mut pr)).await.unwrap());
    let mut others = Vec::new();
    for x in [2, 3] {
        let root = root.clone();
        others.push(tokio::spawn(async move { root.echo(x).await }));
        out.extend(reply_to(&bounded(pipe::frame(&mut pr)).await.unwrap()));
    }
    pw.write_all(&out).await.unwrap();
    for (x, caller) in [2, 3].into_iter().zip(others) {
        assert_eq!(bounded(caller).await.unwrap().ok(), Some(x));
    }
    // A's reply is in its slot, taken at its next poll.
    let got = a.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(got, std::task::Poll::Ready(Ok(1))), "{got:?}");
    assert!(!conn.is_closed(), "the connection goes on");
}
