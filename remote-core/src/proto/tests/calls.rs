//! Calls and replies: ids, limits, waiters, remote errors.

use super::*;

#[test]
fn call_to_root_becomes_a_call_event() {
    let (mut s, _) = state();
    let frame = call(7, 0, "echo", &[0x91, 0xa2, b'h', b'i']);
    match s.handle_frame(&frame).unwrap() {
        Event::Call {
            id,
            seq,
            target,
            method,
            timeout_ms,
            args,
            refs,
            ..
        } => {
            assert_eq!(seq, 0);
            assert_eq!(
                (id, target, method, timeout_ms),
                (CallId(7), "root", "echo", 1000)
            );
            assert_eq!(&frame[args], &[0x91, 0xa2, b'h', b'i']);
            assert!(refs.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.calls_in_flight(), 1);
    // The same id again while in flight is a violation.
    assert!(s
        .handle_frame(&frame)
        .unwrap_err()
        .0
        .contains("already in flight"));
    s.call_done(CallId(7), 0);
    assert_eq!(s.calls_in_flight(), 0);
}

/// PROTOCOL.md §8: an id may be reused once answered or cancelled, while the
/// old handler still counts until it has stopped.
#[test]
fn call_ids_are_reusable_once_answered_or_cancelled() {
    let (mut s, _) = state();
    let seq_of = |ev: Event<'_, &'static str, u32>| match ev {
        Event::Call { seq, .. } => seq,
        other => panic!("{other:?}"),
    };
    let f = call(7, 0, "m", &[0x90]);
    let first = seq_of(s.handle_frame(&f).unwrap());
    // Cancelled: answered with `cancelled`, so the id is free; the handler
    // still counts.
    assert!(
        matches!(s.handle_frame(&payload(encode::cancel(CallId(7)))).unwrap(), Event::Cancel { seq, .. } if seq == first)
    );
    let second = seq_of(s.handle_frame(&f).unwrap());
    assert_ne!(first, second);
    assert_eq!(s.calls_in_flight(), 2);
    // The first handler stops late: it must not touch the new call 7.
    s.call_done(CallId(7), first);
    assert_eq!(s.calls_in_flight(), 1);
    assert!(s
        .handle_frame(&f)
        .unwrap_err()
        .0
        .contains("already in flight"));
    // Answered: free for reuse before the handler has stopped.
    s.answered(CallId(7), second);
    let third = seq_of(s.handle_frame(&f).unwrap());
    assert_eq!(s.calls_in_flight(), 2);
    s.call_done(CallId(7), second);
    s.call_done(CallId(7), third);
    assert_eq!(s.calls_in_flight(), 0);
}

#[test]
fn call_to_unknown_object_is_answered_with_an_error() {
    let (mut s, _) = state();
    let f = call(1, 42, "m", &[0x90]);
    let ev = s.handle_frame(&f).unwrap();
    assert_eq!(
        reject_kind(ev),
        "unknown_object: no object with id 42 on this connection"
    );
    assert_eq!(s.calls_in_flight(), 0);
}

#[test]
fn calls_over_the_in_flight_limit_are_refused_naming_the_limit() {
    let (mut s, _) = state_with(Limits {
        max_calls_in_flight: 2,
        ..Limits::default()
    });
    assert!(matches!(
        s.handle_frame(&call(1, 0, "m", &[0x90])).unwrap(),
        Event::Call { .. }
    ));
    assert!(matches!(
        s.handle_frame(&call(2, 0, "m", &[0x90])).unwrap(),
        Event::Call { .. }
    ));
    let msg = reject_kind(s.handle_frame(&call(3, 0, "m", &[0x90])).unwrap());
    assert!(
        msg.starts_with("limit_exceeded: limit exceeded: max_calls_in_flight = 2"),
        "{msg}"
    );
    // A cancelled call still counts until its handler stops.
    assert!(matches!(
        s.handle_frame(&payload(encode::cancel(CallId(1)))).unwrap(),
        Event::Cancel { seq: 0, .. }
    ));
    assert!(matches!(
        s.handle_frame(&call(4, 0, "m", &[0x90])).unwrap(),
        Event::Reject { .. }
    ));
    s.call_done(CallId(1), 0);
    assert!(matches!(
        s.handle_frame(&call(4, 0, "m", &[0x90])).unwrap(),
        Event::Call { .. }
    ));
}

#[test]
fn replies_go_to_their_waiter_and_late_replies_are_ignored() {
    let (mut s, _) = state();
    let a = s.start_call(100).unwrap();
    let b = s.start_call(200).unwrap();
    assert_ne!(a, b);
    match s.handle_frame(&ret(b.0, &[0x2a])).unwrap() {
        Event::Reply { waiter, result, .. } => {
            assert_eq!(waiter, 200);
            assert_eq!(result.unwrap().len(), 1);
        }
        other => panic!("{other:?}"),
    }
    // Cancelled: the reply that crosses the cancel is dropped.
    assert!(s.cancel_call(a, true));
    assert!(!s.cancel_call(a, true));
    assert!(matches!(
        s.handle_frame(&ret(a.0, &[0xc0])).unwrap(),
        Event::Nothing
    ));
    assert_eq!(s.calls_waiting(), 0);
}

#[test]
fn error_replies_carry_the_remote_traceback() {
    let (mut s, _) = state();
    let id = s.start_call(1).unwrap();
    let e = crate::RemoteError {
        kind: "application".into(),
        type_name: "app::Oops".into(),
        message: "it broke".into(),
        chain: vec!["disk full".into()],
        backtrace: Some("frame 0".into()),
        data: None,
    };
    let mut b = encode::begin(64);
    encode::error_head(&mut b, id, &e, &Limits::default());
    b.push(0x07); // application data: the integer 7
    encode::finish(&mut b);
    match s.handle_frame(&b[4..]).unwrap() {
        Event::Reply {
            waiter: 1,
            result: Err(got),
            ..
        } => {
            assert_eq!(got.kind, "application");
            assert_eq!(got.type_name, "app::Oops");
            assert_eq!(got.chain, vec!["disk full".to_owned()]);
            assert_eq!(got.backtrace.as_deref(), Some("frame 0"));
            assert_eq!(got.data, Some(vec![0x07]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn outgoing_calls_are_limited() {
    let (mut s, _) = state_with(Limits {
        max_outgoing_calls: 1,
        ..Limits::default()
    });
    s.start_call(1).unwrap();
    let err = s.start_call(2).unwrap_err();
    assert!(err.to_string().contains("max_outgoing_calls = 1"), "{err}");
}

#[test]
fn cancel_of_unknown_call_is_ignored() {
    let (mut s, _) = state();
    assert!(matches!(
        s.handle_frame(&payload(encode::cancel(CallId(3)))).unwrap(),
        Event::Nothing
    ));
}

/// The driver's variant: a call is counted only once admitted (a handler
/// that finishes before the next frame never is).
#[test]
fn an_unadmitted_call_is_not_counted_until_admitted() {
    let (mut s, _) = state();
    let f = call(7, 0, "m", &[0x90]);
    let Event::Call { .. } = s.handle_frame_unadmitted(&f).unwrap() else {
        panic!("a call event")
    };
    assert_eq!(s.calls_in_flight(), 0);
    // Finished inline: the id is free for the next frame.
    let Event::Call { seq, .. } = s.handle_frame_unadmitted(&f).unwrap() else {
        panic!("a call event")
    };
    s.admit(CallId(7), seq);
    assert_eq!(s.calls_in_flight(), 1);
    assert!(s
        .handle_frame_unadmitted(&f)
        .unwrap_err()
        .0
        .contains("already in flight"));
    s.call_done(CallId(7), seq);
    assert_eq!(s.calls_in_flight(), 0);
}

/// A call answered inline whose blocking closure runs on counts until
/// `call_done`, but its id is free: the peer's next call may reuse it, and
/// the old call's end does not free the new one's id.
#[test]
fn a_call_admitted_answered_counts_with_its_id_free() {
    let (mut s, _) = state();
    let f = call(7, 0, "m", &[0x90]);
    let Event::Call { seq: old, .. } = s.handle_frame_unadmitted(&f).unwrap() else {
        panic!("a call event")
    };
    s.admit_answered();
    assert_eq!(s.calls_in_flight(), 1);
    let Event::Call { seq: new, .. } = s.handle_frame(&f).unwrap() else {
        panic!("the id reused: a call event")
    };
    assert_eq!(s.calls_in_flight(), 2);
    s.call_done(CallId(7), old);
    assert_eq!(s.calls_in_flight(), 1);
    assert!(
        s.handle_frame_unadmitted(&f)
            .unwrap_err()
            .0
            .contains("already in flight"),
        "the new call's id is still in use"
    );
    s.call_done(CallId(7), new);
    assert_eq!(s.calls_in_flight(), 0);
}

/// A handler's own reply frees its slot at once (the peer may call again
/// on seeing it), while a handler past its reply still counts against twice
/// the limit until it stops, and its stop frees nothing twice.
#[test]
fn a_handlers_own_reply_frees_its_slot_and_it_counts_against_twice_the_limit() {
    let (mut s, _) = state_with(Limits {
        max_calls_in_flight: 2,
        ..Limits::default()
    });
    let seq = |e: Event<'_, &'static str, u32>| match e {
        Event::Call { seq, .. } => seq,
        other => panic!("a call event, not {other:?}"),
    };
    let a = seq(s.handle_frame(&call(1, 0, "m", &[0x90])).unwrap());
    let b = seq(s.handle_frame(&call(2, 0, "m", &[0x90])).unwrap());
    assert!(matches!(
        s.handle_frame(&call(3, 0, "m", &[0x90])).unwrap(),
        Event::Reject { .. }
    ));
    // Both reply; their handlers have not stopped yet.
    assert!(s.replied(CallId(1), a, true));
    assert!(s.replied(CallId(2), b, true));
    assert!(!s.replied(CallId(2), b, true), "one reply per call");
    assert_eq!(s.calls_in_flight(), 2, "their handlers still run");
    // The peer's next two calls (ids reused) are taken...
    let c = seq(s.handle_frame(&call(1, 0, "m", &[0x90])).unwrap());
    let d = seq(s.handle_frame(&call(2, 0, "m", &[0x90])).unwrap());
    // ...but no more than twice the limit with the handlers still stopping.
    let msg = reject_kind(s.handle_frame(&call(3, 0, "m", &[0x90])).unwrap());
    assert!(msg.contains("max_calls_in_flight = 2"), "{msg}");
    // The old handlers stop: the new calls are untouched and still count.
    s.call_done(CallId(1), a);
    s.call_done(CallId(2), b);
    assert_eq!(s.calls_in_flight(), 2);
    assert!(matches!(
        s.handle_frame(&call(3, 0, "m", &[0x90])).unwrap(),
        Event::Reject { .. }
    ));
    // Without `uncount` (a blocking closure may run on) the call counts
    // until its handler stops, as a cancelled one does.
    assert!(s.replied(CallId(1), c, false));
    assert!(matches!(
        s.handle_frame(&call(3, 0, "m", &[0x90])).unwrap(),
        Event::Reject { .. }
    ));
    s.call_done(CallId(1), c);
    s.call_done(CallId(2), d);
    assert_eq!(s.calls_in_flight(), 0);
    assert!(matches!(
        s.handle_frame(&call(3, 0, "m", &[0x90])).unwrap(),
        Event::Call { .. }
    ));
}
