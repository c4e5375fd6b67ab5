//! Weighing a call's arguments by their Rust types as they decode.
//!
//! The memory budget counts a call's arguments at their frame's bytes and
//! `DECODED_ITEM` per item (`driver/share.rs`). An item of one byte on the
//! wire can decode to far more: a `nil` as an `Option<[u64; 32]>` takes
//! 264 bytes in a `Vec`, a unit variant the size of its whole enum. Counted
//! so, a few connections' calls held 513 MiB against a 64 MiB budget
//! (red-team pass 35).
//!
//! A dispatch runs in [`weighed`]: the deserializer is wrapped so that
//! each element of a collection (what `deserialize_seq` and
//! `deserialize_map` build: `Vec`, maps, sets) weighs twice the size of its
//! type (a `Vec` holds up to twice its length while it grows), and what an
//! element weighs beyond the `DECODED_ITEM` its item was counted at is
//! taken from the budget as the decode goes. Elements of types that weigh
//! no more (strings, numbers, small structs) cost nothing here: the test
//! is on a constant. A decode the budget has no room for
//! stops with an error, before it allocates more. Inline values (tuples,
//! structs, arrays, options) are inside their parent's size already.
//! Known gaps (SECURITY.md): what a `Box` points to is not weighed (a
//! `nil` in a `Box<Option<[u64; 32]>>` allocates the whole value), nor a
//! type serde builds from its own buffer (untagged and internally tagged
//! enums, flattened fields: the buffer is weighed, not the type).

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use crate::driver::{Budget, Shared, DECODED_ITEM};

/// Taken from the budget at least this much at a time.
const CHUNK: usize = 16 << 10;

/// What a call's decode takes from the budget whether or not it has room,
/// as the reader always reads a frame this long: a call of a few large
/// elements is not refused because a heavy call waits in line for room
/// (red-team pass 36).
const ALWAYS: usize = crate::driver::SMALL_FRAME;

scoped_tls::scoped_thread_local! {
    /// The connection of the dispatch running on this thread, whose budget
    /// its arguments' decode takes room from (lent, no count taken).
    static CONN: Arc<Shared>
}

thread_local! {
    /// What the running dispatch's decode may still take without asking
    /// the budget (the rest of a chunk taken), what it took from it, and
    /// whether it was refused room.
    static STATE: (Cell<usize>, Cell<usize>, Cell<bool>) =
        const { (Cell::new(0), Cell::new(0), Cell::new(false)) };
}

/// What a weighed dispatch took from the budget.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Taken {
    /// Bytes counted in the budget, to be given back when the arguments
    /// are dropped (with the handler).
    pub(crate) bytes: usize,
    /// Whether a decode was stopped because the budget had no room.
    pub(crate) refused: bool,
}

/// Runs `f` (a dispatch, which decodes its call's arguments) with the
/// arguments decoded on this thread weighed against `conn`'s budget;
/// returns `f`'s result and what was taken.
pub(crate) fn weighed<R>(conn: &Arc<Shared>, f: impl FnOnce() -> R) -> (R, Taken) {
    // Dispatches do not nest (one decodes its arguments before the next
    // can start), so the state starts at zero and is left so: on an
    // unwind, with what was taken given back.
    struct Reset<'a>(&'a Arc<Shared>);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            let granted = STATE.with(|(free, granted, refused)| {
                free.set(0);
                refused.set(false);
                granted.replace(0)
            });
            if granted > 0 {
                self.0.budget.release(granted);
            }
        }
    }
    let reset = Reset(conn);
    let out = CONN.set(conn, f);
    let taken = STATE.with(|(_, granted, refused)| Taken {
        bytes: granted.replace(0),
        refused: refused.get(),
    });
    drop(reset);
    (out, taken)
}

/// The running dispatch's connection, for a dispatch that decodes its
/// arguments later (a call on a promise not yet resolved) to weigh them as
/// this one would.
pub(crate) fn current() -> Option<Arc<Shared>> {
    CONN.is_set().then(|| CONN.with(Arc::clone))
}

/// Bytes a weighed decode took from a budget ([`Taken::bytes`]), given
/// back on drop unless a spawned handler keeps them.
pub(crate) struct TakenBack<'a>(pub(crate) &'a Budget, pub(crate) usize);

impl TakenBack<'_> {
    /// The bytes, now the keeper's to give back.
    pub(crate) fn keep(mut self) -> usize {
        std::mem::take(&mut self.1)
    }
}

impl Drop for TakenBack<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.1 > 0 {
            self.0.release(self.1);
        }
    }
}

/// The error for a call whose decode the budget had no room for
/// ([`Taken::refused`]); `e` is the decode's error.
pub(crate) fn refusal(method: &str, e: &crate::Error) -> crate::RemoteError {
    crate::RemoteError::new(
        "limit_exceeded",
        "remote_core::Error",
        format!(
            "the arguments of {} decode larger than counted: {e}",
            crate::bounded::quote(method)
        ),
    )
}

/// Whether decodes on this thread are weighed (a dispatch runs).
#[inline]
pub(crate) fn active() -> bool {
    CONN.is_set()
}

/// `de`, weighing what its collections' elements take.
pub(crate) fn weighing<'de, D: Deserializer<'de>>(de: D) -> Weighed<D> {
    Weighed { de, heap: false }
}

/// Counts `n` bytes more of the running dispatch's arguments.
fn add<E: serde::de::Error>(n: usize) -> Result<(), E> {
    let need = STATE.with(|(free, _, _)| {
        let f = free.get();
        if n <= f {
            free.set(f - n);
            0
        } else {
            n - f
        }
    });
    if need == 0 {
        return Ok(());
    }
    let taken = STATE.with(|(_, granted, _)| granted.get());
    let (need, charged, limit) = CONN.with(|c| {
        if taken + need <= ALWAYS {
            // Within the first frame's worth: taken as needed, whatever
            // the room.
            let need = need.max(CHUNK).min(ALWAYS - taken);
            c.budget.charge(need);
            (need, true, 0)
        } else {
            let need = need.max(CHUNK);
            (need, c.budget.try_charge(need), c.budget.limit())
        }
    });
    STATE.with(|(free, granted, refused)| {
        if charged {
            granted.set(granted.get() + need);
            free.set(free.get() + need - n);
            Ok(())
        } else {
            refused.set(true);
            Err(E::custom(format_args!(
                "the arguments decode to more than their frame was counted at, and \
                 memory_budget = {limit} has no room for {need} bytes more"
            )))
        }
    })
}

/// A deserializer, visitor or access whose collections' elements are
/// weighed; `heap`: it is a collection's (its elements weigh).
pub(crate) struct Weighed<X> {
    de: X,
    heap: bool,
}

fn wrap<Y>(de: Y, heap: bool) -> Weighed<Y> {
    Weighed { de, heap }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*) => $heap:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            self.de.$method($($arg,)* wrap(visitor, $heap))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Weighed<D> {
    type Error = D::Error;

    forward! {
        deserialize_any() => true;
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
        deserialize_option() => false;
        deserialize_unit() => false;
        deserialize_unit_struct(name: &'static str) => false;
        deserialize_newtype_struct(name: &'static str) => false;
        deserialize_seq() => true;
        deserialize_tuple(len: usize) => false;
        deserialize_tuple_struct(name: &'static str, len: usize) => false;
        deserialize_map() => true;
        deserialize_struct(name: &'static str, fields: &'static [&'static str]) => false;
        deserialize_enum(name: &'static str, variants: &'static [&'static str]) => false;
        deserialize_identifier() => false;
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

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.de.visit_some(wrap(d, false))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.de.visit_newtype_struct(wrap(d, false))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.de.visit_seq(wrap(seq, self.heap))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.de.visit_map(wrap(map, self.heap))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.de.visit_enum(wrap(data, false))
    }
}

/// A seed whose value is decoded with the weighing deserializer.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(wrap(d, false))
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
        Ok((value, wrap(variant, false)))
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
        self.de.tuple_variant(len, wrap(visitor, false))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.de.struct_variant(fields, wrap(visitor, false))
    }
}
