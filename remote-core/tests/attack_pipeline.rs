//! Promise pipelining from a hand-played (raw) peer: the messages without
//! the feature, malformed promise targets, unknown and finished promises,
//! answers that are not objects, and kept answers never finished.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::sync::Arc;

use raw::{eventually, frame, goodbye, kind, next_error, raw_with, ERROR, RETURN};
use remote_core::proto::{
    encode, encode_finish, encode_pipelined_call_head, CallId, CallTarget, ObjectId,
    FEATURE_PIPELINE,
};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[remote]
pub trait Shelf {
    /// Nothing (not an object).
    async fn nop(&self) -> Result<(), Error>;
    /// A fresh object.
    async fn make(&self) -> Result<Remote<dyn Shelf>, Error>;
    /// Never returns.
    async fn hang(&self) -> Result<Remote<dyn Shelf>, Error>;
    /// Panics.
    async fn boom(&self) -> Result<Remote<dyn Shelf>, Error>;
    /// Takes an object (and drops it).
    async fn take(&self, other: Remote<dyn Shelf>) -> Result<(), Error>;
    /// A fresh object, once [`GATE`] is opened.
    async fn gated(&self) -> Result<Remote<dyn Shelf>, Error>;
}

/// Opened by the test that calls `gated`.
static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Objects made by `make` alive now.
struct Item(Arc<AtomicIsize>);

impl Drop for Item {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

struct Impl {
    live: Arc<AtomicIsize>,
    /// Dropped with the object.
    _item: Option<Item>,
}

#[remote]
impl Shelf for Impl {
    async fn nop(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn make(&self) -> Result<Remote<dyn Shelf>, Error> {
        self.live.fetch_add(1, SeqCst);
        let made = Impl {
            live: self.live.clone(),
            _item: Some(Item(self.live.clone())),
        };
        Ok(Remote::new(Arc::new(made) as Arc<dyn Shelf>))
    }
    async fn hang(&self) -> Result<Remote<dyn Shelf>, Error> {
        std::future::pending().await
    }
    async fn boom(&self) -> Result<Remote<dyn Shelf>, Error> {
        // (Not `panic!` itself: a body that only diverges is linted.)
        let nothing = std::hint::black_box(None::<Remote<dyn Shelf>>);
        Ok(nothing.expect("boom"))
    }
    async fn take(&self, other: Remote<dyn Shelf>) -> Result<(), Error> {
        drop(other);
        Ok(())
    }
    async fn gated(&self) -> Result<Remote<dyn Shelf>, Error> {
        GATE.notified().await;
        self.make().await
    }
}

async fn serve(limits: Limits, live: &Arc<AtomicIsize>) -> ServerHandle {
    let live = live.clone();
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| {
            let root = Impl {
                live: live.clone(),
                _item: None,
            };
            Remote::new(Arc::new(root) as Arc<dyn Shelf>)
        })
}

/// A call frame of kind 1 (or 12 if `keep`) to `target`, no arguments.
fn call(keep: bool, id: u32, target: CallTarget, method: &str) -> Vec<u8> {
    let mut b = encode::begin(32);
    encode_pipelined_call_head(&mut b, keep, CallId(id), target, method, 600_000);
    b.push(0x90);
    encode::finish(&mut b);
    b
}

fn obj(id: u32) -> CallTarget {
    CallTarget::Object(ObjectId(id))
}

fn promise(id: u32) -> CallTarget {
    CallTarget::Promise(CallId(id))
}

/// A connection that listed the `pipeline` feature (or not), the server's
/// hello read.
async fn open(server: &ServerHandle, pipeline: bool) -> TcpStream {
    let features = if pipeline {
        vec![FEATURE_PIPELINE]
    } else {
        vec![]
    };
    let mut s = raw_with(server, features).await;
    assert_eq!(kind(&frame(&mut s).await.unwrap()), 0);
    s
}

/// The next return's call id and value bytes.
async fn next_return(s: &mut TcpStream) -> (u64, Vec<u8>) {
    let f = frame(s).await.expect("a reply");
    assert_eq!(kind(&f), RETURN, "a return, got {:?}", raw::error_of(&f));
    // [2, id, value]: fixarray, kind, then a small id.
    (u64::from(f[2]), f[3..].to_vec())
}

#[tokio::test]
async fn pipelining_messages_without_the_feature_are_violations() {
    let live = Arc::new(AtomicIsize::new(0));
    let server = serve(Limits::default(), &live).await;
    for bad in [
        call(true, 1, obj(0), "nop"),
        call(false, 1, promise(1), "nop"),
        encode_finish(CallId(1)),
    ] {
        let mut s = open(&server, false).await;
        s.write_all(&bad).await.unwrap();
        let why = goodbye(&mut s).await.expect("a goodbye");
        assert!(
            why.contains("without the negotiated pipeline feature"),
            "{why}"
        );
    }
}

#[tokio::test]
async fn a_promise_target_nested_wrongly_is_a_violation() {
    let live = Arc::new(AtomicIsize::new(0));
    let server = serve(Limits::default(), &live).await;
    // [1, 1, [[1]], "nop", 600000, []] and [1, 1, [1, 2], ..]
    for target in [&[0x91, 0x91, 0x01][..], &[0x92, 0x01, 0x02]] {
        let mut s = open(&server, true).await;
        let mut b = vec![0, 0, 0, 0, 0x96, 0x01, 0x01];
        b.extend_from_slice(target);
        b.extend_from_slice(&[0xa3, b'n', b'o', b'p', 0x05, 0x90]);
        encode::finish(&mut b);
        s.write_all(&b).await.unwrap();
        let why = goodbye(&mut s).await.expect("a goodbye");
        assert!(why.contains("a promise target is [call_id]"), "{why}");
    }
}

#[tokio::test]
async fn unknown_finished_and_non_object_promises_are_refused_clearly() {
    let live = Arc::new(AtomicIsize::new(0));
    let server = serve(Limits::default(), &live).await;
    let mut s = open(&server, true).await;
    // A promise nobody kept.
    s.write_all(&call(false, 1, promise(99), "nop"))
        .await
        .unwrap();
    let (id, k, msg) = next_error(&mut s).await;
    assert_eq!((id, k.as_str()), (1, "unknown_object"));
    assert!(msg.contains("no kept answer of call 99"), "{msg}");
    // A finish naming nothing is ignored: the connection goes on.
    s.write_all(&encode_finish(CallId(42))).await.unwrap();
    s.write_all(&call(false, 2, obj(0), "nop")).await.unwrap();
    assert_eq!(next_return(&mut s).await.0, 2);

    // An answer that is not an object: pipelined calls fail clearly.
    let mut both = call(true, 3, obj(0), "nop");
    both.extend(call(false, 4, promise(3), "nop"));
    s.write_all(&both).await.unwrap();
    assert_eq!(next_return(&mut s).await, (3, vec![0xc0]));
    let (id, k, msg) = next_error(&mut s).await;
    assert_eq!((id, k.as_str()), (4, "not_a_capability"));
    assert!(
        msg.contains("the answer of call 3 is not a capability"),
        "{msg}"
    );
    // Reusing a kept call's id before its finish is a violation elsewhere;
    // after the finish the promise is gone.
    s.write_all(&encode_finish(CallId(3))).await.unwrap();
    s.write_all(&call(false, 5, promise(3), "nop"))
        .await
        .unwrap();
    let (id, k, _) = next_error(&mut s).await;
    assert_eq!((id, k.as_str()), (5, "unknown_object"));

    // An object: a pipelined call runs on it, even a kept one (a chain).
    let mut chain = call(true, 6, obj(0), "make");
    chain.extend(call(true, 7, promise(6), "make"));
    chain.extend(call(false, 8, promise(7), "nop"));
    s.write_all(&chain).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_return(&mut s).await);
    }
    got.sort();
    assert_eq!(got[0].0, 6);
    assert_eq!(&got[0].1[..2], &[0xd6, 0x01], "a reference");
    assert_eq!(got[1].0, 7);
    assert_eq!(got[2], (8, vec![0xc0]));
    assert_eq!(live.load(SeqCst), 2);

    // A kept call's id reused before its finish: a violation.
    s.write_all(&call(true, 6, obj(0), "nop")).await.unwrap();
    let why = goodbye(&mut s).await.expect("a goodbye");
    assert!(why.contains("names an answer not yet finished"), "{why}");
    drop(s);
    assert!(
        eventually(|| live.load(SeqCst) == 0).await,
        "freed on close"
    );
}

/// Kept answers never finished count as calls in flight: the excess call
/// is refused with `limit_exceeded`, and a finish makes room again.
#[tokio::test]
async fn kept_answers_never_finished_are_bounded_by_max_calls_in_flight() {
    let live = Arc::new(AtomicIsize::new(0));
    let limits = Limits {
        max_calls_in_flight: 4,
        ..Limits::default()
    };
    let server = serve(limits, &live).await;
    let mut s = open(&server, true).await;
    let mut flood = Vec::new();
    for id in 1..=50 {
        flood.extend(call(true, id, obj(0), "nop"));
    }
    s.write_all(&flood).await.unwrap();
    let (mut returns, mut refused) = (0, 0);
    for _ in 1..=50 {
        let f = frame(&mut s).await.expect("a reply");
        match kind(&f) {
            RETURN => returns += 1,
            ERROR => {
                let (_, k, msg) = raw::error_of(&f).unwrap();
                assert_eq!(k, "limit_exceeded");
                assert!(msg.contains("max_calls_in_flight = 4"), "{msg}");
                refused += 1;
            }
            other => panic!("kind {other}"),
        }
    }
    assert_eq!((returns, refused), (4, 46));
    // Still full; a finish frees one slot.
    s.write_all(&call(false, 60, obj(0), "nop")).await.unwrap();
    assert_eq!(next_error(&mut s).await.1, "limit_exceeded");
    s.write_all(&encode_finish(CallId(1))).await.unwrap();
    s.write_all(&call(false, 61, obj(0), "nop")).await.unwrap();
    assert_eq!(next_return(&mut s).await.0, 61);
}

/// A kept answer holds its object after the peer released the reference,
/// until the finish, or until the connection is lost.
#[tokio::test]
async fn a_kept_answer_holds_its_object_until_finish_or_connection_loss() {
    let live = Arc::new(AtomicIsize::new(0));
    let server = serve(Limits::default(), &live).await;
    for finish in [true, false] {
        let mut s = open(&server, true).await;
        s.write_all(&call(true, 1, obj(0), "make")).await.unwrap();
        let (_, value) = next_return(&mut s).await;
        let oid = u32::from_be_bytes(value[2..6].try_into().unwrap());
        s.write_all(&encode::release(ObjectId(oid), 1))
            .await
            .unwrap();
        assert!(eventually(|| server.stats().calls.exports == 0).await);
        // Released by the peer, still held by the kept answer: a call to
        // the promise still reaches it.
        assert_eq!(live.load(SeqCst), 1);
        s.write_all(&call(false, 2, promise(1), "nop"))
            .await
            .unwrap();
        assert_eq!(next_return(&mut s).await.0, 2);
        if finish {
            s.write_all(&encode_finish(CallId(1))).await.unwrap();
        } else {
            drop(s);
        }
        assert!(
            eventually(|| live.load(SeqCst) == 0).await,
            "finish={finish}"
        );
    }
}

/// A call frame of kind 1 (or 12 if `keep`) with raw `args` and
/// `timeout_ms`.
fn call_with(
    keep: bool,
    id: u32,
    target: CallTarget,
    method: &str,
    ms: u32,
    args: &[u8],
) -> Vec<u8> {
    let mut b = encode::begin(32);
    encode_pipelined_call_head(&mut b, keep, CallId(id), target, method, ms);
    b.extend_from_slice(args);
    encode::finish(&mut b);
    b
}

/// `[other]` for `take`: a reference to object `id` of the raw peer (its
/// export, ext type 1).
fn one_ref(id: u32) -> Vec<u8> {
    let mut a = vec![0x91, 0xd6, 0x01];
    a.extend_from_slice(&id.to_be_bytes());
    a
}

/// Whether `n` kept-answer calls are admitted at once (retried while the
/// handlers of earlier calls finish stopping); their answers are finished.
async fn admits(s: &mut TcpStream, n: u32, mut id: u32) -> bool {
    let end = tokio::time::Instant::now() + raw::WAIT;
    while tokio::time::Instant::now() < end {
        let ids: Vec<u32> = (id..id + n).collect();
        id += n;
        let mut batch = Vec::new();
        for &i in &ids {
            batch.extend(call(true, i, obj(0), "nop"));
        }
        s.write_all(&batch).await.unwrap();
        let mut returned = 0;
        for _ in &ids {
            let f = frame(s).await.expect("a reply");
            match kind(&f) {
                RETURN => returned += 1,
                _ => assert_eq!(raw::error_of(&f).unwrap().1, "limit_exceeded"),
            }
        }
        let mut finish = Vec::new();
        for &i in &ids {
            finish.extend(encode_finish(CallId(i)));
        }
        s.write_all(&finish).await.unwrap();
        if returned == n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    false
}

/// Pipelined calls refused for every reason a promise can fail (no such
/// answer, not an object, the first call cancelled, panicked, or past its
/// deadline) get that reason, release the references in their arguments
/// (PROTOCOL.md §4), and leave no slot of `max_calls_in_flight` taken once
/// the answers are finished.
#[tokio::test]
async fn failed_promises_release_their_calls_references_and_slots() {
    let live = Arc::new(AtomicIsize::new(0));
    let limits = Limits {
        max_calls_in_flight: 8,
        ..Limits::default()
    };
    let server = serve(limits, &live).await;
    let mut s = open(&server, true).await;
    let long = 600_000;
    let mut out = call_with(false, 1, promise(99), "take", long, &one_ref(7));
    out.extend(call(true, 2, obj(0), "nop"));
    out.extend(call_with(false, 3, promise(2), "take", long, &one_ref(8)));
    out.extend(call(true, 4, obj(0), "hang"));
    out.extend(call_with(false, 5, promise(4), "take", long, &one_ref(9)));
    out.extend(call(true, 6, obj(0), "boom"));
    out.extend(call_with(false, 7, promise(6), "take", long, &one_ref(10)));
    out.extend(call_with(true, 8, obj(0), "hang", 1, &[0x90]));
    out.extend(call_with(false, 9, promise(8), "take", long, &one_ref(11)));
    s.write_all(&out).await.unwrap();
    let want = |id| match id {
        1 => "unknown_object",
        3 => "not_a_capability",
        4 | 5 => "cancelled",
        6 | 7 => "panic",
        8 | 9 => "deadline_exceeded",
        other => panic!("no error expected for call {other}"),
    };
    let (mut errors, mut released) = (Vec::new(), Vec::new());
    let mut cancel_sent = false;
    while errors.len() < 8 || released.len() < 5 {
        let f = frame(&mut s).await.expect("a reply or a release");
        match kind(&f) {
            ERROR => {
                let (id, k, msg) = raw::error_of(&f).unwrap();
                assert_eq!(k, want(id), "call {id}: {msg}");
                errors.push(id);
            }
            RETURN => assert_eq!(f[2], 2, "only call 2 returns"),
            raw::RELEASE => {
                // [4, id, 1]: each reference given back once.
                assert_eq!(f[3], 1, "{f:?}");
                released.push(f[2]);
            }
            other => panic!("kind {other}"),
        }
        // Call 5 is queued on call 4's answer once call 4 runs; cancel it.
        if !cancel_sent {
            cancel_sent = true;
            s.write_all(&encode::cancel(CallId(4))).await.unwrap();
        }
    }
    errors.sort_unstable();
    released.sort_unstable();
    assert_eq!(errors, [1, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(released, [7, 8, 9, 10, 11]);
    let mut finish = Vec::new();
    for id in [2, 4, 6, 8] {
        finish.extend(encode_finish(CallId(id)));
    }
    s.write_all(&finish).await.unwrap();
    assert!(admits(&mut s, 8, 100).await, "every slot free again");
}

/// No promise can name its own call or a later one (no cycles), and a
/// chain thousands long, queued behind a first call that waits, resolves
/// hop by hop without recursion; everything is freed with the connection.
#[tokio::test]
async fn cycles_are_impossible_and_a_long_chain_resolves() {
    let live = Arc::new(AtomicIsize::new(0));
    let limits = Limits {
        max_calls_in_flight: 8192,
        max_kept_answers_per_peer: 8192,
        ..Limits::default()
    };
    let server = serve(limits, &live).await;
    let mut s = open(&server, true).await;
    let mut out = call(true, 5, promise(5), "make");
    out.extend(call(true, 6, promise(7), "make"));
    out.extend(call(true, 7, promise(6), "make"));
    s.write_all(&out).await.unwrap();
    for want in [5, 6, 7] {
        let (id, k, _) = next_error(&mut s).await;
        assert_eq!((id, k.as_str()), (want, "unknown_object"));
    }
    const N: u32 = 3000;
    let mut out = call(true, 1000, obj(0), "gated");
    for id in 1001..1000 + N {
        out.extend(call(true, id, promise(id - 1), "make"));
    }
    out.extend(call(false, 1000 + N, promise(1000 + N - 1), "nop"));
    s.write_all(&out).await.unwrap();
    GATE.notify_one();
    for _ in 0..=N {
        let f = frame(&mut s).await.expect("a reply");
        assert_eq!(kind(&f), RETURN, "{:?}", raw::error_of(&f));
    }
    assert_eq!(live.load(SeqCst), N as isize);
    drop(s);
    assert!(eventually(|| live.load(SeqCst) == 0).await);
}

/// Unfinished kept answers do not keep a quiet connection open (they are
/// not "calls in flight" for the idle timeout, PROTOCOL.md §9): a peer that
/// released its object and went quiet is closed, and the object is freed.
#[tokio::test]
async fn kept_answers_do_not_keep_an_idle_connection_open() {
    let live = Arc::new(AtomicIsize::new(0));
    let idle = std::time::Duration::from_millis(300);
    let limits = Limits {
        idle_timeout: idle,
        unauthenticated_idle_timeout: idle,
        ..Limits::default()
    };
    let server = serve(limits, &live).await;
    let mut s = open(&server, true).await;
    s.write_all(&call(true, 1, obj(0), "make")).await.unwrap();
    let (_, value) = next_return(&mut s).await;
    let oid = u32::from_be_bytes(value[2..6].try_into().unwrap());
    s.write_all(&encode::release(ObjectId(oid), 1))
        .await
        .unwrap();
    let why = goodbye(&mut s).await.expect("a goodbye");
    assert!(why.contains("no traffic for"), "{why}");
    assert!(eventually(|| live.load(SeqCst) == 0).await);
}

/// A finish that arrives before its kept call has answered (red-team pass
/// 23): every call still gets exactly one reply, and once the calls end no
/// slot of `max_calls_in_flight` and no kept answer's id stays taken.
#[tokio::test]
async fn a_finish_before_the_kept_answer_leaves_no_slot_taken() {
    let live = Arc::new(AtomicIsize::new(0));
    let limits = Limits {
        max_calls_in_flight: 4,
        ..Limits::default()
    };
    let server = serve(limits, &live).await;
    let mut s = open(&server, true).await;
    let mut out = Vec::new();
    for id in 1..=4u32 {
        out.extend(call_with(true, id, obj(0), "hang", 300, &[0x90]));
        out.extend(call_with(
            false,
            100 + id,
            promise(id),
            "make",
            300,
            &[0x90],
        ));
        out.extend(encode_finish(CallId(id)));
    }
    s.write_all(&out).await.unwrap();
    let mut answered = Vec::new();
    for _ in 0..8 {
        let f = frame(&mut s).await.expect("a reply");
        let (id, k, msg) = raw::error_of(&f).expect("an error: no call can succeed");
        assert!(
            k == "deadline_exceeded" || k == "limit_exceeded",
            "call {id}: {k}: {msg}"
        );
        answered.push(id);
    }
    answered.sort_unstable();
    assert_eq!(answered, [1, 2, 3, 4, 101, 102, 103, 104]);
    // The same ids kept again, all at once (retried while the handlers
    // stop): every slot and id is free.
    assert!(admits(&mut s, 4, 1).await, "every slot free again");
    assert_eq!(live.load(SeqCst), 0, "nothing was made");
}
