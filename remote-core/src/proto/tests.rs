//! State machine tests: no IO, no runtime, no clock.

use std::sync::{Arc, Mutex};

use super::value::enc;
use super::*;
use crate::Limits;

/// Collects releases queued by dropped imports.
#[derive(Default)]
pub(super) struct Sink(Mutex<Vec<(ObjectId, u64, u32)>>);

impl ReleaseSink for Sink {
    fn release(&self, id: ObjectId, generation: u64, count: u32) {
        self.0.lock().unwrap().push((id, generation, count));
    }
}

#[path = "tests_hostile.rs"]
mod hostile;

pub(super) type S = State<&'static str, u32>;

pub(super) fn state_with(limits: Limits) -> (S, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let mut s = State::new(Some("root"), limits, sink.clone());
    let hello = encode::hello(&S::hello(None));
    match s.handle_frame(&hello[4..]).unwrap() {
        Event::Opened { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
        other => panic!("expected Opened, got {other:?}"),
    }
    (s, sink)
}

pub(super) fn state() -> (S, Arc<Sink>) {
    state_with(Limits::default())
}

/// A call frame payload with the given raw argument bytes.
pub(super) fn call(id: u32, target: u32, method: &str, args: &[u8]) -> Vec<u8> {
    let mut b = encode::begin(32);
    encode::call_head(&mut b, CallId(id), ObjectId(target), method, 1000);
    b.extend_from_slice(args);
    encode::finish(&mut b);
    b.split_off(4)
}

fn ext_ref(code: i8, id: u32) -> Vec<u8> {
    let mut v = vec![0xd6, code as u8];
    v.extend_from_slice(&id.to_be_bytes());
    v
}

pub(super) fn ret(id: u32, value: &[u8]) -> Vec<u8> {
    let mut b = encode::begin(16);
    encode::return_head(&mut b, CallId(id));
    b.extend_from_slice(value);
    encode::finish(&mut b);
    b.split_off(4)
}

pub(super) fn payload(frame: Vec<u8>) -> Vec<u8> {
    frame[4..].to_vec()
}

fn key(n: usize) -> ExportKey {
    ExportKey {
        addr: n,
        interface: std::any::TypeId::of::<u8>(),
    }
}

fn reject_kind(ev: Event<'_, &'static str, u32>) -> String {
    let Event::Reject { frame, .. } = ev else {
        panic!("expected Reject, got {ev:?}")
    };
    let mut refs = Vec::new();
    match Message::parse(&frame[4..], &Limits::default(), &mut refs).unwrap() {
        Message::Error { error, .. } => format!("{}: {}", error.kind, error.message),
        other => panic!("reject is not an error message: {other:?}"),
    }
}

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
fn export_counts_sends_and_release_frees_at_zero() {
    let (mut s, _) = state();
    let id = s.export(key(1), || "obj").unwrap();
    assert_eq!(id, ObjectId(1));
    assert_eq!(
        s.export(key(1), || unreachable!("same object reuses its id"))
            .unwrap(),
        id
    );
    assert_eq!(s.exports().count(id), 2);
    let rel = |n| payload(encode::release(id, n));
    assert!(matches!(
        s.handle_frame(&rel(1)).unwrap(),
        Event::Released(None)
    ));
    assert!(matches!(
        s.handle_frame(&rel(1)).unwrap(),
        Event::Released(Some("obj"))
    ));
    assert!(s.exports().is_empty());
    // Lowest free id is reused.
    assert_eq!(s.export(key(2), || "other").unwrap(), ObjectId(1));
}

#[test]
fn bad_releases_are_violations() {
    let (mut s, _) = state();
    let id = s.export(key(1), || "obj").unwrap();
    let err = s
        .handle_frame(&payload(encode::release(id, 2)))
        .unwrap_err();
    assert!(err.0.contains("count 2, but only 1 were sent"), "{err}");
    let err = s
        .handle_frame(&payload(encode::release(ObjectId(9), 1)))
        .unwrap_err();
    assert!(err.0.contains("unknown object id 9"), "{err}");
    let err = s
        .handle_frame(&payload(encode::release(ObjectId::ROOT, 1)))
        .unwrap_err();
    assert!(err.0.contains("root"), "{err}");
}

#[test]
fn export_limit_is_enforced() {
    let (mut s, _) = state_with(Limits {
        max_exports: 1,
        ..Limits::default()
    });
    s.export(key(1), || "a").unwrap();
    let err = s.export(key(2), || "b").unwrap_err();
    assert!(err.to_string().contains("max_exports = 1"), "{err}");
}

/// The race counted releases exist for: the importer drops its proxy and
/// queues a release of 1 while the exporter sends the same reference again.
#[test]
fn release_crossing_a_resend_keeps_the_object_alive() {
    let (mut exporter, _) = state();
    let (mut importer, sink) = state();
    let id = exporter.export(key(1), || "obj").unwrap();

    // First send arrives; the importer holds a proxy.
    let c = importer.start_call(1).unwrap();
    let first = match importer
        .handle_frame(&ret(c.0, &ext_ref(EXT_SENDER_EXPORT, id.0)))
        .unwrap()
    {
        Event::Reply { refs, .. } => refs,
        other => panic!("{other:?}"),
    };
    assert_eq!(first[0].count(), 1);

    // The exporter sends it again; meanwhile the importer drops its proxy.
    exporter.export(key(1), || unreachable!()).unwrap();
    drop(first);
    let queued = sink.0.lock().unwrap().pop().unwrap();
    assert_eq!((queued.0, queued.2), (id, 1));

    // The second send arrives before the importer's task processed the drop:
    // it starts a new generation with its own count.
    let c = importer.start_call(2).unwrap();
    let second = match importer
        .handle_frame(&ret(c.0, &ext_ref(EXT_SENDER_EXPORT, id.0)))
        .unwrap()
    {
        Event::Reply { refs, .. } => refs,
        other => panic!("{other:?}"),
    };
    assert_eq!(second[0].count(), 1);
    let frame = importer
        .import_released(queued.0, queued.1, queued.2)
        .unwrap();
    assert_eq!(
        importer.imports().len(),
        1,
        "the new generation stays registered"
    );

    // The release of 1 crosses the re-send: the object must survive.
    assert!(matches!(
        exporter.handle_frame(&frame[4..]).unwrap(),
        Event::Released(None)
    ));
    assert_eq!(exporter.exports().count(id), 1);

    // Dropping the second proxy releases the rest and frees the object.
    drop(second);
    let (rid, generation, count) = sink.0.lock().unwrap().pop().unwrap();
    let frame = importer.import_released(rid, generation, count).unwrap();
    assert!(importer.imports().is_empty());
    assert!(matches!(
        exporter.handle_frame(&frame[4..]).unwrap(),
        Event::Released(Some("obj"))
    ));
}

#[test]
fn receipts_of_a_live_import_add_to_one_count() {
    let (mut s, sink) = state();
    let mut args = vec![0x92];
    args.extend(ext_ref(EXT_SENDER_EXPORT, 5));
    args.extend(ext_ref(EXT_SENDER_EXPORT, 5));
    let refs = match s.handle_frame(&call(1, 0, "m", &args)).unwrap() {
        Event::Call { refs, .. } => refs,
        other => panic!("{other:?}"),
    };
    assert_eq!(refs.len(), 1, "one hold per distinct object");
    assert_eq!(refs[0].count(), 2);
    drop(refs);
    assert_eq!(sink.0.lock().unwrap().as_slice(), &[(ObjectId(5), 1, 2)]);
}

#[test]
fn own_object_handed_back_is_checked_against_our_exports() {
    let (mut s, _) = state();
    let id = s.export(key(1), || "mine").unwrap();
    let mut args = vec![0x91];
    args.extend(ext_ref(EXT_RECEIVER_OWN, id.0));
    match s.handle_frame(&call(1, 0, "m", &args)).unwrap() {
        Event::Call { refs, owns, .. } => {
            assert!(refs.is_empty(), "own objects are not imports");
            assert_eq!(
                owns,
                vec![(id, "mine")],
                "held until the arguments are decoded"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut args = vec![0x91];
    args.extend(ext_ref(EXT_RECEIVER_OWN, 77));
    let msg = reject_kind(s.handle_frame(&call(2, 0, "m", &args)).unwrap());
    assert!(msg.contains("unknown object id 77"), "{msg}");
}

#[test]
fn import_limit_is_a_violation() {
    let (mut s, _) = state_with(Limits {
        max_imports: 1,
        ..Limits::default()
    });
    let mut args = vec![0x92];
    args.extend(ext_ref(EXT_SENDER_EXPORT, 1));
    args.extend(ext_ref(EXT_SENDER_EXPORT, 2));
    let f = call(1, 0, "m", &args);
    let err = s.handle_frame(&f).unwrap_err();
    assert_eq!(
        err.0,
        "max_imports = 1 distinct peer objects already imported on this connection"
    );
}

#[test]
fn references_after_a_bad_one_are_still_counted_and_released() {
    let (mut s, sink) = state();
    // A bad handed-back reference first, then one of the sender's.
    let mut args = vec![0x92];
    args.extend(ext_ref(EXT_RECEIVER_OWN, 99));
    args.extend(ext_ref(EXT_SENDER_EXPORT, 5));
    let f = call(1, 0, "m", &args);
    let msg = reject_kind(s.handle_frame(&f).unwrap());
    assert!(msg.starts_with("unknown_object"), "{msg}");
    // The sender counted its send of 5: it must get a release back.
    let released: Vec<_> = sink.0.lock().unwrap().iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(released, vec![(ObjectId(5), 1)]);
}

#[test]
fn a_counted_reference_to_the_root_is_a_violation() {
    let (mut s, _) = state();
    let mut args = vec![0x91];
    args.extend(ext_ref(EXT_SENDER_EXPORT, 0));
    let f = call(1, 0, "m", &args);
    let err = s.handle_frame(&f).unwrap_err();
    assert!(err.0.contains("object 0"), "{err}");
}

#[test]
fn cancel_of_unknown_call_is_ignored() {
    let (mut s, _) = state();
    assert!(matches!(
        s.handle_frame(&payload(encode::cancel(CallId(3)))).unwrap(),
        Event::Nothing
    ));
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
    s.export(key(1), || "a").unwrap();
    let (waiters, objects) = s.close();
    assert_eq!(waiters, vec![11]);
    let mut objects = objects;
    objects.sort();
    assert_eq!(objects, vec!["a", "root"]);
    assert!(s.start_call(12).is_err());
}

fn violation(frame: &[u8]) -> String {
    let (mut s, _) = state();
    s.handle_frame(frame).unwrap_err().0
}

#[test]
fn malformed_frames_are_violations_with_clear_reasons() {
    let good = call(1, 0, "m", &[0x91, 0x01]);
    let m = violation(&good[..good.len() - 1]);
    assert!(m.contains("cannot fit in 0 bytes"), "{m}");
    assert!(violation(&good[..good.len() - 3]).contains("needs"));
    assert!(violation(&[]).contains("needs 1 more bytes, 0 left"));
    assert!(violation(&[0xc1]).contains("expected an array"));
    assert!(violation(&[0x90]).contains("empty message"));
    assert!(violation(&[0x92, 0x0c, 0x00]).contains("unknown message kind 12"));
    assert!(violation(&[0x92, 0x01, 0x00]).contains("message kind 1 has 6 fields, got 2"));
    let mut trailing = good.clone();
    trailing.push(0x00);
    assert!(violation(&trailing).contains("1 trailing bytes"));
    // Declared lengths larger than the frame are refused before allocating.
    assert!(violation(&call(1, 0, "m", &[0xdd, 0xff, 0xff, 0xff, 0xff])).contains("cannot fit"));
    assert!(violation(&[0xdd, 0x7f, 0xff, 0xff, 0xff]).contains("cannot fit"));
    let m = violation(&call(1, 0, "m", &[0x91, 0xdb, 0xff, 0xff, 0xff, 0xff]));
    assert!(m.contains("needs 4294967295 more bytes"), "{m}");
    // Unknown extension types never reach serde.
    assert!(violation(&call(1, 0, "m", &[0x91, 0xd6, 0x09, 0, 0, 0, 1]))
        .contains("unknown extension type 9"));
    assert!(violation(&call(1, 0, "m", &[0x91, 0xd4, 0x01, 0x00])).contains("not allowed"));
    // Invalid UTF-8 in a method name.
    let mut bad = call(1, 0, "m", &[0x90]);
    let at = bad.iter().position(|&b| b == b'm').unwrap();
    bad[at] = 0xff;
    assert!(violation(&bad).contains("not UTF-8"));
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_without_recursion() {
    // 100,000 nested arrays: a recursive decoder would overflow its stack.
    let mut deep = vec![0x91; 100_000];
    deep.push(0xc0);
    let msg = violation(&call(1, 0, "m", &deep));
    assert!(msg.contains("nesting deeper than max_depth = 64"), "{msg}");
    let mut ok = vec![0x91; 10];
    ok.push(0xc0);
    let (mut s, _) = state();
    assert!(matches!(
        s.handle_frame(&call(1, 0, "m", &ok)).unwrap(),
        Event::Call { .. }
    ));
}

#[test]
fn frame_codec_refuses_oversized_prefix_without_allocating() {
    use tokio_util::codec::Decoder;
    let mut codec = FrameCodec::new(1024);
    let mut buf = bytes::BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0x00][..]);
    let cap = buf.capacity();
    match codec.decode(&mut buf) {
        Err(FrameError::TooLarge { len, max }) => assert_eq!((len, max), (u32::MAX as u64, 1024)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        buf.capacity(),
        cap,
        "nothing was reserved for the announced length"
    );
    // A partial frame waits for more bytes.
    let mut part = bytes::BytesMut::from(&[0, 0, 0, 3, 0x92][..]);
    assert!(codec.decode(&mut part).unwrap().is_none());
    part.extend_from_slice(&[0x05, 0x01]);
    assert_eq!(
        &codec.decode(&mut part).unwrap().unwrap()[..],
        &[0x92, 0x05, 0x01]
    );
}

#[test]
fn encoders_produce_what_the_parser_reads() {
    let mut refs = Vec::new();
    let f = encode::release(ObjectId(70000), 3);
    assert_eq!(
        Message::parse(&f[4..], &Limits::default(), &mut refs).unwrap(),
        Message::Release {
            id: ObjectId(70000),
            count: 3
        }
    );
    let mut long = Vec::new();
    enc::str(&mut long, &"x".repeat(300));
    let f = encode::goodbye(&"y".repeat(70000));
    assert!(
        matches!(Message::parse(&f[4..], &Limits::default(), &mut refs).unwrap(), Message::Goodbye { reason } if reason.len() == encode::MAX_GOODBYE_REASON && reason.ends_with('…'))
    );
    let mut b = Vec::new();
    for v in [
        0u64,
        127,
        128,
        255,
        256,
        65535,
        65536,
        u32::MAX as u64,
        u64::MAX,
    ] {
        b.clear();
        enc::uint(&mut b, v);
        assert_eq!(Reader::new(&b).uint().unwrap(), v);
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes never panic the state machine.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (mut s, _) = state();
            let _ = s.handle_frame(&bytes);
        }

        /// Every valid call survives a round trip through encode and parse.
        #[test]
        fn calls_round_trip(id in any::<u32>(), target in any::<u32>(), method in "[a-z_]{1,40}", ms in any::<u32>()) {
            let mut b = encode::begin(32);
            encode::call_head(&mut b, CallId(id), ObjectId(target), &method, ms);
            b.push(0x90);
            encode::finish(&mut b);
            let mut refs = Vec::new();
            let m = Message::parse(&b[4..], &Limits::default(), &mut refs).unwrap();
            prop_assert_eq!(m, Message::Call { id: CallId(id), target: ObjectId(target), method: &method, timeout_ms: ms, args: b.len() - 5..b.len() - 4 });
        }

        /// Export/release sequences keep the count equal to sends minus releases.
        #[test]
        fn export_counts_match_a_model(ops in proptest::collection::vec((0usize..4, any::<bool>()), 0..64)) {
            let mut t: ExportTable<usize> = ExportTable::new(None, 100);
            let mut model = [0u32; 4];
            let mut ids = [None; 4];
            for (obj, send) in ops {
                if send {
                    let id = t.export(key(obj), || obj).unwrap();
                    ids[obj] = Some(id);
                    model[obj] += 1;
                } else if let Some(id) = ids[obj] {
                    let r = t.release(id, 1);
                    if model[obj] == 0 {
                        prop_assert!(r.is_err());
                    } else {
                        model[obj] -= 1;
                        prop_assert_eq!(r.unwrap().is_some(), model[obj] == 0);
                        if model[obj] == 0 { ids[obj] = None; }
                    }
                }
            }
            prop_assert_eq!(t.len(), model.iter().filter(|c| **c > 0).count());
        }
    }
}

/// The worked example in PROTOCOL.md, byte for byte.
#[test]
fn protocol_md_worked_example() {
    let hello = encode::hello(&S::hello(None));
    assert_eq!(
        hex(&hello),
        "00000022 96 00 a6 72 65 6d 6f 74 65 01 01 92 a9 6b 65 65 70 61 6c 69 76 65 aa 69 6e 76 61 6c 69 64 61 74 65 c0"
    );
    let mut call = encode::begin(16);
    encode::call_head(&mut call, CallId(0), ObjectId(0), "add", 10_000);
    call.extend_from_slice(&[0x92, 0x02, 0x03]);
    encode::finish(&mut call);
    assert_eq!(
        hex(&call),
        "0000000e 96 01 00 00 a3 61 64 64 cd 27 10 92 02 03"
    );
    let mut ret = encode::begin(8);
    encode::return_head(&mut ret, CallId(0));
    ret.push(0x05);
    encode::finish(&mut ret);
    assert_eq!(hex(&ret), "00000004 93 02 00 05");
    let err = encode::error(
        CallId(1),
        &crate::RemoteError::new("unknown_method", "remote_core::Error", "no"),
        &Limits::default(),
    );
    assert_eq!(
        hex(&err),
        "0000002c 93 03 01 96 ae 75 6e 6b 6e 6f 77 6e 5f 6d 65 74 68 6f 64 b2 72 65 6d 6f 74 65 5f 63 6f 72 65 3a 3a 45 72 72 6f 72 a2 6e 6f 90 c0 c0"
    );
    assert_eq!(
        hex(&encode::release(ObjectId(3), 2)),
        "00000004 93 04 03 02"
    );
    assert_eq!(hex(&encode::cancel(CallId(9))), "00000003 92 05 09");
    assert_eq!(hex(&encode::goodbye("bye")), "00000006 92 06 a3 62 79 65");
    assert_eq!(hex(&encode_ping(7)), "00000003 92 07 07");
    assert_eq!(hex(&encode_pong(7)), "00000003 92 08 07");
    assert_eq!(
        hex(&super::encode_invalidate(5, ObjectId(3), &["get"])),
        "00000009 94 0a 05 03 91 a3 67 65 74"
    );
    assert_eq!(hex(&super::encode_invalidated(5)), "00000003 92 0b 05");
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
        vec![FEATURE_KEEPALIVE, super::FEATURE_INVALIDATE]
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

fn hex(frame: &[u8]) -> String {
    let mut s: String = frame[..4].iter().map(|b| format!("{b:02x}")).collect();
    for b in &frame[4..] {
        s.push_str(&format!(" {b:02x}"));
    }
    s
}
