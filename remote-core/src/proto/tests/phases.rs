//! The connection's phases: handshake, keepalive negotiation, goodbye and
//! close.

use super::*;

#[test]
fn handshake_opens_and_rejects_other_first_messages() {
    let sink = Arc::new(Sink::default());
    let mut s: S = State::new(None, Limits::default(), sink.clone());
    assert_eq!(s.phase(), Phase::AwaitingHello);
    let err = s.handle_frame(&call(1, 0, "m", &[0x90])).unwrap_err();
    assert!(err.0.contains("expected a handshake"), "{err}");

    let (mut s, _) = state();
    assert_eq!(s.phase(), Phase::Open(1));
    let again = encode::hello(&S::hello(None));
    assert!(s.handle_frame(&again[4..]).unwrap_err().0.contains("twice"));
}

#[test]
fn handshake_refuses_a_version_we_do_not_speak() {
    let mut s: S = State::new(None, Limits::default(), Arc::new(Sink::default()));
    let h = encode::hello(&Hello {
        min_version: 2,
        max_version: 9,
        features: vec![],
        auth: None,
    });
    let err = s.handle_frame(&h[4..]).unwrap_err();
    assert!(
        err.0
            .contains("no common protocol version: peer speaks 2..=9"),
        "{err}"
    );
}

#[test]
fn handshake_carries_the_auth_token_and_bad_magic_is_refused() {
    let mut s: S = State::new(None, Limits::default(), Arc::new(Sink::default()));
    let h = encode::hello(&S::hello(Some(b"secret")));
    match s.handle_frame(&h[4..]).unwrap() {
        Event::Opened { auth, .. } => assert_eq!(auth, Some(&b"secret"[..])),
        other => panic!("{other:?}"),
    }
    let mut s: S = State::new(None, Limits::default(), Arc::new(Sink::default()));
    let mut h = encode::hello(&S::hello(None));
    let at = h.iter().position(|&b| b == b'r').unwrap();
    h[at] = b'R';
    assert!(s.handle_frame(&h[4..]).unwrap_err().0.contains("bad magic"));
}

#[test]
fn goodbye_closes() {
    let (mut s, _) = state();
    match s
        .handle_frame(&payload(encode::goodbye("bye now")))
        .unwrap()
    {
        Event::Goodbye(r) => assert_eq!(r, "bye now"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.phase(), Phase::Closed);
    assert!(matches!(
        s.handle_frame(&call(1, 0, "m", &[0x90])).unwrap(),
        Event::Nothing
    ));
}

#[test]
fn close_returns_waiters_and_objects() {
    let (mut s, _) = state();
    s.start_call(11).unwrap();
    s.export(key(1), true, || "a").unwrap();
    let (waiters, objects) = s.close();
    assert_eq!(waiters, vec![11]);
    let mut objects = objects;
    objects.sort();
    assert_eq!(objects, vec!["a", "root"]);
    assert!(s.start_call(12).is_err());
}

/// A state whose peer's hello lists `features`.
fn state_with_peer_features(features: Vec<&str>) -> S {
    let mut s = State::new(Some("root"), Limits::default(), Arc::new(Sink::default()));
    let hello = encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features,
        auth: None,
    });
    match s.handle_frame(&hello[4..]).unwrap() {
        Event::Opened { features, .. } => {
            assert_eq!(features.is_empty(), !s.keepalive_negotiated());
        }
        other => panic!("expected Opened, got {other:?}"),
    }
    s
}

#[test]
fn our_hello_lists_keepalive_and_pings_are_answered_once_negotiated() {
    assert_eq!(
        S::hello(None).features,
        vec![
            FEATURE_KEEPALIVE,
            super::FEATURE_INVALIDATE,
            super::FEATURE_PIPELINE
        ]
    );
    let mut s = state_with_peer_features(vec!["something-else", "keepalive"]);
    assert!(s.keepalive_negotiated());
    match s.handle_frame(&payload(encode_ping(41))).unwrap() {
        Event::Ping(41) => {}
        other => panic!("expected Ping(41), got {other:?}"),
    }
    match s.handle_frame(&payload(encode_pong(9))).unwrap() {
        Event::Pong(9) => {}
        other => panic!("expected Pong(9), got {other:?}"),
    }
}

#[test]
fn keepalive_messages_without_the_feature_are_violations() {
    let mut s = state_with_peer_features(vec![]);
    assert!(!s.keepalive_negotiated());
    let v = s.handle_frame(&payload(encode_ping(1))).unwrap_err();
    assert!(v.0.contains("keepalive"), "{v}");
    let mut s = state_with_peer_features(vec!["unknown"]);
    assert!(s.handle_frame(&payload(encode_pong(1))).is_err());
}
