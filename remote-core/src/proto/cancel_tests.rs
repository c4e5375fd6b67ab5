//! State machine tests of cancellation: every call gets exactly one reply
//! (PROTOCOL.md §3.6), so call ids are reused safely (§8).

use super::tests::{call, payload, ret, state, state_with};
use super::*;
use crate::Limits;

/// PROTOCOL.md §3.6: the receiver of a cancel answers the call once, with
/// error kind `cancelled`; a reply its handler makes later is not sent.
#[test]
fn a_cancelled_call_is_answered_once_with_cancelled() {
    let (mut s, _) = state();
    let seq = match s.handle_frame(&call(50, 0, "m", &[0x90])).unwrap() {
        Event::Call { seq, .. } => seq,
        other => panic!("{other:?}"),
    };
    let reply = match s
        .handle_frame(&payload(encode::cancel(CallId(50))))
        .unwrap()
    {
        Event::Cancel { seq: q, reply } => {
            assert_eq!(q, seq);
            reply
        }
        other => panic!("{other:?}"),
    };
    let mut r = Reader::new(&reply[4..]);
    assert_eq!(r.array_len().unwrap(), 3);
    assert_eq!(r.uint().unwrap(), u64::from(kind::ERROR));
    assert_eq!(r.uint().unwrap(), 50);
    assert_eq!(r.array_len().unwrap(), 6);
    assert_eq!(r.str().unwrap(), "cancelled");
    assert_eq!(r.str().unwrap(), "remote_core::Error");
    assert_eq!(r.str().unwrap(), "call 50 was cancelled by the caller");
    // The handler finishing afterwards must not send a second reply.
    assert!(!s.answered(CallId(50), seq));
    // A second cancel, or one for a call already answered, gets nothing.
    assert!(matches!(
        s.handle_frame(&payload(encode::cancel(CallId(50))))
            .unwrap(),
        Event::Nothing
    ));
    let seq2 = match s.handle_frame(&call(51, 0, "m", &[0x90])).unwrap() {
        Event::Call { seq, .. } => seq,
        other => panic!("{other:?}"),
    };
    assert!(s.answered(CallId(51), seq2));
    assert!(matches!(
        s.handle_frame(&payload(encode::cancel(CallId(51))))
            .unwrap(),
        Event::Nothing
    ));
}

/// The issue-11 race: call 50, cancel 50, call 50 again. The caller keeps
/// id 50 reserved until the old call's one reply arrives, so that reply can
/// never be taken for the new call's.
#[test]
fn a_cancelled_call_id_stays_reserved_until_its_reply() {
    let (mut s, _) = state_with(Limits {
        max_outgoing_calls: 2,
        ..Limits::default()
    });
    s.set_next_call_id(50);
    let old = s.start_call(1).unwrap();
    assert_eq!(old, CallId(50));
    assert!(s.cancel_call(old, true), "a sent call needs a cancel frame");
    // Id 50 is not handed out again while its reply is outstanding.
    s.set_next_call_id(50);
    let new = s.start_call(2).unwrap();
    assert_eq!(new, CallId(51));
    // The reserved id counts against max_outgoing_calls.
    assert_eq!(s.calls_waiting(), 2);
    assert!(s
        .start_call(3)
        .unwrap_err()
        .to_string()
        .contains("max_outgoing_calls"));
    // The old call's reply (here the receiver's `cancelled` error) is dropped
    // and frees the id; the new call's reply still reaches its waiter.
    let cancelled = encode::error(
        old,
        &crate::RemoteError::new("cancelled", "remote_core::Error", "cancelled".to_owned()),
        &crate::Limits::default(),
    );
    assert!(matches!(
        s.handle_frame(&payload(cancelled)).unwrap(),
        Event::Nothing
    ));
    assert_eq!(s.calls_waiting(), 1);
    match s.handle_frame(&ret(new.0, &[0x2a])).unwrap() {
        Event::Reply { waiter, .. } => assert_eq!(waiter, 2),
        other => panic!("{other:?}"),
    }
    s.set_next_call_id(50);
    assert_eq!(s.start_call(4).unwrap(), CallId(50));
    // A call whose frame never went out needs no reply: its id is free.
    let unsent = s.start_call(5).unwrap();
    assert!(!s.cancel_call(unsent, false));
    assert_eq!(s.calls_waiting(), 1);
}
