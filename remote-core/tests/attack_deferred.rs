//! Hostile peers against the calls a server sets aside while they wait for
//! room (`driver/input/defer.rs`), each found by a red-team pass of its
//! first form: a heavy call must not hold its whole count in the budget
//! while it waits for its connection's output, and a call too heavy ever
//! to run, waiting behind frames set aside, must be the one refused; and
//! handling a frame set aside must not give up what is held for the frame
//! being read behind it. A cancel of a running call goes past the frames
//! set aside, which may be waiting for the room that call holds. (A frame
//! set aside keeping the read buffer alive: `attack_deferred_memory.rs`.)

#[path = "support/gate.rs"]
mod gate;
#[path = "support/holder.rs"]
mod holder;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/set_aside.rs"]
mod set_aside;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use gate::Gate;
use holder::{hold_frame, serve};
use remote_core::proto::{encode, CallId};
use remote_core::Limits;
use set_aside::{add, one_holding, read_by_server, reply, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_call_waiting_for_its_connections_output_holds_nothing() {
    let gate = Arc::new(Gate::default());
    let server = serve(Limits::default(), gate.clone()).await;
    let mut s = raw::opened(&server).await;
    let mut sent = server.stats().calls.bytes_in;
    // Eight handlers fill the connection's share before its first reply.
    for id in 1..=8 {
        send(&mut s, &mut sent, &hold_frame(id, 0)).await;
    }
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 8).await);
    // A call of 16 KB that decodes to about 800 KB (then a light one,
    // which the server reads once the heavy call has started).
    send(&mut s, &mut sent, &hold_frame(9, 16_000)).await;
    read_by_server(&server, sent).await;
    send(&mut s, &mut sent, &add(10)).await;
    assert!(
        server.buffered_bytes() < 64 << 10,
        "{} bytes counted for calls that wait",
        server.buffered_bytes()
    );
    gate.open.add_permits(9);
    let mut ok = 0;
    for _ in 1..=10 {
        let (id, r) = raw::bounded(reply(&mut s)).await;
        assert!(r.is_ok(), "call {id}: {r:?}");
        ok += 1;
    }
    assert_eq!(ok, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_too_heavy_behind_calls_set_aside_is_the_one_refused() {
    let (gate, server, mut s, mut sent) = one_holding().await;
    for id in 2..=4 {
        send(&mut s, &mut sent, &add(id)).await;
    }
    // 20,000 empty strings: about 980 KB decoded, more than a 1 MiB
    // budget less an eighth can ever hold.
    send(&mut s, &mut sent, &hold_frame(5, 20_000)).await;
    read_by_server(&server, sent).await;
    gate.open.add_permits(1);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(raw::bounded(reply(&mut s)).await);
    }
    got.sort_by_key(|g| g.0);
    for (id, r) in &got[..4] {
        assert!(r.is_ok(), "call {id} refused: {r:?}");
    }
    let refused = got[4].1.as_ref().unwrap_err();
    assert!(refused.contains("memory_budget"), "{refused}");
}

/// A RETURN frame for call `id` carrying a bin of `n` bytes.
fn big_return(id: u32, n: usize) -> Vec<u8> {
    let mut f = encode::begin(n + 32);
    f.extend_from_slice(&[0x93, 0x02, 0xce]);
    f.extend_from_slice(&id.to_be_bytes());
    f.push(0xc6);
    f.extend_from_slice(&(n as u32).to_be_bytes());
    f.resize(f.len() + n, 0);
    encode::finish(&mut f);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handling_a_frame_set_aside_keeps_the_reservation_of_the_frame_behind_it() {
    let (gate, server, mut s, mut sent) = one_holding().await;
    // A call set aside, then the first third of a 300 KB reply, which
    // goes past it and is reserved in the budget as it is read.
    send(&mut s, &mut sent, &add(2)).await;
    let r = big_return(77, 300_000);
    send(&mut s, &mut sent, &r[..100_000]).await;
    read_by_server(&server, sent).await;
    assert!(server.buffered_bytes() >= 300_000);
    gate.open.add_permits(1);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (id, r) = raw::bounded(reply(&mut s)).await;
        assert!(r.is_ok(), "call {id}: {r:?}");
        ids.push(id);
    }
    ids.sort();
    assert_eq!(ids, [1, 2]);
    // The call set aside was handled; the reply in progress keeps its room.
    assert!(
        server.buffered_bytes() >= 300_000,
        "{} bytes counted with 300 KB reserved",
        server.buffered_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_goes_past_calls_set_aside_to_the_call_holding_their_room() {
    let (gate, _server, mut s, mut sent) = one_holding().await;
    send(&mut s, &mut sent, &add(2)).await;
    send(&mut s, &mut sent, &encode::cancel(CallId(1))).await;
    // The handler holding the room is dropped, the call set aside runs,
    // and both get their replies (call 1 its `cancelled` error).
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 0).await);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(raw::bounded(reply(&mut s)).await);
    }
    got.sort_by_key(|g| g.0);
    assert!(
        got[0].1.as_ref().unwrap_err().contains("cancelled"),
        "{got:?}"
    );
    assert!(got[1].1.is_ok(), "{got:?}");
}
