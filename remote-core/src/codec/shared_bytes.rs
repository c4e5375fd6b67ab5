//! A large `Bytes` argument or return value shares the memory of the frame
//! it came in, rather than being copied out of it.
//!
//! serde's `Bytes` copies what it is given (it only sees a `&[u8]`), so a
//! 1 MiB argument was copied once on the server and the reply again on
//! the client, beyond the kernel's copies. Here a value that [`Wire`]
//! decodes at the top of a message (an argument, or a call's return
//! value, of type `bytes::Bytes`) is a slice of the frame, when:
//!
//! - the reader allows it for the frame (`Input::received`): a frame over
//!   a read chunk (16 KiB), at the start of an allocation the reader made
//!   and at most twice its length (`driver/input/alloc.rs`), so not one
//!   read behind other frames in the same buffer, nor into a large buffer
//!   kept from a longer frame;
//! - the value is at least half the frame.
//!
//! While a handler runs, its call counts in the memory budget at the whole
//! allocation's size (`Input::received`'s `lends`), a reply likewise. A
//! value kept by the application thus keeps at most four times its own
//! length alive, and usually its length and a read chunk: a handler that
//! stores a 10-byte value out of a 1 MiB frame stores 10 bytes. Anything
//! else (a `Bytes` inside a struct, a small one, a frame the reader does
//! not allow) is copied, as before.
//!
//! The frame is lent for the span of one decode ([`lending`]) through a
//! scoped thread-local, as the connection is (`conn_cx.rs`): serde code
//! never awaits, so it cannot leak across tasks.

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{De, DecodeSlot};
use crate::{Error, Wire};

scoped_tls::scoped_thread_local!(static FRAME: Bytes);

/// Runs `decode` with `frame`, if given, lent to the `Bytes` values it
/// decodes at the top of the message `frame` holds (no reference count
/// taken unless one shares it).
#[inline]
pub(crate) fn lending<R>(frame: Option<&Bytes>, decode: impl FnOnce() -> R) -> R {
    match frame {
        Some(frame) => FRAME.set(frame, decode),
        None => decode(),
    }
}

/// `v`, a slice of the lent frame, as a `Bytes` sharing its memory, if it
/// is at least half the frame.
fn share(v: &[u8]) -> Option<Bytes> {
    if !FRAME.is_set() {
        return None;
    }
    FRAME.with(|frame| {
        let start = frame.as_ptr() as usize;
        let at = v.as_ptr() as usize;
        let within = at >= start && at + v.len() <= start + frame.len();
        (within && !v.is_empty() && v.len() >= frame.len() / 2).then(|| frame.slice_ref(v))
    })
}

/// Decodes a `Bytes` value at the top of a message: a slice of the lent
/// frame where [`share`] allows, otherwise a copy (accepting what
/// `Bytes`'s own `Deserialize` does: bytes, a string, a sequence of `u8`).
pub(crate) fn decode_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    d.deserialize_byte_buf(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("byte array")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(share(v).unwrap_or_else(|| Bytes::copy_from_slice(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Bytes, A::Error> {
        let v: Vec<u8> =
            serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Bytes::from(v))
    }
}

/// Decodes a `T` at the top of a message ([`Wire::decode_top`]): the
/// element of a tuple of arguments.
pub(crate) struct Top<T>(PhantomData<T>);

impl<T> Default for Top<T> {
    fn default() -> Self {
        Top(PhantomData)
    }
}

impl<'de, T: Wire> DeserializeSeed<'de> for Top<T> {
    type Value = T;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::decode_top(d)
    }
}

/// Where a value decoded at the top of a message goes: as `Option<T>`
/// does for [`DecodeSlot`], through [`Wire::decode_top`].
pub(crate) struct WireSlot<T>(Option<T>);

impl<T> Default for WireSlot<T> {
    fn default() -> Self {
        WireSlot(None)
    }
}

impl<T> WireSlot<T> {
    /// The decoded value (an error if none was).
    pub(crate) fn take(self, what: &'static str) -> Result<T, Error> {
        super::decoded(self.0, what)
    }
}

impl<T: Wire> DecodeSlot for WireSlot<T> {
    fn decode_from(&mut self, de: &mut De<'_>) -> Result<(), rmp_serde::decode::Error> {
        super::stack::Session::run_holding(T::INLINE, T::LISTED, |session| {
            self.0 = Some(if super::weigh::active() {
                T::decode_top(super::weigh::weighing_wire::<T, _>(de))?
            } else {
                T::decode_top(de)?
            });
            session.refused()
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{decode_bytes, lending};

    fn decode(msg: &[u8]) -> Bytes {
        decode_bytes(&mut rmp_serde::Deserializer::from_read_ref(msg)).unwrap()
    }

    /// A message of one bin32 value of `len` bytes followed by `extra`
    /// bytes, and its value's range.
    fn bin(len: usize, extra: usize) -> (Bytes, std::ops::Range<usize>) {
        let mut m = vec![0xc6];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(0x5a, len + extra));
        (Bytes::from(m), 5..5 + len)
    }

    fn shares(frame: &Bytes, got: &Bytes) -> bool {
        let f = frame.as_ptr() as usize;
        let g = got.as_ptr() as usize;
        g >= f && g + got.len() <= f + frame.len()
    }

    #[test]
    fn a_value_of_at_least_half_the_lent_frame_shares_it() {
        let (frame, range) = bin(100, 0);
        let got = lending(Some(&frame), || decode(&frame));
        assert_eq!(got, frame.slice(range));
        assert!(shares(&frame, &got), "copied");
        // Nothing lent: a copy.
        let got = lending(None, || decode(&frame));
        assert_eq!(got.len(), 100);
        assert!(!shares(&frame, &got), "shared a frame not lent");
    }

    #[test]
    fn a_small_value_or_one_outside_the_lent_frame_is_copied() {
        // 100 bytes of a 305-byte frame: under half, copied.
        let (frame, _) = bin(100, 200);
        let got = lending(Some(&frame), || decode(&frame[..105]));
        assert_eq!(got.len(), 100);
        assert!(!shares(&frame, &got));
        // A message that is not the lent frame's memory: copied.
        let (other, _) = bin(100, 0);
        let got = lending(Some(&frame), || decode(&other));
        assert!(!shares(&frame, &got) && !shares(&other, &got));
    }

    #[test]
    fn lending_nests_and_restores() {
        let (outer, _) = bin(64, 0);
        let (inner, _) = bin(64, 0);
        lending(Some(&outer), || {
            lending(Some(&inner), || {
                assert!(shares(&inner, &decode(&inner)));
                assert!(!shares(&outer, &decode(&outer)));
            });
            assert!(
                shares(&outer, &decode(&outer)),
                "the outer frame is lent again"
            );
        });
        assert!(!shares(&outer, &decode(&outer)));
    }

    #[test]
    fn other_encodings_of_bytes_still_decode() {
        // A str and an array of u8, as `Bytes`'s own `Deserialize` takes.
        assert_eq!(decode(&[0xa2, b'h', b'i']), Bytes::from_static(b"hi"));
        assert_eq!(decode(&[0x92, 0x01, 0x02]), Bytes::from_static(&[1, 2]));
    }
}
