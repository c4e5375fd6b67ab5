//! The weighing deserializer: a wrapper around a deserializer, and the
//! visitors, seeds and accesses it hands out, that weighs each element of
//! a collection, each box, and each node of serde's buffer as the decode
//! goes (see the parent module).

use std::fmt;
use std::mem::size_of;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::super::stack::decode_on_stack;
use super::{add, buffered_node, is_buffer, STATE};
use crate::driver::DECODED_ITEM;

/// A deserializer, visitor or access whose collections' elements are
/// weighed; `heap`: it is a collection's (its elements weigh); `room`: a
/// deserializer's, the size of the place its value goes to (a larger
/// value asked of it is put in a box).
pub(crate) struct Weighed<X> {
    de: X,
    heap: bool,
    room: usize,
}

pub(super) fn wrap<Y>(de: Y, heap: bool, room: usize) -> Weighed<Y> {
    Weighed { de, heap, room }
}

impl<D> Weighed<D> {
    /// Weighs a `T` about to be decoded: one larger than the place it goes
    /// to is boxed (`Box<T>`, `Arc<T>`: the place holds a pointer), and the
    /// box is taken from the budget (red-team pass 36: a `nil` as a
    /// `Box<Option<[u64; 32]>>` allocated 264 bytes that nothing counted).
    /// Boxes of up to `DECODED_ITEM` bytes are within what their item was
    /// counted at.
    #[inline]
    fn boxed<T, E: serde::de::Error>(&self) -> Result<(), E> {
        let size = size_of::<T>();
        if size > DECODED_ITEM && size > self.room {
            add::<E>(size)
        } else {
            Ok(())
        }
    }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*) => $heap:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            self.boxed::<V::Value, D::Error>()?;
            self.de.$method($($arg,)* wrap(visitor, $heap, 0))
        }
    )*};
}

/// [`forward!`] for what may nest (arrays, maps, structs, enums, what
/// serde skips or wraps): each level runs with a level's worth of stack
/// left (`stack.rs`), where no derived type's decode checks it (serde's
/// buffer of an untagged value, an unknown field skipped, a `with` field).
macro_rules! forward_nesting {
    ($($method:ident($($arg:ident: $ty:ty),*) => $heap:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            self.boxed::<V::Value, D::Error>()?;
            decode_on_stack::<V::Value, _, _>(0, 0, move || {
                self.de.$method($($arg,)* wrap(visitor, $heap, 0))
            })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Weighed<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        if !is_buffer::<V::Value>() {
            self.boxed::<V::Value, D::Error>()?;
            return decode_on_stack::<V::Value, _, _>(0, 0, move || {
                self.de.deserialize_any(wrap(visitor, true, 0))
            });
        }
        // A node of serde's buffer: what is built from it later is not
        // decoded here.
        add::<D::Error>(buffered_node(size_of::<V::Value>()))?;
        STATE.with(|s| s.depth.set(s.depth.get() + 1));
        let r = decode_on_stack::<V::Value, _, _>(0, 0, move || {
            self.de.deserialize_any(wrap(visitor, true, 0))
        });
        STATE.with(|s| s.depth.set(s.depth.get() - 1));
        r
    }

    forward! {
        deserialize_bool() => false;
        deserialize_i8() => false;
        deserialize_i16() => false;
        deserialize_i32() => false;
        deserialize_i64() => false;
        deserialize_i128() => false;
        deserialize_u8() => false;
        deserialize_u16() => false;
        deserialize_u32() => false;
        deserialize_u64() => false;
        deserialize_u128() => false;
        deserialize_f32() => false;
        deserialize_f64() => false;
        deserialize_char() => false;
        deserialize_str() => false;
        deserialize_string() => false;
        deserialize_bytes() => false;
        deserialize_byte_buf() => false;
        deserialize_unit() => false;
        deserialize_unit_struct(name: &'static str) => false;
        deserialize_identifier() => false;
    }

    forward_nesting! {
        deserialize_option() => false;
        deserialize_newtype_struct(name: &'static str) => false;
        deserialize_seq() => true;
        deserialize_tuple(len: usize) => false;
        deserialize_tuple_struct(name: &'static str, len: usize) => false;
        deserialize_map() => true;
        deserialize_struct(name: &'static str, fields: &'static [&'static str]) => false;
        deserialize_enum(name: &'static str, variants: &'static [&'static str]) => false;
        deserialize_ignored_any() => false;
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Forwards `visit_*` methods that carry no nested deserializer.
macro_rules! visit {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<E: serde::de::Error>(self, $($arg: $ty),*) -> Result<Self::Value, E> {
            self.de.$method($($arg),*)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Weighed<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.de.expecting(f)
    }

    visit! {
        visit_bool(v: bool);
        visit_i8(v: i8);
        visit_i16(v: i16);
        visit_i32(v: i32);
        visit_i64(v: i64);
        visit_i128(v: i128);
        visit_u8(v: u8);
        visit_u16(v: u16);
        visit_u32(v: u32);
        visit_u64(v: u64);
        visit_u128(v: u128);
        visit_f32(v: f32);
        visit_f64(v: f64);
        visit_char(v: char);
        visit_str(v: &str);
        visit_borrowed_str(v: &'de str);
        visit_string(v: String);
        visit_bytes(v: &[u8]);
        visit_borrowed_bytes(v: &'de [u8]);
        visit_byte_buf(v: Vec<u8>);
        visit_none();
        visit_unit();
    }

    // What an option or a newtype holds is inside it.
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.de.visit_some(wrap(d, false, size_of::<V::Value>()))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.de
            .visit_newtype_struct(wrap(d, false, size_of::<V::Value>()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.de.visit_seq(wrap(seq, self.heap, 0))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.de.visit_map(wrap(map, self.heap, 0))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.de.visit_enum(wrap(data, false, 0))
    }
}

/// A seed whose value is decoded with the weighing deserializer, into a
/// place of its own type's size.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(wrap(d, false, size_of::<S::Value>()))
    }
}

impl<X> Weighed<X> {
    /// `seed` wrapped, its value's type weighed first (twice its size: a
    /// collection may hold that much while it grows) if this is a
    /// collection's access and `more` (an element may follow): what that
    /// is over the `DECODED_ITEM` its item counted.
    #[inline]
    fn seed<'de, S: DeserializeSeed<'de>, E: serde::de::Error>(
        &self,
        seed: S,
        more: impl FnOnce() -> bool,
    ) -> Result<Seed<S>, E> {
        let weight = 2 * std::mem::size_of::<S::Value>();
        if weight > DECODED_ITEM && self.heap && more() {
            add::<E>(weight - DECODED_ITEM)?;
        }
        Ok(Seed(seed))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Weighed<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        // The end of the sequence weighs nothing.
        let seed = self.seed(seed, || self.de.size_hint() != Some(0))?;
        self.de.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.de.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Weighed<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seed(seed, || self.de.size_hint() != Some(0))?;
        self.de.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seed(seed, || true)?;
        self.de.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.de.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Weighed<A> {
    type Error = A::Error;
    type Variant = Weighed<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.de.variant_seed(Seed(seed))?;
        Ok((value, wrap(variant, false, 0)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Weighed<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.de.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.de.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.de.tuple_variant(len, wrap(visitor, false, 0))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.de.struct_variant(fields, wrap(visitor, false, 0))
    }
}
