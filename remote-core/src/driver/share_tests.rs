//! Tests of the fair shares (`share.rs`).

use super::*;

#[test]
fn the_first_heavy_call_in_line_may_start_past_an_exhausted_budget() {
    // What it gathered counts as used, so with all of it gathered the
    // budget may stay exhausted by what comes on top of it: it would
    // never ask for its room (a red-team pass).
    let b = Budget::new(16 << 20);
    let s = OutputShare::new(1 << 20);
    s.replied(4 << 10);
    s.started(1000); // one handler running
    b.charge(16 << 20);
    assert!(b.exhausted());
    assert!(!s.may_start(0, 16 << 20, &b, || 0));
    assert!(s.may_start_first(0, 16 << 20, &b, || 0));
    // Its connection's share still holds it.
    assert!(!s.may_start_first(3 << 20, 16 << 20, &b, || 0));
}

#[test]
fn output_is_held_to_the_share_once_half_the_budget_is_used() {
    let b = Budget::new(8 << 20); // share 1 MiB
    let s = OutputShare::new(1 << 20);
    // Budget mostly free: a busy connection may queue past its share.
    assert!(s.may_start(3 << 20, 16 << 20, &b, || 0));
    b.charge(4 << 20);
    assert!(!s.may_start(3 << 20, 16 << 20, &b, || 0));
    assert!(s.may_start(100, 16 << 20, &b, || 0));
    // max_write_queue holds whatever the budget.
    b.release(4 << 20);
    assert!(!s.may_start(16 << 20, 16 << 20, &b, || 0));
}

#[test]
fn before_the_first_reply_a_handler_counts_as_a_full_frame() {
    // The attack_flood case: a 4 MiB budget (share 512 KiB), 1 MiB
    // frames, calls whose replies are 256 KiB. With a 64 KiB guess
    // eight handlers started at once (2 MiB of replies).
    let b = Budget::new(4 << 20);
    let s = OutputShare::new(1 << 20);
    assert!(
        s.may_start(0, 16 << 20, &b, || 0),
        "one handler may always run"
    );
    s.started(0);
    assert!(
        !s.may_start(0, 16 << 20, &b, || 0),
        "1 × 1 MiB reaches the 512 KiB share"
    );
    // The first reply replaces the guess outright.
    s.replied(256 << 10);
    s.stopped(0);
    assert!(s.may_start(256 << 10, 16 << 20, &b, || 0));
    s.started(0);
    assert!(
        !s.may_start(256 << 10, 16 << 20, &b, || 0),
        "256 KiB queued + 1 × 256 KiB reaches the share"
    );
    assert!(
        s.may_start(0, 16 << 20, &b, || 0),
        "written out: room for one more"
    );
    // At the defaults (8 MiB share, 1 MiB frames) eight start at once.
    let b = Budget::new(64 << 20);
    let s = OutputShare::new(1 << 20);
    for _ in 0..8 {
        assert!(s.may_start(0, 16 << 20, &b, || 0));
        s.started(0);
    }
    assert!(
        !s.may_start(0, 16 << 20, &b, || 0),
        "8 × 1 MiB reaches the share"
    );
}

#[test]
fn calls_to_the_peer_lend_the_room_of_a_handler_each() {
    // The defaults: 8 handlers fill a fresh connection's share.
    let b = Budget::new(64 << 20);
    let s = OutputShare::new(1 << 20);
    for _ in 0..8 {
        s.started(100);
    }
    assert!(!s.may_start(0, 16 << 20, &b, || 0));
    // One of them calls us back: one more may start.
    assert!(s.may_start(0, 16 << 20, &b, || 1));
    s.started(100);
    assert!(!s.may_start(0, 16 << 20, &b, || 1), "8 × 1 MiB + args");
    assert!(s.may_start(0, 16 << 20, &b, || 2));
    // More calls than handlers lend no more than every handler:
    // what is queued and what the 9 handlers' arguments hold still
    // count.
    assert!(s.may_start((8 << 20) - 901, 16 << 20, &b, || 100));
    assert!(!s.may_start((8 << 20) - 900, 16 << 20, &b, || 100));
    // Past the budget, nothing is lent.
    b.charge(64 << 20);
    assert!(!s.may_start(0, 16 << 20, &b, || 100));
    let mut asked = false;
    let s = OutputShare::new(1 << 20);
    assert!(s.may_start(0, 16 << 20, &Budget::new(64 << 20), || {
        asked = true;
        0
    }));
    assert!(!asked, "with room, our calls are not counted");
}

#[test]
fn running_handlers_count_their_estimated_replies() {
    let b = Budget::new(8 << 20); // share 1 MiB
    let s = OutputShare::new(1 << 20);
    s.replied(64 << 10); // estimate 64 KiB
    for _ in 0..16 {
        assert!(s.may_start(0, 16 << 20, &b, || 0));
        s.started(0);
    }
    assert!(
        !s.may_start(0, 16 << 20, &b, || 0),
        "16 × 64 KiB reaches the share"
    );
    // Small replies lower the estimate, so more handlers may run.
    for _ in 0..40 {
        s.replied(100);
    }
    assert!(s.may_start(0, 16 << 20, &b, || 0));
    s.replied(1 << 20);
    assert!(!s.may_start(0, 16 << 20, &b, || 0), "16 × 1 MiB");
    for _ in 0..15 {
        s.stopped(0);
    }
    assert!(
        !s.may_start(0, 16 << 20, &b, || 0),
        "1 × 1 MiB reaches the share"
    );
    s.stopped(0);
    assert!(s.may_start(0, 16 << 20, &b, || 0), "none running");
}

#[test]
fn running_handlers_count_the_arguments_they_hold() {
    let b = Budget::new(8 << 20); // share 1 MiB
    let s = OutputShare::new(1 << 20);
    s.replied(100); // estimate 4 KiB: tiny replies
                    // Calls of 256 KiB of arguments: four reach the share.
    for _ in 0..3 {
        assert!(s.may_start(0, 16 << 20, &b, || 0));
        s.started(256 << 10);
    }
    assert!(s.may_start(0, 16 << 20, &b, || 0));
    s.started(256 << 10);
    assert!(
        !s.may_start(0, 16 << 20, &b, || 0),
        "4 × 256 KiB of arguments reach the share"
    );
    s.stopped(256 << 10);
    assert!(
        s.may_start(0, 16 << 20, &b, || 0),
        "one stopped: room again"
    );
    // One handler may always run, whatever its arguments.
    let s = OutputShare::new(1 << 20);
    assert!(s.may_start(0, 16 << 20, &b, || 0));
    s.started(4 << 20);
    assert!(!s.may_start(0, 16 << 20, &b, || 0));
    s.stopped(4 << 20);
    assert!(s.may_start(0, 16 << 20, &b, || 0));
}
#[test]
fn past_the_budget_a_connection_holding_anything_starts_nothing() {
    let b = Budget::new(8 << 20);
    let s = OutputShare::new(1 << 20);
    s.replied(100);
    s.started(1000);
    assert!(s.may_start(0, 16 << 20, &b, || 0));
    b.charge(8 << 20);
    assert!(!s.may_start(0, 16 << 20, &b, || 0), "a handler runs");
    s.stopped(1000);
    assert!(
        s.may_start(0, 16 << 20, &b, || 0),
        "nothing held: one may run"
    );
    assert!(!s.may_start(100, 16 << 20, &b, || 0), "output queued");
}

/// A call frame of `method` whose one argument is an array of `n`
/// copies of `item` (a msgpack byte).
fn call_of(n: usize, item: u8) -> Vec<u8> {
    use crate::proto::{encode, CallId, ObjectId};
    let mut f = encode::begin(n + 64);
    encode::call_head(&mut f, CallId(1), ObjectId(0), "m", 1000);
    f.push(0x91);
    f.push(0xdd);
    f.extend_from_slice(&(n as u32).to_be_bytes());
    f.resize(f.len() + n, item);
    encode::finish(&mut f);
    f.split_off(4)
}

#[test]
fn a_call_is_heavy_when_its_frame_and_items_pass_a_small_frame() {
    let l = Limits::default();
    let weight = |p: &[u8]| heavy_call_weight(p, &l).weight;
    let walked = |p: &[u8]| heavy_call_weight(p, &l).walk.is_some();
    // Too short to be heavy whatever it holds: not walked.
    let short = call_of(1000, 0xc0);
    assert_eq!(weight(&short), None);
    assert!(!walked(&short));
    // 2,000 nils: 2 KB on the wire, 96 KB decoded (the arguments'
    // array holds one more item: the list).
    let f = call_of(2000, 0xc0);
    assert_eq!(weight(&f), Some(args_weight(f.len(), 2001)));
    assert!(walked(&f));
    // The same bytes as one `bin` are one item: light, but walked.
    let mut b = f[..f.len() - 2005].to_vec(); // the head and [
    b.extend_from_slice(&[0xc5, 0x07, 0xd0]); // bin16 of 2,000
    b.resize(b.len() + 2000, 0);
    assert!(matches!(
        Message::parse(&b, &l, &mut Vec::new()),
        Ok(Message::Call { items: 1, .. })
    ));
    assert_eq!(weight(&b), None);
    assert!(walked(&b));
    // Not a call, or malformed: the reader's handling says why.
    assert!(weight(&[0xc0; 4000]).is_none() && !walked(&[0xc0; 4000]));
    assert_eq!(heavy_call_weight(&f, &l).timeout_ms, 1000);
    let mut cut = f.clone();
    cut.truncate(f.len() - 1);
    assert_eq!(weight(&cut), None);
    assert!(!walked(&cut));
}

#[test]
fn a_reference_weighs_what_its_proxy_and_import_hold() {
    use crate::proto::{encode, CallId, ObjectId};
    let l = Limits::default();
    // One argument: an array of 2,000 distinct references (6 bytes
    // each on the wire; about 220 bytes each once received).
    let n = 2000u32;
    let mut f = encode::begin(64);
    encode::call_head(&mut f, CallId(1), ObjectId(0), "m", 1000);
    f.extend_from_slice(&[0x91, 0xdd]);
    f.extend_from_slice(&n.to_be_bytes());
    for id in 1..=n {
        f.extend_from_slice(&[0xd6, 1]);
        f.extend_from_slice(&id.to_be_bytes());
    }
    encode::finish(&mut f);
    let p = f.split_off(4);
    // The list, and each reference as 1 + 4 items.
    let items = 1 + 5 * n;
    let w = heavy_call_weight(&p, &l);
    assert_eq!(w.weight, Some(args_weight(p.len(), items)));
    assert!(w.weight.unwrap() >= n as usize * 240);
    // The parse of the frame weighs it the same, walked or not.
    let mut refs = Vec::new();
    let walk = w.walk.as_ref().unwrap();
    for walked in [None, Some(walk)] {
        refs.clear();
        match Message::parse_walked(&p, &l, &mut refs, walked) {
            Ok(Message::Call { items: got, .. }) => assert_eq!(got, items),
            other => panic!("{other:?}"),
        }
        assert_eq!(refs.len(), n as usize);
    }
}
