//! State machine tests for hostile input: references smuggled in error
//! data, oversized error text, many references in one message.

use super::*;

/// An error message payload answering call `id`: `chain` as given, `data`
/// raw bytes (or nil).
fn error_frame(id: CallId, message: &str, chain: &[&str], data: Option<&[u8]>) -> Vec<u8> {
    let e = crate::RemoteError {
        kind: "application".into(),
        type_name: "evil::E".into(),
        message: message.into(),
        chain: chain.iter().map(|s| (*s).to_owned()).collect(),
        backtrace: None,
        data: None,
    };
    let mut b = encode::begin(64);
    // Unbounded, as a hostile peer would send it.
    let limits = Limits {
        max_error_chain: usize::MAX,
        max_error_text: usize::MAX,
        max_frame_len: usize::MAX,
        ..Limits::default()
    };
    encode::error_head(&mut b, id, &e, &limits);
    match data {
        Some(d) => b.extend_from_slice(d),
        None => b.push(0xc0),
    }
    encode::finish(&mut b);
    b.split_off(4)
}

#[test]
fn a_reference_in_error_data_is_a_violation() {
    for (code, data) in [
        (EXT_SENDER_EXPORT, ext_ref(EXT_SENDER_EXPORT, 1)),
        (EXT_RECEIVER_OWN, ext_ref(EXT_RECEIVER_OWN, 1)),
        // Nested inside the application value.
        (EXT_SENDER_EXPORT, {
            let mut v = vec![0x81, 0xa1, b'x', 0x92, 0x01];
            v.extend(ext_ref(EXT_SENDER_EXPORT, 7));
            v
        }),
    ] {
        let (mut s, sink) = state();
        let id = s.start_call(1).unwrap();
        let v = s
            .handle_frame(&error_frame(id, "nope", &[], Some(&data)))
            .unwrap_err();
        assert!(
            v.0.contains(&format!("error data holds a reference (ext type {code}")),
            "{v}"
        );
        // Nothing was imported, so nothing will be released.
        assert!(s.imports().is_empty());
        assert!(sink.0.lock().unwrap().is_empty());
    }
    // Reference-free data still arrives, byte for byte.
    let (mut s, _) = state();
    let id = s.start_call(1).unwrap();
    let f = error_frame(id, "ok", &[], Some(&[0x92, 0x01, 0x02]));
    match s.handle_frame(&f).unwrap() {
        Event::Reply {
            result: Err(e),
            refs,
            ..
        } => {
            assert_eq!(e.data.as_deref(), Some(&[0x92, 0x01, 0x02][..]));
            assert!(refs.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_received_error_keeps_at_most_the_chain_and_text_limits() {
    let limits = Limits::default();
    let (mut s, _) = state();
    let id = s.start_call(1).unwrap();
    // A million empty causes: 1 MB on the wire, 24 MB as Strings.
    let many = vec![""; 1_000_000];
    let f = error_frame(id, "m", &many, None);
    let Event::Reply { result: Err(e), .. } = s.handle_frame(&f).unwrap() else {
        panic!("expected the error reply")
    };
    assert_eq!(e.chain.len(), limits.max_error_chain);
    assert_eq!(
        e.chain.last().unwrap(),
        &format!(
            "… {} more causes omitted (max_error_chain = {})",
            1_000_000 - (limits.max_error_chain - 1),
            limits.max_error_chain
        )
    );
    // Long text: cut to max_error_text in total, marked.
    let id = s.start_call(2).unwrap();
    let long = "é".repeat(100_000);
    let f = error_frame(id, &long, &[&long, &long], None);
    let Event::Reply { result: Err(e), .. } = s.handle_frame(&f).unwrap() else {
        panic!("expected the error reply")
    };
    // (The note naming omitted causes comes on top.)
    let kept = e.chain.iter().filter(|c| !c.starts_with("… "));
    let total =
        e.kind.len() + e.type_name.len() + e.message.len() + kept.map(String::len).sum::<usize>();
    assert!(total <= limits.max_error_text, "{total}");
    assert!(e.message.ends_with('…'));
    // Past the budget the rest of the chain is dropped and counted.
    assert_eq!(
        e.chain,
        vec!["… 2 more causes omitted (max_error_chain = 32)".to_owned()]
    );
    // The same bounds apply to an error for a call nobody waits for (the
    // one reply to a call we cancelled).
    let id = s.start_call(3).unwrap();
    assert!(s.cancel_call(id, true));
    let f = error_frame(id, "m", &many, None);
    assert!(matches!(s.handle_frame(&f).unwrap(), Event::Nothing));
}

#[test]
fn errors_we_send_are_bounded_and_fit_in_a_frame() {
    let huge = crate::RemoteError {
        kind: "application".into(),
        type_name: "t".into(),
        message: "x".repeat(3 << 20),
        chain: vec!["c".repeat(1000); 100_000],
        backtrace: Some("b".repeat(1 << 20)),
        data: None,
    };
    for limits in [
        Limits::default(),
        Limits {
            max_frame_len: 4096,
            ..Limits::default()
        },
    ] {
        let f = encode::error(CallId(1), &huge, &limits);
        assert!(f.len() - 4 <= limits.max_frame_len, "{}", f.len());
        let mut refs = Vec::new();
        let Message::Error { error, .. } =
            Message::parse(&f[4..], &Limits::default(), &mut refs).unwrap()
        else {
            panic!("not an error frame")
        };
        assert!(error.chain.len() <= limits.max_error_chain);
        assert!(error.message.ends_with('…'));
        assert!(error.backtrace.is_some());
    }
    // Small errors go out untouched.
    let small = crate::RemoteError::new("k", "t", "m");
    let f = encode::error(CallId(1), &small, &Limits::default());
    let mut refs = Vec::new();
    let Message::Error { error, .. } =
        Message::parse(&f[4..], &Limits::default(), &mut refs).unwrap()
    else {
        panic!("not an error frame")
    };
    assert_eq!((&*error.kind, &*error.message), ("k", "m"));
}

#[test]
fn many_references_to_few_objects_are_held_once_each_in_id_order() {
    let (mut s, _) = state();
    let mut own_ids = Vec::new();
    for n in 0..10 {
        own_ids.push(export_sent(&mut s, n, || "mine"));
    }
    // 1,700 references: 170 to each of 10 imports, and 10 handed-back
    // objects of ours, in descending id order.
    let mut args = vec![0xdc];
    args.extend_from_slice(&1710u16.to_be_bytes());
    for _ in 0..170 {
        for id in (100..110).rev() {
            args.extend(ext_ref(EXT_SENDER_EXPORT, id));
        }
    }
    for id in own_ids.iter().rev() {
        args.extend(ext_ref(EXT_RECEIVER_OWN, id.0));
    }
    let Event::Call { refs, owns, .. } = s.handle_frame(&call(1, 0, "m", &args)).unwrap() else {
        panic!("expected a call")
    };
    let ids: Vec<u32> = refs.iter().map(|r| r.id().0).collect();
    assert_eq!(ids, (100..110).collect::<Vec<_>>());
    assert!(
        refs.iter().all(|r| r.count() == 170),
        "every receipt counted"
    );
    let owned: Vec<ObjectId> = owns.iter().map(|(id, _)| *id).collect();
    assert_eq!(owned, own_ids);
}

/// Call ids a peer picks equal in their low 16 bits still spread over the
/// buckets of the maps keyed by them (`PeerIdMap`): with a fixed
/// multiplicative hash they all share their low bits, one probe chain, and
/// each lookup walks it (quadratic work for `max_calls_in_flight` ids).
#[test]
fn peer_chosen_call_ids_do_not_share_a_bucket() {
    use std::hash::BuildHasher;
    let map: crate::proto::PeerIdMap<CallId, ()> = Default::default();
    let buckets: std::collections::HashSet<u64> = (0..1024u32)
        .map(|i| map.hasher().hash_one(CallId(i << 16)) & 0xff)
        .collect();
    // 1,024 ids over 256 buckets: nearly every bucket is hit.
    assert!(buckets.len() > 200, "{} of 256 buckets", buckets.len());
}

/// The same under every seed, not only most: the process-wide seed is
/// random too, and under about one in ten of them ids equal in their low
/// 16 bits fell in a few buckets (14 of 256 in one process of 300), as
/// `foldhash::fast` takes a hash's low bits from one multiply by a seed
/// (found as `peer_chosen_call_ids_do_not_share_a_bucket` failing one run
/// in ten). Seeds fixed here, so each run checks the same 256.
#[test]
fn peer_chosen_call_ids_spread_under_every_seed() {
    use std::hash::BuildHasher;
    let mut worst = (usize::MAX, 0);
    for seed in 1..=256u64 {
        let shared: &'static foldhash::SharedSeed =
            Box::leak(Box::new(foldhash::SharedSeed::from_u64(seed)));
        let hash =
            crate::proto::PeerIdHash::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), shared);
        let map: crate::proto::PeerIdMap<CallId, ()> = std::collections::HashMap::with_hasher(hash);
        let buckets: std::collections::HashSet<u64> = (0..1024u32)
            .map(|i| map.hasher().hash_one(CallId(i << 16)) & 0xff)
            .collect();
        worst = worst.min((buckets.len(), seed));
    }
    assert!(
        worst.0 > 200,
        "{} of 256 buckets under seed {}",
        worst.0,
        worst.1
    );
}

/// A reply to a call we never made (or already had its one reply) is a
/// violation before any reference in it is counted: ignoring it would
/// release each of its references with a frame of ours, output a peer
/// that reads nothing could grow without bound (tests/attack_wire7.rs).
#[test]
fn a_reply_to_a_call_never_made_is_a_violation_before_counting() {
    let (mut s, _) = state();
    // A return of a reference to the peer's object 5, for call 7.
    let stray = [0x93, 0x02, 0x07, 0xd6, 0x01, 0, 0, 0, 5];
    let v = s.handle_frame(&stray).unwrap_err();
    assert!(v.0.contains("reply to call 7"), "{v}");
    assert!(s.imports().is_empty(), "nothing counted");
    let f = error_frame(CallId(8), "m", &[], None);
    let v = s.handle_frame(&f).unwrap_err();
    assert!(v.0.contains("reply to call 8"), "{v}");
    // A second reply to a call already answered is one too.
    let id = s.start_call(1).unwrap();
    let ret = [0x93, 0x02, id.0 as u8, 0xc0];
    assert!(matches!(s.handle_frame(&ret).unwrap(), Event::Reply { .. }));
    assert!(s.handle_frame(&ret).is_err());
    // A cancelled call's one reply is still taken (and its id freed).
    let id = s.start_call(2).unwrap();
    assert!(s.cancel_call(id, true));
    let ret = [0x93, 0x02, id.0 as u8, 0xc0];
    assert!(matches!(s.handle_frame(&ret).unwrap(), Event::Nothing));
    assert!(s.handle_frame(&ret).is_err());
}

#[test]
fn a_call_is_told_apart_however_its_head_is_encoded() {
    use crate::proto::is_call;
    let usual = call(1, 0, "m", &[0x90]);
    assert!(is_call(&usual));
    // The same message with its array length as an array16 and its kind
    // as a uint8: still a call, so backpressure holds it like any other.
    let mut long = vec![0xdc, 0x00, 0x06, 0xcc, 0x01];
    long.extend_from_slice(&usual[2..]);
    let parsed = Message::parse(&long, &Limits::default(), &mut Vec::new());
    assert!(matches!(parsed, Ok(Message::Call { .. })), "{parsed:?}");
    assert!(is_call(&long));
    let mut kept = vec![0xdc, 0x00, 0x06, 0xcc, 0x0c];
    kept.extend_from_slice(&usual[2..]);
    assert!(is_call(&kept));
    // Other kinds, short or malformed heads are not calls.
    assert!(!is_call(&[0x93, 0x02, 0x01, 0xc0]));
    assert!(!is_call(&[0xdc, 0x00, 0x03, 0xcc, 0x02]));
    assert!(!is_call(&[0x96]));
    assert!(!is_call(&[]));
    assert!(!is_call(&[0xc1, 0x01]));
}
