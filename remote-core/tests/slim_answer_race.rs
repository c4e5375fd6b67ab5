//! Calls pipelined on a *slim* kept answer (the server's pool of answers
//! kept in full is used up: `max_kept_answers`) that arrive while the kept
//! call runs, so wait for its answer, survive the caller's release of the
//! object right after the reply (PROTOCOL.md §3.10, "What the caller
//! does", step 3: a caller that no longer uses the promise sends finish
//! and releases the reference as soon as the reply comes). A slim answer
//! holds its object only through its export, but each call waiting for it
//! is bound to the object when the answer is set, before the reply is
//! queued: the release, read by the connection's reader while the woken
//! calls wait for a run turn, used to drop the object first, and they
//! failed with `unknown_object` (red-team pass 47: 54–313 of 1,200). The
//! object is still held no longer than those calls need it: once they ran
//! (or stopped: cancelled, their connection closed) it goes with the
//! release, before the finish; calls arriving after the release fail as
//! before.
//!
//! The first test is the red-team's measurement (a race: it failed on
//! some runs); the others are deterministic: one run turn
//! (`max_running_handlers = 1`), held by a high-priority handler of
//! another connection from the kept call's reply until the release has
//! been read (its pong seen), so the waiting calls cannot run first.

#[path = "support/gate.rs"]
mod gate;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicIsize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use gate::Gate;
use remote_core::proto::{
    encode, encode_finish, encode_ping, encode_pipelined_call_head, CallId, CallTarget, ObjectId,
    Reader, FEATURE_KEEPALIVE, FEATURE_PIPELINE,
};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[remote]
pub trait Opener {
    /// A fresh object, once the gate lets it (and the latch, if set).
    async fn make(&self) -> Result<Remote<dyn Thing>, Error>;
    /// 7.
    async fn tag(&self) -> Result<u32, Error>;
    /// Blocks its thread in the server's only run turn until let go.
    #[remote(priority = high)]
    async fn hold(&self) -> Result<(), Error>;
}

#[remote]
pub trait Thing {
    /// 7.
    async fn tag(&self) -> Result<u32, Error>;
}

/// A point a handler blocks its thread at (in its run turn) until the
/// test opens it; `reached` once a handler is there.
#[derive(Default)]
struct Latch {
    reached: AtomicBool,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Latch {
    fn wait(&self) {
        self.reached.store(true, SeqCst);
        // `block_in_place` hands the worker's other tasks to another
        // thread: only the turn is held.
        tokio::task::block_in_place(|| {
            let open = self.open.lock().unwrap();
            let (_open, waited) = self
                .opened
                .wait_timeout_while(open, raw::WAIT, |open| !*open)
                .unwrap();
            assert!(!waited.timed_out(), "the test never opened the latch");
        });
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Opens the latches when dropped: a test that fails lets its blocked
/// handlers go (its runtime would wait for them).
struct LetGo(Arc<Opens>);

impl Drop for LetGo {
    fn drop(&mut self) {
        self.0.hold.open();
        if let Some(stall) = &self.0.stall {
            stall.open();
        }
    }
}

#[derive(Default)]
struct Opens {
    gate: Gate,
    /// Where `make` stops after the gate, if set.
    stall: Option<Latch>,
    hold: Latch,
    /// `One`s alive.
    live: Arc<AtomicIsize>,
}

struct One(Arc<AtomicIsize>);

impl Drop for One {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

#[remote]
impl Opener for Arc<Opens> {
    async fn make(&self) -> Result<Remote<dyn Thing>, Error> {
        self.gate.pass().await;
        if let Some(stall) = &self.stall {
            stall.wait();
        }
        self.live.fetch_add(1, SeqCst);
        Ok(Remote::new(
            Arc::new(One(self.live.clone())) as Arc<dyn Thing>
        ))
    }
    async fn tag(&self) -> Result<u32, Error> {
        Ok(7)
    }
    async fn hold(&self) -> Result<(), Error> {
        self.hold.wait();
        Ok(())
    }
}

#[remote]
impl Thing for One {
    async fn tag(&self) -> Result<u32, Error> {
        Ok(7)
    }
}

fn kept(id: u32, target: CallTarget, method: &str, keep: bool) -> Vec<u8> {
    let mut b = encode::begin(32);
    encode_pipelined_call_head(&mut b, keep, CallId(id), target, method, 60_000);
    b.push(0x90);
    encode::finish(&mut b);
    b
}

/// The object id of a return frame whose value is one type-1 reference.
fn returned_ref(f: &[u8]) -> Option<u32> {
    let mut r = Reader::new(f);
    if r.array_len().ok()? != 3 || r.uint().ok()? != 2 {
        return None;
    }
    r.uint().ok()?;
    let rest = &f[r.pos()..];
    match rest {
        [0xd6, 1, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

const ROOT: CallTarget = CallTarget::Object(ObjectId(0));

/// A server whose pool of answers kept in full is used up by each
/// connection's own first four, so the fifth is slim (in real life, peers
/// of four addresses fill the default pool).
async fn server(opens: Arc<Opens>, turns: Option<usize>) -> ServerHandle {
    let mut limits = Limits {
        max_kept_answers: 4,
        max_kept_answers_per_peer: 4,
        ..Limits::default()
    };
    if let Some(turns) = turns {
        limits.max_running_handlers = turns;
    }
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(opens.clone()) as Arc<dyn Opener>))
}

/// A connection past its hello and a first reply (the share's estimate),
/// with four answers kept in full: its next kept answer is slim.
async fn slim_ready(server: &ServerHandle) -> TcpStream {
    let mut s = raw::raw_with(server, vec![FEATURE_PIPELINE, FEATURE_KEEPALIVE]).await;
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
    s.write_all(&kept(1, ROOT, "tag", false)).await.unwrap();
    raw::next_of_kind(&mut s, raw::RETURN).await;
    for id in 2..=5 {
        s.write_all(&kept(id, ROOT, "tag", true)).await.unwrap();
        raw::bounded(raw::frame(&mut s)).await.unwrap();
    }
    s
}

/// Sends a ping and reads up to its pong: every frame sent before it has
/// been read by the server. The frames read meanwhile.
async fn pong(s: &mut TcpStream, token: u32) -> Vec<Vec<u8>> {
    s.write_all(&encode_ping(token)).await.unwrap();
    let mut before = Vec::new();
    loop {
        let f = raw::frame(s).await.expect("a pong");
        if raw::kind(&f) == raw::PONG {
            return before;
        }
        before.push(f);
    }
}

/// Reads `n` replies to calls on the promise: how many succeeded, and the
/// first failure.
async fn replies(s: &mut TcpStream, n: usize) -> (usize, Option<String>) {
    let (mut ok, mut failure) = (0, None);
    for _ in 0..n {
        let f = raw::frame(s).await.expect("a reply");
        match raw::error_of(&f) {
            Some((_, kind, msg)) => drop(failure.get_or_insert(format!("{kind}: {msg}"))),
            None => {
                assert_eq!(raw::kind(&f), raw::RETURN);
                ok += 1;
            }
        }
    }
    (ok, failure)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_on_a_slim_answer_survive_the_callers_release_after_the_reply() {
    let opens = Arc::new(Opens::default());
    let server = server(opens.clone(), None).await;
    let mut s = slim_ready(&server).await;

    const ROUNDS: u32 = 20;
    const ON_EACH: u32 = 60;
    let (mut ok, mut failed, mut first_failure) = (0, 0, None);
    for round in 0..ROUNDS {
        let base = 1000 + round * 100;
        // `make()` kept (slim), and calls on its promise sent before its
        // reply: they arrive while it runs, so they wait for the answer.
        let mut b = kept(base, ROOT, "make", true);
        for k in 1..=ON_EACH {
            b.extend(kept(
                base + k,
                CallTarget::Promise(CallId(base)),
                "tag",
                false,
            ));
        }
        s.write_all(&b).await.unwrap();
        assert!(raw::eventually(|| opens.gate.running.load(SeqCst) == 1).await);
        opens.gate.open.add_permits(1);
        // The caller no longer uses the promise: on the reply it finishes
        // it and releases the object (PROTOCOL.md §3.10, step 3).
        let mut answered = 0;
        while answered < ON_EACH {
            let f = raw::bounded(raw::frame(&mut s)).await.expect("a frame");
            if let Some(obj) = returned_ref(&f) {
                let mut bye = encode_finish(CallId(base));
                bye.extend(encode::release(ObjectId(obj), 1));
                s.write_all(&bye).await.unwrap();
                continue;
            }
            match raw::error_of(&f) {
                Some((_, kind, msg)) => {
                    failed += 1;
                    first_failure.get_or_insert(format!("{kind}: {msg}"));
                    answered += 1;
                }
                None if raw::kind(&f) == raw::RETURN => {
                    ok += 1;
                    answered += 1;
                }
                None => {}
            }
        }
    }
    println!(
        "{} calls sent before the reply on slim answers: {ok} answered, {failed} failed \
         (first: {first_failure:?})",
        ROUNDS * ON_EACH
    );
    assert_eq!(
        failed, 0,
        "{failed} of {} pipelined calls sent before their promise's reply failed: {first_failure:?}",
        ROUNDS * ON_EACH
    );
    // Every object went with its release.
    assert!(raw::eventually(|| opens.live.load(SeqCst) == 0).await);
    drop(s);
    server.shutdown(Duration::from_secs(5)).await;
}

/// Calls on a promise waiting for a slim answer; the caller releases the
/// object on the reply, and the server reads the release before any of
/// them gets a turn.
struct Starved {
    opens: Arc<Opens>,
    server: ServerHandle,
    /// The caller's connection; the make's call id is `MAKE`.
    s: TcpStream,
    /// The connection whose `hold` holds the only run turn.
    holder: TcpStream,
    /// The object the make returned.
    obj: u32,
    let_go: LetGo,
}

const MAKE: u32 = 100;
const WAITING: u32 = 24;

/// Up to the kept call's reply: `hold` (high priority, on another
/// connection) waits for the only run turn, which `make` holds, so it
/// takes it from the reply on; the calls on the promise wait behind it.
async fn starved() -> Starved {
    let opens = Arc::new(Opens {
        stall: Some(Latch::default()),
        ..Opens::default()
    });
    let let_go = LetGo(opens.clone());
    let server = server(opens.clone(), Some(1)).await;
    let mut s = slim_ready(&server).await;
    let mut holder = raw::raw_with(&server, vec![]).await;
    assert_eq!(
        raw::kind(&raw::frame(&mut holder).await.unwrap()),
        raw::HELLO
    );

    let mut b = kept(MAKE, ROOT, "make", true);
    for k in 1..=WAITING {
        b.extend(kept(
            MAKE + k,
            CallTarget::Promise(CallId(MAKE)),
            "tag",
            false,
        ));
    }
    s.write_all(&b).await.unwrap();
    // Every call on the promise was read (and waits for the answer).
    assert!(pong(&mut s, 1).await.is_empty());
    assert!(raw::eventually(|| opens.gate.running.load(SeqCst) == 1).await);
    opens.gate.open.add_permits(1);
    let stall = opens.stall.as_ref().unwrap();
    assert!(raw::eventually(|| stall.reached.load(SeqCst)).await);
    // `make` holds the only turn: `hold` queues for it.
    holder
        .write_all(&raw::call(1, 0, "hold", 60_000, &[0x90]))
        .await
        .unwrap();
    assert!(raw::eventually(|| server.calls_waiting() == 1).await);
    stall.open();
    let f = raw::frame(&mut s).await.expect("make's reply");
    let obj = returned_ref(&f).unwrap_or_else(|| panic!("not an object: {f:?}"));
    assert!(raw::eventually(|| opens.hold.reached.load(SeqCst)).await);
    assert_eq!(opens.live.load(SeqCst), 1);
    Starved {
        opens,
        server,
        s,
        holder,
        obj,
        let_go,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_that_waited_run_on_the_object_though_its_release_was_read_first() {
    raw::bounded(async {
        let Starved {
            opens,
            server,
            mut s,
            mut holder,
            obj,
            let_go: _let_go,
        } = starved().await;
        // The release only (the finish comes last): read before any of the
        // calls on the promise got a turn.
        s.write_all(&encode::release(ObjectId(obj), 1))
            .await
            .unwrap();
        assert!(
            pong(&mut s, 2).await.is_empty(),
            "a call ran before the release"
        );
        // Held for the calls that waited (it went here, and every one of
        // them failed with `unknown_object`).
        assert_eq!(
            opens.live.load(SeqCst),
            1,
            "the object went with the release"
        );
        opens.hold.open();
        assert_eq!(
            raw::kind(&raw::frame(&mut holder).await.unwrap()),
            raw::RETURN
        );
        let (ok, failure) = replies(&mut s, WAITING as usize).await;
        assert_eq!(ok, WAITING as usize, "first failure: {failure:?}");
        // Then no longer: released, it goes before the finish.
        assert!(raw::eventually(|| opens.live.load(SeqCst) == 0).await);
        // And a call arriving after the release fails, as before.
        let late = CallTarget::Promise(CallId(MAKE));
        s.write_all(&kept(MAKE + 99, late, "tag", false))
            .await
            .unwrap();
        let (_, kind, message) = raw::next_error(&mut s).await;
        assert_eq!(kind, "unknown_object", "{message}");
        assert!(message.contains("was released by the caller"), "{message}");
        s.write_all(&encode_finish(CallId(MAKE))).await.unwrap();
        assert!(pong(&mut s, 3).await.is_empty());
        drop((s, holder));
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_that_waited_hold_nothing_once_their_connection_is_gone() {
    raw::bounded(async {
        let Starved {
            opens,
            server,
            s,
            mut holder,
            let_go: _let_go,
            ..
        } = starved().await;
        // The caller goes, its calls on the promise still starved of a
        // turn: the object goes with the connection, not with them.
        drop(s);
        assert!(raw::eventually(|| opens.live.load(SeqCst) == 0).await);
        opens.hold.open();
        assert_eq!(
            raw::kind(&raw::frame(&mut holder).await.unwrap()),
            raw::RETURN
        );
        drop(holder);
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_stopped_waiting_do_not_keep_a_slim_answers_object() {
    raw::bounded(async {
        let opens = Arc::new(Opens::default());
        let server = server(opens.clone(), None).await;
        let mut s = slim_ready(&server).await;
        let mut b = kept(MAKE, ROOT, "make", true);
        for k in 1..=WAITING {
            b.extend(kept(
                MAKE + k,
                CallTarget::Promise(CallId(MAKE)),
                "tag",
                false,
            ));
        }
        s.write_all(&b).await.unwrap();
        assert!(raw::eventually(|| opens.gate.running.load(SeqCst) == 1).await);
        // Every call on the promise is cancelled while it waits.
        let mut cancels = Vec::new();
        for k in 1..=WAITING {
            cancels.extend(encode::cancel(CallId(MAKE + k)));
        }
        s.write_all(&cancels).await.unwrap();
        for _ in 0..WAITING {
            let (_, kind, message) = raw::next_error(&mut s).await;
            assert_eq!(kind, "cancelled", "{message}");
        }
        opens.gate.open.add_permits(1);
        let f = raw::frame(&mut s).await.expect("make's reply");
        let obj = returned_ref(&f).unwrap_or_else(|| panic!("not an object: {f:?}"));
        assert_eq!(opens.live.load(SeqCst), 1);
        // Released (not finished): nothing holds it for the cancelled calls.
        s.write_all(&encode::release(ObjectId(obj), 1))
            .await
            .unwrap();
        assert!(raw::eventually(|| opens.live.load(SeqCst) == 0).await);
        s.write_all(&encode_finish(CallId(MAKE))).await.unwrap();
        assert!(pong(&mut s, 1).await.is_empty());
        drop(s);
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
