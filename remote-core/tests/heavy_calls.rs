//! Heavy calls (arguments that count more than 64 KiB: the frame and 48
//! bytes per item) wait for room in the server's memory budget before they
//! start, and count in it until their handler stops (PROTOCOL.md §9). The
//! server-wide bound itself is measured in `attack_decoded_args_server.rs`.

#[path = "support/gate.rs"]
mod gate;
#[path = "support/holder.rs"]
mod holder;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use gate::Gate;
use holder::{array_args, hold_frame, serve};
use remote_core::proto::{
    encode, encode_finish, encode_pipelined_call_head, CallId, CallTarget, ObjectId,
    FEATURE_PIPELINE,
};
use remote_core::{Limits, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Empty strings in a frame of a little less than 1 MiB.
const N: usize = (1 << 20) - 64;

/// The reply to `hold`: how many strings the handler got.
fn held_count(f: &[u8]) -> u64 {
    assert_eq!(raw::kind(f), raw::RETURN, "{:?}", raw::error_of(f));
    // [2, id, value]: a fixarray of 3, kind 2, a small id, then a uint32.
    assert_eq!(f[..3], [0x93, 0x02, 0x01]);
    assert_eq!(f[3], 0xce, "a uint32");
    u64::from(u32::from_be_bytes([f[4], f[5], f[6], f[7]]))
}

/// A 4 MiB budget, which a call of `N` empty strings (49 MiB) could never
/// fit in.
fn small_budget() -> Limits {
    Limits {
        memory_budget: 4 << 20,
        ..Limits::default()
    }
}

/// A server at the default limits where X runs a 49 MiB call (waiting at
/// the gate), and Y, connected, has sent nothing yet.
async fn x_runs_a_heavy_call() -> (Arc<Gate>, ServerHandle, TcpStream, TcpStream) {
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let mut x = raw::opened(&server).await;
    x.write_all(&hold_frame(1, N)).await.unwrap();
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    let y = raw::opened(&server).await;
    (gate, server, x, y)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_heavier_than_the_whole_budget_is_refused_with_a_clear_error() {
    // 49 MiB of arguments against a 4 MiB budget: it could never have room.
    let gate = Arc::new(Gate::default());
    let server = serve(small_budget(), gate.clone()).await;
    let mut s = raw::opened(&server).await;
    s.write_all(&hold_frame(1, N)).await.unwrap();
    let f = raw::bounded(raw::frame(&mut s)).await.expect("a reply");
    let (_, kind, message) = raw::error_of(&f).expect("an error reply");
    assert_eq!(kind, "limit_exceeded", "{message}");
    assert!(
        message.contains("memory_budget = 4194304") && message.contains("\"hold\""),
        "{message}"
    );
    assert_eq!(gate.running.load(SeqCst) + gate.done.load(SeqCst), 0);
    // The connection goes on.
    s.write_all(&raw::call(2, 0, "add", 60_000, &[0x92, 0x01, 0x02]))
        .await
        .unwrap();
    let f = raw::bounded(raw::frame(&mut s)).await.expect("a reply");
    assert_eq!(raw::kind(&f), raw::RETURN, "{:?}", raw::error_of(&f));
    assert!(
        raw::eventually(|| server.buffered_bytes() < 64 << 10).await,
        "its count was not given back: {} bytes",
        server.buffered_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_heavy_call_releases_the_references_it_carried() {
    // The peer's object 5 rides in a call refused as too heavy: the
    // receiver took a reference to it when it read the call, and gives it
    // back with the refusal, as for any call that does not start.
    let gate = Arc::new(Gate::default());
    let server = serve(small_budget(), gate.clone()).await;
    let mut s = raw::opened(&server).await;
    let mut args = array_args(N, 0xa0);
    args[0] = 0x92; // [v, the peer's object 5]
    args.extend_from_slice(&[0xd6, 0x01, 0, 0, 0, 5]);
    s.write_all(&raw::call(1, 0, "hold", 600_000, &args))
        .await
        .unwrap();
    let (mut refused, mut released) = (false, false);
    while !(refused && released) {
        let f = raw::bounded(raw::frame(&mut s)).await.expect("a frame");
        match raw::kind(&f) {
            raw::ERROR => {
                let (_, kind, message) = raw::error_of(&f).unwrap();
                assert_eq!(kind, "limit_exceeded", "{message}");
                refused = true;
            }
            // [4, 5, 1]: object 5, one reference.
            raw::RELEASE => {
                assert_eq!(f, [0x93, 0x04, 0x05, 0x01]);
                released = true;
            }
            k => panic!("unexpected frame of kind {k}"),
        }
    }
    assert_eq!(gate.running.load(SeqCst) + gate.done.load(SeqCst), 0);
}

/// A call frame of kind 1 (or 12, kept answer, if `keep`) of `method` on
/// `target`, with the arguments `args`.
fn pipelined(keep: bool, id: u32, target: CallTarget, method: &str, args: &[u8]) -> Vec<u8> {
    let mut f = encode::begin(args.len() + 32);
    encode_pipelined_call_head(&mut f, keep, CallId(id), target, method, 600_000);
    f.extend_from_slice(args);
    encode::finish(&mut f);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_heavy_kept_answer_call_fails_the_calls_pipelined_on_it_with_its_error() {
    // A kept-answer call (kind 12) refused as too heavy keeps its error as
    // its answer (PROTOCOL.md §9): a call sent on its promise in the same
    // write fails with that same error, until the caller's finish; after
    // it, the promise names nothing.
    let gate = Arc::new(Gate::default());
    let server = serve(small_budget(), gate.clone()).await;
    let mut s = raw::raw_with(&server, vec![FEATURE_PIPELINE]).await;
    let f = raw::bounded(raw::frame(&mut s)).await.expect("a hello");
    assert_eq!(raw::kind(&f), raw::HELLO);
    let root = CallTarget::Object(ObjectId(0));
    let answer = CallTarget::Promise(CallId(1));
    let mut batch = pipelined(true, 1, root, "hold", &array_args(N, 0xa0));
    batch.extend(pipelined(false, 2, answer, "add", &[0x92, 1, 2]));
    s.write_all(&batch).await.unwrap();
    let mut errors = std::collections::BTreeMap::new();
    while errors.len() < 2 {
        let f = raw::bounded(raw::frame(&mut s)).await.expect("a reply");
        let (id, kind, message) = raw::error_of(&f).expect("an error reply");
        assert_eq!(kind, "limit_exceeded", "call {id}: {message}");
        errors.insert(id, message);
    }
    assert!(errors[&1].contains("memory_budget"), "{}", errors[&1]);
    assert_eq!(errors[&2], errors[&1], "the pipelined call's error");
    // Finished, the answer is gone.
    let mut f = encode_finish(CallId(1));
    f.extend(pipelined(false, 3, answer, "add", &[0x92, 1, 2]));
    s.write_all(&f).await.unwrap();
    let (id, kind, message) = raw::bounded(raw::next_error(&mut s)).await;
    assert_eq!((id, kind.as_str()), (3, "unknown_object"), "{message}");
    assert_eq!(gate.running.load(SeqCst) + gate.done.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_heavy_call_counts_in_the_budget_until_it_stops() {
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let mut s = raw::opened(&server).await;
    s.write_all(&hold_frame(1, N)).await.unwrap();
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    // The frame and 48 bytes per string.
    let weight = N * 49;
    assert!(
        server.buffered_bytes() >= weight,
        "a running handler holding 1M strings counts {} bytes",
        server.buffered_bytes()
    );
    gate.open.add_permits(1);
    let f = raw::bounded(raw::frame(&mut s)).await.expect("a reply");
    assert_eq!(held_count(&f), N as u64);
    assert!(
        raw::eventually(|| server.buffered_bytes() < 64 << 10).await,
        "its count was not given back: {} bytes",
        server.buffered_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_call_waits_until_the_budget_has_room_for_all_of_it() {
    // B counts about 28 MiB and runs; A counts about 49 MiB: with B
    // running it does not fit in the 64 MiB budget. (It used to need room
    // for half of the budget only, then count the rest when it ran: both
    // ran, counting 77 MiB. Found by a red-team pass.)
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let budget = Limits::default().memory_budget;
    let mut a = raw::opened(&server).await;
    let mut b = raw::opened(&server).await;
    b.write_all(&hold_frame(1, 600_000)).await.unwrap();
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    a.write_all(&hold_frame(1, N)).await.unwrap();
    assert!(
        raw::eventually(|| server.calls_waiting_for_memory() == 1).await,
        "A never waited for room"
    );
    assert_eq!(gate.running.load(SeqCst), 1);
    assert!(
        server.buffered_bytes() <= budget,
        "{} bytes counted",
        server.buffered_bytes()
    );
    // B ends: A gets the room and runs.
    gate.open.add_permits(1);
    let f = raw::bounded(raw::frame(&mut b)).await.expect("B's reply");
    assert_eq!(held_count(&f), 600_000);
    assert!(
        raw::eventually(|| gate.done.load(SeqCst) == 1 && gate.running.load(SeqCst) == 1).await
    );
    assert_eq!(server.calls_waiting_for_memory(), 0);
    assert!(server.buffered_bytes() <= budget);
    gate.open.add_permits(1);
    let f = raw::bounded(raw::frame(&mut a)).await.expect("A's reply");
    assert_eq!(held_count(&f), N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_call_whose_peer_closes_while_it_waits_leaves_the_line_and_never_runs() {
    // A 49 MiB call runs; another peer's 49 MiB call waits in line, its
    // frame filling its read buffer exactly, and its peer closes. The
    // waiting reader used to read only into spare room, so with none left
    // the close went unnoticed: the call kept its place (and the room
    // held back for it) until it got room, then ran for nobody.
    let (gate, server, mut x, mut y) = x_runs_a_heavy_call().await;
    y.write_all(&hold_frame(1, N)).await.unwrap();
    assert!(raw::eventually(|| server.calls_waiting_for_memory() == 1).await);
    drop(y);
    assert!(
        raw::eventually(|| server.calls_waiting_for_memory() == 0).await,
        "the closed peer's call is still in line"
    );
    assert!(raw::eventually(|| server.connections() == 1).await);
    gate.open.add_permits(2);
    let f = raw::bounded(raw::frame(&mut x)).await.expect("X's reply");
    assert_eq!(held_count(&f), N as u64);
    // Only X's handler ever ran.
    assert!(raw::eventually(|| gate.done.load(SeqCst) == 1).await);
    assert_eq!(gate.running.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_call_waits_for_room_until_its_own_deadline_at_most() {
    // Y's call never gets room while X's runs. It used to wait with no
    // limit, first in line, holding room back from everybody else (a
    // red-team pass kept one waiting behind a peer that read its output
    // slowly, shutting every other large frame out). Now it is refused
    // when its deadline passes; the line is empty again.
    let (gate, server, mut x, mut y) = x_runs_a_heavy_call().await;
    y.write_all(&raw::call(1, 0, "hold", 1_000, &array_args(N, 0xa0)))
        .await
        .unwrap();
    let (id, kind, message) = raw::bounded(raw::next_error(&mut y)).await;
    assert_eq!((id, kind.as_str()), (1, "limit_exceeded"), "{message}");
    assert!(
        message.contains("memory_budget") && message.contains("deadline"),
        "{message}"
    );
    assert_eq!(server.calls_waiting_for_memory(), 0);
    // Y's connection goes on; X's call was never disturbed.
    y.write_all(&raw::call(2, 0, "add", 60_000, &[0x92, 0x01, 0x02]))
        .await
        .unwrap();
    let f = raw::bounded(raw::frame(&mut y)).await.expect("a reply");
    assert_eq!(f, [0x93, 0x02, 0x02, 0x03]);
    gate.open.add_permits(1);
    let f = raw::bounded(raw::frame(&mut x)).await.expect("X's reply");
    assert_eq!(held_count(&f), N as u64);
    assert_eq!(gate.done.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_peer_sends_behind_a_waiting_heavy_call_is_read_whole_once_it_starts() {
    // As above, but the waiting call's peer sends another call behind it:
    // the byte read past the full buffer to watch for a close is that
    // call's first, and must go back in front of the rest of it.
    let (gate, server, mut x, mut y) = x_runs_a_heavy_call().await;
    y.write_all(&hold_frame(1, N)).await.unwrap();
    assert!(raw::eventually(|| server.calls_waiting_for_memory() == 1).await);
    y.write_all(&raw::call(2, 0, "add", 60_000, &[0x92, 0x01, 0x02]))
        .await
        .unwrap();
    gate.open.add_permits(1);
    let f = raw::bounded(raw::frame(&mut x)).await.expect("X's reply");
    assert_eq!(held_count(&f), N as u64);
    // Y's heavy call runs; the `add` behind it waits for it to end (its
    // connection's handlers hold more than its share meanwhile).
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    gate.open.add_permits(1);
    let f = raw::bounded(raw::frame(&mut y)).await.expect("Y's reply");
    assert_eq!(held_count(&f), N as u64);
    let f = raw::bounded(raw::frame(&mut y))
        .await
        .expect("the add's reply");
    assert_eq!(f, [0x93, 0x02, 0x02, 0x03], "add(1, 2) as call 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_call_in_line_gets_the_room_light_calls_give_back() {
    // A peer keeps the budget full with light calls (each counting about
    // 58 KiB) to a handler that waits, pipelined on ten connections. When
    // one ended, the peer's next call took its room back, and a heavy call
    // waiting for 1 MiB of room at once never found it (found by a
    // red-team pass). The first heavy call in line now has its room held
    // back: connections running handlers start nothing more until it has.
    let limits = Limits {
        memory_budget: 16 << 20,
        ..Limits::default()
    };
    let budget = limits.memory_budget;
    let gate = Arc::new(Gate::default());
    let server = serve(limits, gate.clone()).await;
    let light = array_args(1200, 0xa0);
    let mut hostile = Vec::new();
    for _ in 0..10 {
        let mut s = raw::opened(&server).await;
        // A small reply first: the reply estimate drops to its floor.
        s.write_all(&raw::call(1, 0, "add", 60_000, &[0x92, 1, 2]))
            .await
            .unwrap();
        raw::bounded(raw::frame(&mut s)).await.expect("a reply");
        let mut batch = Vec::new();
        for id in 2..42u32 {
            batch.extend_from_slice(&raw::call(id, 0, "hold", 600_000, &light));
        }
        s.write_all(&batch).await.unwrap();
        hostile.push(s);
    }
    assert!(
        raw::eventually(|| server.buffered_bytes() >= budget).await,
        "the budget never filled: {} bytes",
        server.buffered_bytes()
    );
    // A light call is still served...
    let mut victim = raw::opened(&server).await;
    victim
        .write_all(&raw::call(1, 0, "add", 60_000, &[0x92, 1, 2]))
        .await
        .unwrap();
    let f = raw::bounded(raw::frame(&mut victim))
        .await
        .expect("a reply");
    assert_eq!(raw::kind(&f), raw::RETURN, "{:?}", raw::error_of(&f));
    // ...and a heavy one (20,000 strings: about 960 KiB, refused by `add`
    // as soon as it starts) waits in line.
    victim
        .write_all(&raw::call(2, 0, "add", 600_000, &array_args(20_000, 0xa0)))
        .await
        .unwrap();
    assert!(raw::eventually(|| server.calls_waiting_for_memory() == 1).await);
    // Forty of the peer's handlers end: 2.3 MiB given back, taken by the
    // heavy call first.
    let done = gate.done.load(SeqCst);
    gate.open.add_permits(40);
    assert!(raw::eventually(|| gate.done.load(SeqCst) >= done + 40).await);
    let f = raw::bounded(raw::frame(&mut victim))
        .await
        .expect("the heavy call's reply");
    let (_, kind, message) = raw::error_of(&f).expect("an error reply");
    assert_eq!(kind, "bad_arguments", "{message}");
    gate.open.add_permits(10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_lined_up_behind_one_that_cannot_fit_beside_them_do_not_stop_the_line() {
    // Sixteen connections of one peer each send all of a 1 MiB call of
    // empty strings but its last byte (1 MiB reserved each); a seventeenth
    // sends a whole one, which waits for 48 MiB more; then the sixteen
    // complete theirs and line up behind it. Nothing they hold is given
    // back before it starts, and it cannot start beside them: the line
    // stopped for good, and with it every heavy call and every second call
    // of a busy connection (found by a red-team pass). Now a first call
    // that what the line holds leaves less than an eighth of the budget
    // beside is refused, and the line moves on.
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let big = hold_frame(1, N);
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let mut s = raw::opened(&server).await;
        s.write_all(&big[..big.len() - 1]).await.unwrap();
        fillers.push(s);
    }
    assert!(raw::eventually(|| server.buffered_bytes() >= 16 << 20).await);
    let mut head = raw::opened(&server).await;
    head.write_all(&big).await.unwrap();
    assert!(raw::eventually(|| server.calls_waiting_for_memory() == 1).await);
    for s in fillers.iter_mut() {
        s.write_all(&big[big.len() - 1..]).await.unwrap();
    }
    let (_, kind, message) = raw::bounded(raw::next_error(&mut head)).await;
    assert_eq!(kind, "limit_exceeded", "{message}");
    assert!(message.contains("memory_budget"), "{message}");
    // Each filler then gets its answer: refused while those behind it
    // hold too much, run (one by one) once fewer are left.
    gate.open.add_permits(16);
    let mut ran = 0;
    for s in fillers.iter_mut() {
        let f = raw::bounded(raw::frame(s)).await.expect("a reply");
        match raw::error_of(&f) {
            None => ran += 1,
            Some((_, kind, message)) => assert_eq!(kind, "limit_exceeded", "{message}"),
        }
    }
    assert!(ran >= 1, "none of the 16 ran");
    assert_eq!(server.calls_waiting_for_memory(), 0);
}
