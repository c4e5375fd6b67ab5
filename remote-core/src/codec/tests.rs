//! Tests of the encode and decode contexts and of value encodings.

use serde::{Deserialize, Serialize};

use crate::proto::ObjectId;

/// 170,000 references to 10,000 objects (what fits in a 1 MiB frame):
/// each is found in O(log n) steps in the sorted holds, not by a scan.
#[test]
fn finding_each_reference_takes_logarithmic_steps() {
    let held: Vec<ObjectId> = (1..=10_000).map(ObjectId).collect();
    super::LOOKUP_STEPS.with(|c| c.set(0));
    for i in 0..170_000u32 {
        let id = ObjectId(i % 10_000 + 1);
        assert_eq!(super::lookup(&held, id, |x| *x), Some(&id));
    }
    assert_eq!(super::lookup(&held, ObjectId(10_001), |x| *x), None);
    let steps = super::LOOKUP_STEPS.with(std::cell::Cell::get);
    // log2(10,000) < 14; a scan would take ~5,000 per reference.
    assert!(steps <= 170_001 * 16, "{steps} comparisons");
}

/// A value whose decoding tries to resolve a reference of each kind
/// and keeps the errors, to see which decode context was in force.
struct Probe(String);

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type List = dyn crate::collections::RemoteList<u64>;
        let nested = u8::deserialize(d)? == 1;
        let import = super::import::<List>(ObjectId(3)).err().unwrap_or_default();
        let own = super::own::<List>(ObjectId(4)).err().unwrap_or_default();
        let mut seen = format!("{import}; {own}");
        if nested {
            // A detached decode inside: no context there.
            let inner: Probe = super::decode_detached(&[0]).map_err(serde::de::Error::custom)?;
            seen = format!("{seen} | {}", inner.0);
        }
        Ok(Probe(seen))
    }
}

/// Outside a decode a reference cannot be received; in a message that
/// holds none, every reference is unregistered; a detached decode
/// inside a message's decode has no context again.
#[test]
fn reference_errors_follow_the_decode_context() {
    const OUTSIDE: &str = "a Remote<_> can only be received in a remote call or reply";
    let outside = format!("{OUTSIDE}; {OUTSIDE}");
    let probe: Probe = super::decode_detached(&[0]).unwrap();
    assert_eq!(probe.0, outside);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, _server) = rt
        .block_on(crate::Connection::pair(
            crate::ConnectionBuilder::new(),
            crate::ConnectionBuilder::new(),
        ))
        .unwrap();
    let unregistered =
        "reference to object 3 was not registered; reference to our object 4 was not registered";
    let held = crate::driver::Held::default();
    let probe: Probe = super::decode_from(&client.shared, &[1], held, "value").unwrap();
    assert_eq!(probe.0, format!("{unregistered} | {outside}"));
    // Each context ends with its decode.
    let probe: Probe = super::decode_detached(&[0]).unwrap();
    assert_eq!(probe.0, outside);
}

/// A value that sends `list` twice and, between the two, a detached
/// encode of it and an encode of it on `other` (each recorded), to see
/// which encode context is in force where.
struct Sends {
    list: crate::Remote<dyn crate::collections::RemoteList<u64>>,
    other: std::sync::Arc<crate::driver::Shared>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Serialize for Sends {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.list)?;
        let detached = super::encode_detached(&self.list);
        self.seen
            .borrow_mut()
            .push(format!("{:?}", detached.map(|_| ())));
        let mut buf = Vec::new();
        let inner = super::encode_into(&self.other, &self.list, &mut buf, "inner");
        self.seen
            .borrow_mut()
            .push(format!("{:?}", inner.map(|e| e.0.len())));
        // An encode on `other` made inside a detached encode: its exports
        // are its own, not those the suspended outer encode counted.
        let _ = super::encode_detached(&EncodesOnOther(self));
        t.serialize_element(&self.list)?;
        t.end()
    }
}

/// Encodes its `Sends`'s list on `other` when serialized (recorded).
struct EncodesOnOther<'a>(&'a Sends);

impl Serialize for EncodesOnOther<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        let inner = super::encode_into(&self.0.other, &self.0.list, &mut buf, "inner");
        self.0
            .seen
            .borrow_mut()
            .push(format!("{:?}", inner.map(|e| e.0.len())));
        s.serialize_unit()
    }
}

/// A reference is sent only inside an encode, on that encode's
/// connection; a detached encode inside has none, a nested encode has
/// its own (its exports counted apart, also when it is made inside a
/// detached one), and the enclosing encode goes on with its own after
/// them.
#[test]
fn references_are_exported_on_the_encode_in_force() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pair = || {
        rt.block_on(crate::Connection::pair(
            crate::ConnectionBuilder::new(),
            crate::ConnectionBuilder::new(),
        ))
        .unwrap()
    };
    let ((a, _a_peer), (b, _b_peer)) = (pair(), pair());
    let list = crate::collections::SharedVec::<u64>::new().remote();
    const OUTSIDE: &str = "can only be sent as part of a remote call or reply";
    assert!(super::encode_detached(&list)
        .unwrap_err()
        .to_string()
        .contains(OUTSIDE));

    let sends = Sends {
        list: list.clone(),
        other: b.shared.arc().clone(),
        seen: Default::default(),
    };
    let mut buf = Vec::new();
    let exported = super::encode_into(&a.shared, &sends, &mut buf, "value").unwrap();
    // Both sends of the outer encode, on `a`, and nothing else.
    assert_eq!(exported.0.len(), 2);
    let seen = sends.seen.borrow();
    assert!(seen[0].contains(OUTSIDE), "{seen:?}");
    assert_eq!(seen[1], "Ok(1)");
    assert_eq!(
        seen[2], "Ok(1)",
        "the outer encode's export is not the inner one's"
    );
    assert_eq!(a.stats().exports, 1);
    assert_eq!(b.stats().exports, 1);
    // The context ends with the encode.
    assert!(super::encode_detached(&list)
        .unwrap_err()
        .to_string()
        .contains(OUTSIDE));
    assert!(rmp_serde::to_vec(&list).is_err());
}

/// Serializes its list as JSON text inside its own `Serialize` (and, if
/// `carry`, the list itself too, into the serializer given).
struct Smuggles {
    list: crate::Remote<dyn crate::collections::RemoteList<u64>>,
    carry: bool,
}

impl Serialize for Smuggles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeTuple};
        let json = serde_json::to_string(&self.list).map_err(S::Error::custom)?;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&json)?;
        if self.carry {
            t.serialize_element(&self.list)?;
        } else {
            t.serialize_element(&())?;
        }
        t.end()
    }
}

/// A reference serialized into another serializer inside a `Serialize`
/// impl is not carried by the message: the encode is refused and gives
/// its sends back (the object stayed exported, uncallable and never
/// released, until the connection closed: found by a red-team pass).
#[test]
fn a_reference_serialized_elsewhere_is_refused_and_not_kept() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, _a_peer) = rt
        .block_on(crate::Connection::pair(
            crate::ConnectionBuilder::new(),
            crate::ConnectionBuilder::new(),
        ))
        .unwrap();
    let list = crate::collections::SharedVec::<u64>::new().remote();
    for carry in [false, true] {
        let value = Smuggles {
            list: list.clone(),
            carry,
        };
        let mut buf = Vec::new();
        let e = super::encode_into(&a.shared, &value, &mut buf, "value")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("another serializer"), "{e}");
        assert_eq!(a.stats().exports, 0, "carry: {carry}");
    }
    // Carried, it is sent.
    let mut buf = Vec::new();
    let exported = super::encode_into(&a.shared, &list, &mut buf, "value").unwrap();
    assert_eq!(exported.0.len(), 1);
    assert_eq!(a.stats().exports, 1);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Message {
    id: u64,
    text: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Shape {
    Empty,
    Circle(u8),
    Rect { w: u8, h: u8 },
}

/// The value encodings PROTOCOL.md documents.
#[test]
fn value_encodings_are_as_documented() {
    let m = super::encode_detached(&Message {
        id: 1,
        text: "hi".into(),
    })
    .unwrap();
    assert_eq!(
        m,
        [0x82, 0xa2, b'i', b'd', 0x01, 0xa4, b't', b'e', b'x', b't', 0xa2, b'h', b'i']
    );
    let e = super::encode_detached(&Shape::Empty).unwrap();
    assert_eq!(e, [0xa5, b'E', b'm', b'p', b't', b'y']);
    let c = super::encode_detached(&Shape::Circle(3)).unwrap();
    assert_eq!(c, [0x81, 0xa6, b'C', b'i', b'r', b'c', b'l', b'e', 0x03]);
    let r = super::encode_detached(&Shape::Rect { w: 1, h: 2 }).unwrap();
    assert_eq!(
        r,
        [0x81, 0xa4, b'R', b'e', b'c', b't', 0x82, 0xa1, b'w', 0x01, 0xa1, b'h', 0x02]
    );
    let o: Option<u8> = None;
    assert_eq!(super::encode_detached(&o).unwrap(), [0xc0]);
    assert_eq!(super::encode_detached(&Some(5u8)).unwrap(), [0x05]);
    assert_eq!(
        super::encode_detached(&(1u8, "a")).unwrap(),
        [0x92, 0x01, 0xa1, b'a']
    );
    assert_eq!(super::encode_detached(&()).unwrap(), [0xc0]);
    // Structs also decode from arrays (positional), as serde allows.
    let back: Message = super::decode_detached(&[0x92, 0x07, 0xa1, b'x']).unwrap();
    assert_eq!(
        back,
        Message {
            id: 7,
            text: "x".into()
        }
    );
}

/// A value held outside a connection (a shared collection's change, a
/// stream's item) weighs what its types take decoded, not only its bytes
/// and 48 per item: a `nil` as an `Option<[u64; 32]>` takes 264 bytes in
/// a `Vec` (red-team pass 48: a map's change log held 84 MB against its
/// 16 MiB so). Small items weigh as before; the weighing is left at rest.
#[test]
fn held_weight_counts_what_a_values_types_take() {
    let nils: Vec<Option<[u64; 32]>> = vec![None; 1000];
    let weight = super::held_weight(&nils).unwrap();
    assert!(weight >= 1000 * 264, "{weight}");
    let small: Vec<u8> = vec![1; 1000];
    let base = crate::driver::args_weight(1003, 1000);
    assert_eq!(super::held_weight(&small).unwrap(), base);
    assert!(!super::weigh::active());
    // Weighed again, the same.
    assert_eq!(super::held_weight(&nils).unwrap(), weight);
}
