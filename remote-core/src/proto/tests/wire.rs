//! The wire format: malformed frames, nesting, the frame codec, encoders
//! against the parser, property tests, and PROTOCOL.md's worked example.

use super::*;
use crate::proto::value::enc;

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
    assert!(violation(&[0x92, 0x0e, 0x00]).contains("unknown message kind 14"));
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

/// A call counts the items of its arguments' arrays and maps (what the
/// share counts at their decoded size): the argument array's own, every
/// nested container's, a map's keys and values both; scalars add none.
#[test]
fn a_call_counts_the_items_of_its_arguments() {
    // [["", "", ""], {1: 2}, 7]: 3 + 3 + 2 items.
    let args = [0x93, 0x93, 0xa0, 0xa0, 0xa0, 0x81, 0x01, 0x02, 0x07];
    let f = call(1, 0, "m", &args);
    let mut refs = Vec::new();
    match Message::parse(&f, &Limits::default(), &mut refs).unwrap() {
        Message::Call { items, .. } => assert_eq!(items, 8),
        other => panic!("{other:?}"),
    }
    let f = call(1, 0, "m", &[0x91, 0x07]);
    match Message::parse(&f, &Limits::default(), &mut refs).unwrap() {
        Message::Call { items, .. } => assert_eq!(items, 1),
        other => panic!("{other:?}"),
    }
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
            prop_assert_eq!(m, Message::Call { id: CallId(id), target: ObjectId(target), method: &method, timeout_ms: ms, args: b.len() - 5..b.len() - 4, items: 0 });
        }

        /// Sends counted (`export`), queued (`sent`), taken back (`unsend`)
        /// and released by the peer keep the table equal to a model: an
        /// object lives while it has sends, and the peer may use (look up,
        /// release) only the queued ones.
        #[test]
        fn export_counts_match_a_model(ops in proptest::collection::vec((0usize..4, 0u8..4), 0..64)) {
            let mut t: ExportTable<usize> = ExportTable::new(None, 100, crate::proto::CountPool::unbounded().share(None));
            // Per object: (sends, of which not queued yet).
            let mut model = [(0u32, 0u32); 4];
            let mut ids = [None; 4];
            for (obj, op) in ops {
                let (count, unsent) = &mut model[obj];
                match (op, ids[obj]) {
                    (0, _) => {
                        let id = t.export(key(obj), true, || obj).unwrap();
                        ids[obj] = Some(id);
                        *count += 1;
                        *unsent += 1;
                    }
                    (1, Some(id)) if *unsent > 0 => {
                        t.sent(id);
                        *unsent -= 1;
                    }
                    (2, Some(id)) if *unsent > 0 => {
                        let freed = t.unsend(id).unwrap();
                        *count -= 1;
                        *unsent -= 1;
                        prop_assert_eq!(freed.is_some(), *count == 0);
                    }
                    (3, Some(id)) => {
                        let r = t.release(id, 1);
                        if *count == *unsent {
                            prop_assert!(r.is_err(), "released a send not queued");
                        } else {
                            *count -= 1;
                            prop_assert_eq!(r.unwrap().is_some(), *count == 0);
                        }
                    }
                    _ => {}
                }
                if *count == 0 {
                    ids[obj] = None;
                }
                if let Some(id) = ids[obj] {
                    prop_assert_eq!(t.get_sent(id).is_some(), *count > *unsent);
                    prop_assert!(t.get(id).is_some());
                }
            }
            prop_assert_eq!(t.len(), model.iter().filter(|c| c.0 > 0).count());
        }
    }
}

/// The worked example in PROTOCOL.md, byte for byte.
#[test]
fn protocol_md_worked_example() {
    let hello = encode::hello(&S::hello(None));
    assert_eq!(
        hex(&hello),
        "0000002b 96 00 a6 72 65 6d 6f 74 65 01 01 93 a9 6b 65 65 70 61 6c 69 76 65 aa 69 6e 76 61 6c 69 64 61 74 65 a8 70 69 70 65 6c 69 6e 65 c0"
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

/// The promise-pipelining bytes of PROTOCOL.md §3.10, byte for byte (a
/// clean-room client found the return's array header printed as `92`).
#[test]
fn protocol_md_pipelining_example() {
    let pipe = |keep, id, target, method, args: &[u8]| {
        let mut b = encode::begin(32);
        super::super::pipeline::call_head(&mut b, keep, CallId(id), target, method, 10_000);
        b.extend_from_slice(args);
        encode::finish(&mut b);
        hex(&b)
    };
    assert_eq!(
        pipe(
            true,
            5,
            CallTarget::Object(ObjectId(0)),
            "open",
            &[0x91, 0xa1, b'x']
        ),
        "0000000f 96 0c 05 00 a4 6f 70 65 6e cd 27 10 91 a1 78"
    );
    assert_eq!(
        pipe(false, 6, CallTarget::Promise(CallId(5)), "read", &[0x90]),
        "0000000e 96 01 06 91 05 a4 72 65 61 64 cd 27 10 90"
    );
    let mut ret = encode::begin(16);
    encode::return_head(&mut ret, CallId(5));
    ret.extend_from_slice(&[0xd6, 0x01, 0, 0, 0, 3]);
    encode::finish(&mut ret);
    assert_eq!(hex(&ret), "00000009 93 02 05 d6 01 00 00 00 03");
    assert!(
        matches!(
            Message::parse(&ret[4..], &Limits::default(), &mut Vec::new()),
            Ok(Message::Return { id: CallId(5), .. })
        ),
        "the reply parses"
    );
    assert_eq!(
        hex(&super::super::pipeline::finish(CallId(5))),
        "00000003 92 0d 05"
    );
}

fn hex(frame: &[u8]) -> String {
    let mut s: String = frame[..4].iter().map(|b| format!("{b:02x}")).collect();
    for b in &frame[4..] {
        s.push_str(&format!(" {b:02x}"));
    }
    s
}
