//! The [`Wire`] trait: values that cross a connection by value.
//!
//! Implemented for primitives, `String`, byte buffers, `Vec`, `VecDeque`,
//! `HashMap`/`BTreeMap`, `HashSet`/`BTreeSet`, `Option`, `Result`, tuples,
//! arrays, [`Bounded`] collections, and capability handles
//! ([`Remote`](crate::Remote)). User structs and enums opt in with
//! `#[derive(Wire)]`, which also implements serde's traits for them.
//!
//! ```
//! use remote_core::Wire;
//! fn crosses<T: Wire>() {}
//! crosses::<Vec<(String, Option<u64>)>>();
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::schema::{SchemaBuilder, Ty};

/// A value that crosses a connection by value.
///
/// `Wire` types are plain data: serde serializes them to msgpack. Capability
/// handles (`Remote<dyn Trait>`) are `Wire` too and cross by reference.
/// [`describe`](Wire::describe) gives the type's structure to the policy
/// checker and the schema export.
///
/// ```
/// use remote_core::schema::{SchemaBuilder, Ty};
/// use remote_core::Wire;
///
/// #[derive(Wire)]
/// pub struct Point {
///     pub x: i32,
///     pub y: i32,
/// }
///
/// let mut b = SchemaBuilder::default();
/// assert!(matches!(<Vec<u8> as Wire>::describe(&mut b), Ty::Seq { .. }));
/// let _named = Point::describe(&mut b); // registered under its Rust path
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross a remote connection: it does not implement `Wire`",
    label = "not a wire type",
    note = "add `#[derive(remote_core::Wire)]` to a struct or enum of your own so it crosses by value; \
            a `Vec`, `Option`, tuple or map crosses when its element types do",
    note = "or pass an object by reference as `remote_core::Remote<dyn YourTrait>` (the trait needs `#[remote]`)"
)]
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {
    /// Describes this type's structure for the policy checker and schema.
    fn describe(b: &mut SchemaBuilder) -> Ty {
        let _ = b;
        Ty::Opaque {
            name: std::any::type_name::<Self>().to_owned(),
            declared: None,
        }
    }

    /// Decodes a value at the top of a message (an argument, or a return
    /// value): as `Deserialize` does, but a large `Bytes` may share the
    /// frame's memory there instead of being copied (`bytes::Bytes` and
    /// tuples override it). Not for implementing by hand.
    #[doc(hidden)]
    #[inline]
    fn decode_top<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::deserialize(d)
    }

    /// The most bytes of stack a decode of this type holds values in at
    /// once, at least (its own size), looking through boxes, arrays,
    /// tuples and containers' elements: serde's `Box<T>` decode keeps the
    /// `T` on its own frame before boxing it, its array and tuple decodes
    /// each element and then the whole (red-team pass 42: a `Box` of eight
    /// 64 KiB structs overflowed a 2 MiB stack in a debug build). A
    /// `#[derive(Wire)]` type counts only its own size here (its fields
    /// are counted by its own decode's check, `codec/stack.rs`, which is
    /// also what keeps a recursive type's constant from naming itself).
    /// Not for implementing by hand.
    #[doc(hidden)]
    const INLINE: usize = std::mem::size_of::<Self>();

    /// The largest [`INLINE`](Wire::INLINE) of the elements of a list,
    /// set, map or array in this type (0 if none), looking through boxes,
    /// options, results and tuples: values that decode one after another,
    /// where each value of a derived type needs a level of the stack as
    /// large as its type, under the list's frames (`codec/stack.rs`: with
    /// room for the list's copies only, each took a new segment, and 40
    /// boxes of two 64 KiB structs were refused, red-team pass 44). Not for
    /// implementing by hand.
    #[doc(hidden)]
    const LISTED: usize = 0;
}

/// The largest of `parts`.
const fn most(parts: &[usize]) -> usize {
    let mut most = 0;
    let mut i = 0;
    while i < parts.len() {
        if parts[i] > most {
            most = parts[i];
        }
        i += 1;
    }
    most
}

/// `size_of::<T>()` plus the `INLINE` of each of `parts` (what a decode of
/// `T` holds besides itself while its parts decode).
const fn inline_of<T>(parts: &[usize]) -> usize {
    let mut sum = std::mem::size_of::<T>();
    let mut i = 0;
    while i < parts.len() {
        sum = sum.saturating_add(parts[i]);
        i += 1;
    }
    sum
}

// Every impl here is `#[diagnostic::do_not_recommend]`: an error for a type
// that is not `Wire` names that type and says what to add, without a list of
// the 70-odd types that are (issue 12).
macro_rules! prim {
    ($($t:ty => $e:expr;)*) => {$(
        #[diagnostic::do_not_recommend]
        impl Wire for $t {
            fn describe(_: &mut SchemaBuilder) -> Ty { $e }
        }
    )*};
}

prim! {
    () => Ty::Unit;
    bool => Ty::Bool;
    u8 => Ty::Int { bits: 8, signed: false };
    u16 => Ty::Int { bits: 16, signed: false };
    u32 => Ty::Int { bits: 32, signed: false };
    u64 => Ty::Int { bits: 64, signed: false };
    u128 => Ty::Int { bits: 128, signed: false };
    usize => Ty::Int { bits: 64, signed: false };
    i8 => Ty::Int { bits: 8, signed: true };
    i16 => Ty::Int { bits: 16, signed: true };
    i32 => Ty::Int { bits: 32, signed: true };
    i64 => Ty::Int { bits: 64, signed: true };
    i128 => Ty::Int { bits: 128, signed: true };
    isize => Ty::Int { bits: 64, signed: true };
    f32 => Ty::Float { bits: 32 };
    f64 => Ty::Float { bits: 64 };
    char => Ty::Char;
    String => Ty::String { max_len: None };
}

/// serde's own form: the struct `{secs: u64, nanos: u32}`, a map on the
/// wire as every struct is (it was described as a tuple, which is not what
/// crosses: a review).
#[diagnostic::do_not_recommend]
impl Wire for std::time::Duration {
    fn describe(b: &mut SchemaBuilder) -> Ty {
        use crate::schema::{FieldDef, Location, TypeDef, TypeKind};
        const PATH: &str = "std::time::Duration";
        let field = |name: &str, bits| FieldDef {
            name: name.to_owned(),
            ty: Ty::Int {
                bits,
                signed: false,
            },
            secret: false,
            default: false,
            location: None,
        };
        b.define_type(PATH.to_owned(), |_| TypeDef {
            path: PATH.to_owned(),
            name: "Duration".to_owned(),
            kind: TypeKind::Struct {
                fields: vec![field("secs", 64), field("nanos", 32)],
            },
            secret: false,
            location: Location::default(),
            serde: Vec::new(),
        })
    }
}

#[diagnostic::do_not_recommend]
impl Wire for bytes::Bytes {
    fn describe(_: &mut SchemaBuilder) -> Ty {
        Ty::Bytes { max_len: None }
    }

    #[inline]
    fn decode_top<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::codec::decode_bytes(d)
    }
}

#[diagnostic::do_not_recommend]
impl<T: Wire> Wire for Vec<T> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::INLINE;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Seq {
            elem: Box::new(b.ty::<T>()),
            max_len: None,
        }
    }
}
#[diagnostic::do_not_recommend]
impl<T: Wire> Wire for VecDeque<T> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::INLINE;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Seq {
            elem: Box::new(b.ty::<T>()),
            max_len: None,
        }
    }
}
#[diagnostic::do_not_recommend]
impl<T: Wire + Ord> Wire for BTreeSet<T> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::INLINE;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Seq {
            elem: Box::new(b.ty::<T>()),
            max_len: None,
        }
    }
}
#[diagnostic::do_not_recommend]
impl<T: Wire + Eq + Hash, S: BuildHasher + Default + Send + 'static> Wire for HashSet<T, S> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::INLINE;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Seq {
            elem: Box::new(b.ty::<T>()),
            max_len: None,
        }
    }
}
#[diagnostic::do_not_recommend]
impl<K: Wire + Ord, V: Wire> Wire for BTreeMap<K, V> {
    const INLINE: usize = inline_of::<Self>(&[K::INLINE, V::INLINE]);
    const LISTED: usize = most(&[K::INLINE, V::INLINE]);
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Map {
            key: Box::new(b.ty::<K>()),
            value: Box::new(b.ty::<V>()),
            max_len: None,
        }
    }
}
#[diagnostic::do_not_recommend]
impl<K: Wire + Eq + Hash, V: Wire, S: BuildHasher + Default + Send + 'static> Wire
    for HashMap<K, V, S>
{
    const INLINE: usize = inline_of::<Self>(&[K::INLINE, V::INLINE]);
    const LISTED: usize = most(&[K::INLINE, V::INLINE]);
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Map {
            key: Box::new(b.ty::<K>()),
            value: Box::new(b.ty::<V>()),
            max_len: None,
        }
    }
}
#[diagnostic::do_not_recommend]
impl<T: Wire> Wire for Option<T> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::LISTED;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Option(Box::new(b.ty::<T>()))
    }
}
#[diagnostic::do_not_recommend]
impl<T: Wire, E: Wire> Wire for Result<T, E> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE, E::INLINE]);
    const LISTED: usize = most(&[T::LISTED, E::LISTED]);
    fn describe(b: &mut SchemaBuilder) -> Ty {
        Ty::Result {
            ok: Box::new(b.ty::<T>()),
            err: Box::new(b.ty::<E>()),
        }
    }
}
#[diagnostic::do_not_recommend]
impl<T: Wire> Wire for Box<T> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::LISTED;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        b.ty::<T>()
    }
}
#[diagnostic::do_not_recommend]
impl<T: Wire + Sync> Wire for Arc<T> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::LISTED;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        b.ty::<T>()
    }
}

macro_rules! arrays {
    ($($n:literal)*) => {$(
        #[diagnostic::do_not_recommend]
        impl<T: Wire> Wire for [T; $n] {
            const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
            const LISTED: usize = T::INLINE;
            fn describe(b: &mut SchemaBuilder) -> Ty {
                Ty::Array { elem: Box::new(b.ty::<T>()), len: $n }
            }
        }
    )*};
}
arrays!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);

macro_rules! tuples {
    ($(($($t:ident)+))*) => {$(
        #[diagnostic::do_not_recommend]
        impl<$($t: Wire),+> Wire for ($($t,)+) {
            const INLINE: usize = inline_of::<Self>(&[$($t::INLINE),+]);
            const LISTED: usize = most(&[$($t::LISTED),+]);
            fn describe(b: &mut SchemaBuilder) -> Ty {
                Ty::Tuple(vec![$(b.ty::<$t>()),+])
            }

            // As serde's tuples decode, each element through its own
            // `decode_top` (a call's arguments are a tuple).
            #[inline]
            fn decode_top<'de, De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
                struct V<$($t),+>(PhantomData<($($t,)+)>);
                impl<'de, $($t: Wire),+> Visitor<'de> for V<$($t),+> {
                    type Value = ($($t,)+);
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a tuple of size {}", [$(stringify!($t)),+].len())
                    }
                    #[inline]
                    #[allow(unused_assignments)]
                    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                        let mut i = 0;
                        Ok(($({
                            let v = seq
                                .next_element_seed(crate::codec::Top::<$t>::default())?
                                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                            i += 1;
                            v
                        },)+))
                    }
                }
                d.deserialize_tuple([$(stringify!($t)),+].len(), V(PhantomData))
            }
        }
    )*};
}
tuples! {
    (A) (A B) (A B C) (A B C D) (A B C D E) (A B C D E F) (A B C D E F G) (A B C D E F G H)
    (A B C D E F G H I) (A B C D E F G H I J) (A B C D E F G H I J K) (A B C D E F G H I J K L)
}

/// A collection or string whose length is checked when it is decoded.
///
/// `Bounded<String, 64>` refuses a peer's string longer than 64 bytes before
/// your method runs, and tells the policy checker that the argument has a
/// size bound.
///
/// ```
/// use remote_core::wire::Bounded;
/// let name: Bounded<String, 8> = Bounded::new("alice".to_owned()).unwrap();
/// assert_eq!(name.as_str(), "alice");
/// assert!(Bounded::<String, 3>::new("alice".to_owned()).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bounded<T, const N: usize>(T);

/// Types with a length that [`Bounded`] can limit.
///
/// ```
/// use remote_core::wire::HasLen;
/// assert_eq!(HasLen::len(&String::from("héllo")), 6); // bytes, for strings
/// assert_eq!(HasLen::len(&vec![1, 2, 3]), 3);
/// assert!(HasLen::is_empty(&String::new()));
/// ```
pub trait HasLen {
    /// Number of elements (bytes for strings).
    fn len(&self) -> usize;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bounded version of this type's structure.
    fn bounded_ty(unbounded: Ty, max: u64) -> Ty {
        match unbounded {
            Ty::String { .. } => Ty::String { max_len: Some(max) },
            Ty::Bytes { .. } => Ty::Bytes { max_len: Some(max) },
            Ty::Seq { elem, .. } => Ty::Seq {
                elem,
                max_len: Some(max),
            },
            Ty::Map { key, value, .. } => Ty::Map {
                key,
                value,
                max_len: Some(max),
            },
            other => other,
        }
    }
}

impl HasLen for String {
    fn len(&self) -> usize {
        String::len(self)
    }
}
impl HasLen for bytes::Bytes {
    fn len(&self) -> usize {
        bytes::Bytes::len(self)
    }
}
impl<T> HasLen for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}
impl<T> HasLen for VecDeque<T> {
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
}
impl<K, V> HasLen for BTreeMap<K, V> {
    fn len(&self) -> usize {
        BTreeMap::len(self)
    }
}
impl<K, V, S> HasLen for HashMap<K, V, S> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
}
impl<T> HasLen for BTreeSet<T> {
    fn len(&self) -> usize {
        BTreeSet::len(self)
    }
}
impl<T, S> HasLen for HashSet<T, S> {
    fn len(&self) -> usize {
        HashSet::len(self)
    }
}

/// The error of [`Bounded::new`]: the value was longer than the bound.
///
/// ```
/// use remote_core::wire::{Bounded, TooLong};
/// let err = Bounded::<Vec<u8>, 2>::new(vec![1, 2, 3]).unwrap_err();
/// assert_eq!(err, TooLong { len: 3, max: 2 });
/// assert_eq!(err.to_string(), "length 3 exceeds the bound of 2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("length {len} exceeds the bound of {max}")]
pub struct TooLong {
    /// Actual length.
    pub len: usize,
    /// The bound.
    pub max: usize,
}

impl<T: HasLen, const N: usize> Bounded<T, N> {
    /// Wraps `value` if its length is at most `N`.
    pub fn new(value: T) -> Result<Self, TooLong> {
        let len = value.len();
        if len > N {
            return Err(TooLong { len, max: N });
        }
        Ok(Bounded(value))
    }

    /// The inner value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<const N: usize> Bounded<String, N> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<T, const N: usize> std::ops::Deref for Bounded<T, N> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Serialize, const N: usize> Serialize for Bounded<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de> + HasLen, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The frame walker has already checked that declared lengths fit in
        // the frame, so decoding before checking cannot over-allocate.
        let value = T::deserialize(d)?;
        Bounded::new(value).map_err(D::Error::custom)
    }
}

#[diagnostic::do_not_recommend]
impl<T: Wire + HasLen, const N: usize> Wire for Bounded<T, N> {
    const INLINE: usize = inline_of::<Self>(&[T::INLINE]);
    const LISTED: usize = T::LISTED;
    fn describe(b: &mut SchemaBuilder) -> Ty {
        T::bounded_ty(b.ty::<T>(), N as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_refuses_long_values_on_decode() {
        let long = rmp_serde::to_vec(&"abcdef").unwrap();
        let err = rmp_serde::from_slice::<Bounded<String, 3>>(&long).unwrap_err();
        assert!(err.to_string().contains("exceeds the bound of 3"), "{err}");
        let ok = rmp_serde::from_slice::<Bounded<String, 6>>(&long).unwrap();
        assert_eq!(ok.as_str(), "abcdef");
    }

    #[test]
    fn inline_looks_through_boxes_arrays_tuples_and_elements() {
        use std::mem::size_of;
        /// 8 KiB.
        type A = [[u64; 32]; 32];
        const K: usize = size_of::<A>();
        assert_eq!(<u64 as Wire>::INLINE, 8);
        assert_eq!(
            <A as Wire>::INLINE,
            K + 256 + 8,
            "the array, a row, a number"
        );
        // Checked as the test builds (the values are constants).
        const {
            assert!(<Box<u8> as Wire>::INLINE < 64);
            assert!(<Box<A> as Wire>::INLINE >= K);
            assert!(<Box<Box<A>> as Wire>::INLINE >= K);
            assert!(<Option<Box<A>> as Wire>::INLINE >= K);
            assert!(<Result<u8, Box<A>> as Wire>::INLINE >= K);
            assert!(<Arc<A> as Wire>::INLINE >= K);
            assert!(<Vec<Box<A>> as Wire>::INLINE >= K);
            assert!(<HashMap<String, Box<A>> as Wire>::INLINE >= K);
            assert!(<BTreeMap<u8, Option<Box<A>>> as Wire>::INLINE >= K);
            assert!(<(u8, Box<A>, Box<A>) as Wire>::INLINE >= 2 * K);
            assert!(<Box<[Box<A>; 4]> as Wire>::INLINE >= K + 32);
            assert!(<Box<[A; 4]> as Wire>::INLINE >= 5 * K);
            assert!(<Bounded<Vec<Box<A>>, 3> as Wire>::INLINE >= K);
        }
    }

    /// `LISTED`: the largest element of a list, set, map or array inside,
    /// through boxes, options, results and tuples; a single value is not
    /// listed.
    #[test]
    fn listed_names_the_largest_element_of_a_list_inside() {
        /// 8 KiB, whose rows (256 bytes) are listed.
        type A = [[u64; 32]; 32];
        const K: usize = std::mem::size_of::<A>();
        const {
            assert!(<u64 as Wire>::LISTED == 0);
            assert!(<String as Wire>::LISTED == 0);
            assert!(<Vec<u8> as Wire>::LISTED == 1);
            // One value, boxed or not: only its rows are listed.
            assert!(<A as Wire>::LISTED < 512);
            assert!(<Option<Box<A>> as Wire>::LISTED < 512);
            assert!(<(u8, Box<A>) as Wire>::LISTED < 512);
            // Lists of them.
            assert!(<Vec<A> as Wire>::LISTED >= K);
            assert!(<Vec<Box<A>> as Wire>::LISTED >= K);
            assert!(<Option<Vec<Box<A>>> as Wire>::LISTED >= K);
            assert!(<Result<u8, Box<Vec<A>>> as Wire>::LISTED >= K);
            assert!(<(u8, Arc<Vec<A>>) as Wire>::LISTED >= K);
            assert!(<BTreeMap<u8, A> as Wire>::LISTED >= K);
            assert!(<HashSet<Box<A>> as Wire>::LISTED >= K);
            assert!(<Box<[A; 2]> as Wire>::LISTED >= K);
            assert!(<Bounded<Vec<A>, 3> as Wire>::LISTED >= K);
            assert!(<Vec<Vec<A>> as Wire>::LISTED >= K + 24);
        }
    }

    #[test]
    fn describe_nested_generics() {
        let mut b = SchemaBuilder::new();
        let ty = b.ty::<Bounded<Vec<Option<u8>>, 4>>();
        assert_eq!(
            ty,
            Ty::Seq {
                elem: Box::new(Ty::Option(Box::new(Ty::Int {
                    bits: 8,
                    signed: false
                }))),
                max_len: Some(4)
            }
        );
    }

    /// A `Duration` is described as what crosses: a struct of `secs` and
    /// `nanos`, which the codec writes as a map of those keys.
    #[test]
    fn a_duration_is_described_as_the_map_that_crosses() {
        use crate::schema::TypeKind;
        let mut b = SchemaBuilder::new();
        let ty = b.ty::<std::time::Duration>();
        let schema = b.finish();
        let Ty::Named { path } = ty else {
            panic!("{ty:?}")
        };
        let TypeKind::Struct { fields } = &schema.types[&path].kind else {
            panic!("{:?}", schema.types[&path])
        };
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["secs", "nanos"]);
        let bytes = crate::codec::encode_detached(&std::time::Duration::new(3, 4)).unwrap();
        // fixmap of 2: "secs" 3, "nanos" 4.
        let mut want = vec![0x82, 0xa4];
        want.extend(b"secs");
        want.extend([3, 0xa5]);
        want.extend(b"nanos");
        want.push(4);
        assert_eq!(bytes, want);
    }
}
