//! References: export counts and releases, imports, table limits, and
//! references carried in messages.

use super::*;

#[test]
fn export_counts_sends_and_release_frees_at_zero() {
    let (mut s, _) = state();
    let id = export_sent(&mut s, 1, || "obj");
    assert_eq!(id, ObjectId(1));
    assert_eq!(
        export_sent(&mut s, 1, || unreachable!("same object reuses its id")),
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
    assert_eq!(export_sent(&mut s, 2, || "other"), ObjectId(1));
}

/// A send counted by a message not queued yet is not the peer's: it can
/// neither call the object, name it as its own nor release it; once the
/// message is queued it can, and a send taken back (the message refused)
/// frees the object with its last send.
#[test]
fn sends_not_yet_queued_are_not_the_peers() {
    let (mut s, _) = state();
    let id = s.export(key(1), true, || "new").unwrap();
    let msg = reject_kind(s.handle_frame(&call(1, id.0, "m", &[0x90])).unwrap());
    assert!(msg.contains(&format!("no object with id {id}")), "{msg}");
    let mut args = vec![0x91];
    args.extend(ext_ref(EXT_RECEIVER_OWN, id.0));
    let msg = reject_kind(s.handle_frame(&call(2, 0, "m", &args)).unwrap());
    assert!(msg.contains(&format!("unknown object id {id}")), "{msg}");
    let err = s
        .handle_frame(&payload(encode::release(id, 1)))
        .unwrap_err();
    assert!(err.0.contains("count 1, but only 0 were sent"), "{err}");
    // Taken back: it was its only send.
    assert_eq!(s.undo_export(id).unwrap(), Some("new"));
    assert!(s.exports().is_empty());

    // Sent once, then counted again by a message still being encoded: the
    // first send is the peer's, the second not yet.
    let id = export_sent(&mut s, 2, || "old");
    assert_eq!(s.export(key(2), true, || unreachable!()).unwrap(), id);
    assert!(matches!(
        s.handle_frame(&call(3, id.0, "m", &[0x90])).unwrap(),
        Event::Call { .. }
    ));
    let err = s
        .handle_frame(&payload(encode::release(id, 2)))
        .unwrap_err();
    assert!(err.0.contains("count 2, but only 1 were sent"), "{err}");
    assert_eq!(s.undo_export(id).unwrap(), None, "the sent one stays");
    assert!(matches!(
        s.handle_frame(&payload(encode::release(id, 1))).unwrap(),
        Event::Released(Some("old"))
    ));
}

#[test]
fn bad_releases_are_violations() {
    let (mut s, _) = state();
    let id = export_sent(&mut s, 1, || "obj");
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
    s.export(key(1), true, || "a").unwrap();
    let err = s.export(key(2), true, || "b").unwrap_err();
    assert!(err.to_string().contains("max_exports = 1"), "{err}");
}

/// The race counted releases exist for: the importer drops its proxy and
/// queues a release of 1 while the exporter sends the same reference again.
#[test]
fn release_crossing_a_resend_keeps_the_object_alive() {
    let (mut exporter, _) = state();
    let (mut importer, sink) = state();
    let id = export_sent(&mut exporter, 1, || "obj");

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
    export_sent(&mut exporter, 1, || unreachable!());
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

/// An import received again and again while held gives all its receipts
/// but one back each time it reaches the mark, so no count overflows, and
/// the receipts given back and released add up to those received.
#[test]
fn a_held_import_gives_its_receipts_back_before_they_overflow() {
    let (mut s, sink) = state();
    s.give_back_at(4);
    let mut args = vec![0x91];
    args.extend(ext_ref(EXT_SENDER_EXPORT, 5));
    let mut held = Vec::new();
    for i in 1..=10u32 {
        match s.handle_frame(&call(i, 0, "m", &args)).unwrap() {
            Event::Call { refs, .. } => held.extend(refs),
            other => panic!("{other:?}"),
        }
        assert!(held[0].count() < 4, "receipt {i}: {}", held[0].count());
    }
    // Received 10 times: 3 given back at the 4th, 3 at the 7th, 3 at the
    // 10th; one kept.
    assert_eq!(
        sink.1.lock().unwrap().as_slice(),
        &[(ObjectId(5), 3), (ObjectId(5), 3), (ObjectId(5), 3)]
    );
    assert_eq!(held[0].count(), 1);
    assert_eq!(s.imports().len(), 1, "the import stays");
    drop(held);
    assert_eq!(sink.0.lock().unwrap().as_slice(), &[(ObjectId(5), 1, 1)]);
}

#[test]
fn own_object_handed_back_is_checked_against_our_exports() {
    let (mut s, _) = state();
    let id = export_sent(&mut s, 1, || "mine");
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
fn a_counted_reference_to_the_reserved_id_is_a_violation() {
    // In a call's arguments and in a reply alike (`take_refs`), after a
    // good reference, which is still counted and released.
    let (mut s, sink) = state();
    let mut args = vec![0x92];
    args.extend(ext_ref(EXT_SENDER_EXPORT, 3));
    args.extend(ext_ref(EXT_SENDER_EXPORT, u32::MAX));
    let f = call(1, 0, "m", &args);
    let err = s.handle_frame(&f).unwrap_err();
    assert_eq!(
        err.0,
        "a reference (ext type 1) to object 4294967295: that id names no object"
    );
    let released: Vec<_> = sink.0.lock().unwrap().iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(released, vec![(ObjectId(3), 1)]);
}
