//! `#[derive(Wire)]` encodes each field through its own `Wire` impl (so a
//! non-wire field is reported once, issue 12 friction 6) and keeps serde's
//! rules while doing so: a missing `Option` field decodes as `None`, a
//! missing required field is an error, and recursive, generic, tagged and
//! attributed types round-trip.

use remote_core::__private::{decode_value, encode_value};
use remote_core::Wire;

#[derive(Wire, Debug, PartialEq)]
pub struct V1 {
    pub id: u32,
}

#[derive(Wire, Debug, PartialEq)]
pub struct V2 {
    pub id: u32,
    pub note: Option<String>,
    pub tag: std::option::Option<u8>,
    pub previous: Option<V1>,
}

#[derive(Wire, Debug, PartialEq)]
pub struct Tree {
    pub value: u8,
    pub children: Vec<Tree>,
}

#[derive(Wire, Debug, PartialEq)]
pub struct Page<T: Wire> {
    pub items: Vec<T>,
    pub next: Option<u64>,
}

#[derive(Wire, Debug, PartialEq)]
pub struct Pair<A, B>
where
    B: Wire + Clone,
{
    pub a: Option<A>,
    pub b: Vec<B>,
    pub n: u8,
}

#[derive(Wire, Debug, PartialEq)]
#[serde(tag = "kind")]
pub enum Event {
    Joined {
        user: String,
    },
    Left {
        user: String,
        reason: Option<String>,
    },
}

#[derive(Wire, Debug, PartialEq)]
pub enum Shape {
    Empty,
    Tuple(u8, Option<String>),
    Named { tree: Tree, label: Option<String> },
}

#[derive(Wire, Debug, PartialEq)]
pub struct Inner {
    pub q: u8,
}

#[derive(Wire, Debug, PartialEq)]
pub struct Attributed {
    #[serde(rename = "x")]
    pub a: u32,
    #[serde(default = "seven")]
    pub d: u32,
    #[serde(flatten)]
    pub inner: Inner,
}

/// `Attributed` as encoded without `d`.
#[derive(Wire, Debug, PartialEq)]
pub struct WithoutD {
    pub x: u32,
    pub q: u8,
}

fn seven() -> u32 {
    7
}

fn round_trip<T: Wire + std::fmt::Debug + PartialEq>(value: T) {
    let bytes = encode_value(&value).unwrap();
    let back: T = decode_value(&bytes).unwrap();
    assert_eq!(back, value);
}

#[test]
fn a_missing_option_field_decodes_as_none() {
    let old = encode_value(&V1 { id: 5 }).unwrap();
    let new: V2 = decode_value(&old).unwrap();
    assert_eq!(
        new,
        V2 {
            id: 5,
            note: None,
            tag: None,
            previous: None,
        }
    );
    let old = encode_value(&Event::Left {
        user: "ann".into(),
        reason: None,
    })
    .unwrap();
    let back: Event = decode_value(&old).unwrap();
    assert!(matches!(back, Event::Left { reason: None, .. }));
}

#[test]
fn a_missing_required_field_is_an_error() {
    let bytes = encode_value(&Inner { q: 1 }).unwrap();
    let err = decode_value::<V1>(&bytes).unwrap_err();
    assert!(err.to_string().contains("missing field `id`"), "{err}");
    // A tuple's elements are positional: a missing `Option` is an error too.
    let bytes = encode_value(&(1u8,)).unwrap();
    assert!(decode_value::<Shape>(&bytes).is_err());
}

#[test]
fn every_shape_round_trips() {
    round_trip(V2 {
        id: 1,
        note: Some("n".into()),
        tag: Some(3),
        previous: Some(V1 { id: 0 }),
    });
    round_trip(Tree {
        value: 1,
        children: vec![Tree {
            value: 2,
            children: Vec::new(),
        }],
    });
    round_trip(Page {
        items: vec![1u8, 2],
        next: Some(3),
    });
    round_trip(Pair::<u8, String> {
        a: None,
        b: vec!["b".into()],
        n: 1,
    });
    round_trip(Event::Joined { user: "bo".into() });
    round_trip(Shape::Empty);
    round_trip(Shape::Tuple(1, None));
    round_trip(Shape::Named {
        tree: Tree {
            value: 0,
            children: Vec::new(),
        },
        label: Some("l".into()),
    });
    let value = Attributed {
        a: 1,
        d: 2,
        inner: Inner { q: 3 },
    };
    round_trip(value);
    // `default = "path"` still applies to a missing field.
    let bytes = encode_value(&WithoutD { x: 1, q: 4 }).unwrap();
    let back: Attributed = decode_value(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((back.d, back.inner.q), (7, 4));
}
