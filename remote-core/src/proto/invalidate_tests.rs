//! State machine tests of pushed invalidation (PROTOCOL.md §3.9): the
//! messages parse only on a connection that negotiated the feature, and a
//! malformed one is a violation with a clear reason.

use std::sync::Arc;

use super::tests::{payload, state, Sink, S};
use super::*;
use crate::Limits;

fn opened_with(features: Vec<&str>) -> S {
    let mut s = State::new(Some("root"), Limits::default(), Arc::new(Sink::default()));
    let hello = encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features,
        auth: None,
    });
    match s.handle_frame(&hello[4..]).unwrap() {
        Event::Opened { .. } => s,
        other => panic!("expected Opened, got {other:?}"),
    }
}

#[test]
fn invalidate_and_its_acknowledgement_parse_once_negotiated() {
    let (mut s, _) = state();
    assert!(s.invalidate_negotiated());
    match s
        .handle_frame(&payload(encode_invalidate(
            u64::from(u32::MAX) + 1,
            ObjectId(4),
            &["get", "list"],
        )))
        .unwrap()
    {
        Event::Invalidate {
            token,
            object,
            methods,
        } => {
            assert_eq!(token, 1 << 32);
            assert_eq!(object, ObjectId(4));
            assert_eq!(methods, ["get", "list"]);
        }
        other => panic!("{other:?}"),
    }
    match s.handle_frame(&payload(encode_invalidated(9))).unwrap() {
        Event::Invalidated(9) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalidation_messages_without_the_feature_are_violations() {
    let mut s = opened_with(vec!["keepalive"]);
    assert!(!s.invalidate_negotiated());
    assert!(s.keepalive_negotiated());
    for frame in [
        encode_invalidate(1, ObjectId(0), &["get"]),
        encode_invalidated(1),
    ] {
        let bytes = payload(frame);
        let v = opened_with(vec![]).handle_frame(&bytes).unwrap_err();
        assert!(
            v.0.contains("without the negotiated invalidate feature"),
            "{v}"
        );
        let v = s.handle_frame(&bytes).unwrap_err();
        assert!(v.0.contains("kind 10 or 11"), "{v}");
    }
}

#[test]
fn an_invalidate_naming_too_many_methods_is_malformed() {
    let (mut s, _) = state();
    let names: Vec<String> = (0..=MAX_INVALIDATE_METHODS)
        .map(|i| i.to_string())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut b = encode::begin(4096);
    value::enc::array_len(&mut b, 4);
    value::enc::uint(&mut b, u64::from(kind::INVALIDATE));
    value::enc::uint(&mut b, 1);
    value::enc::uint(&mut b, 0);
    value::enc::array_len(&mut b, names.len());
    for n in &names {
        value::enc::str(&mut b, n);
    }
    encode::finish(&mut b);
    let v = s.handle_frame(&b[4..]).unwrap_err();
    assert!(
        v.0.contains("invalidate names 257 methods, more than 256"),
        "{v}"
    );
    let (mut s, _) = state();
    let ok = encode_invalidate(1, ObjectId(0), &names[..MAX_INVALIDATE_METHODS]);
    assert!(matches!(
        s.handle_frame(&ok[4..]).unwrap(),
        Event::Invalidate { methods, .. } if methods.len() == MAX_INVALIDATE_METHODS
    ));
}
