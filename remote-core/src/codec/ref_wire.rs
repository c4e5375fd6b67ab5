//! How a reference (`Remote<T>`) is written in a value: a MessagePack
//! extension of type 1 (the sender's export) or 2 (the receiver's own
//! object, handed back) with the object id as a 4-byte big-endian payload
//! (PROTOCOL.md §5, "References in values").

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serialize, Serializer};

use crate::proto::{ObjectId, EXT_RECEIVER_OWN, EXT_SENDER_EXPORT};

/// Whose table a reference indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefTag {
    /// The sender's export table: the receiver imports it.
    SenderExport,
    /// The receiver's own export table: handed back.
    ReceiverOwn,
}

pub(crate) fn serialize_ref<S: Serializer>(
    s: S,
    tag: RefTag,
    id: ObjectId,
) -> Result<S::Ok, S::Error> {
    let code = match tag {
        RefTag::SenderExport => EXT_SENDER_EXPORT,
        RefTag::ReceiverOwn => EXT_RECEIVER_OWN,
    };
    let payload = id.0.to_be_bytes();
    s.serialize_newtype_struct(
        rmp_serde::MSGPACK_EXT_STRUCT_NAME,
        &(code, ExtBytes(&payload)),
    )
}

struct ExtBytes<'a>(&'a [u8]);

impl Serialize for ExtBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

pub(crate) fn deserialize_ref<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<(RefTag, ObjectId), D::Error> {
    struct RefVisitor;
    impl<'de> Visitor<'de> for RefVisitor {
        type Value = (RefTag, ObjectId);
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a remote reference (msgpack ext type 1 or 2 with a 4-byte id)")
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_tuple(2, self)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let code: i8 = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(0, &self))?;
            let bytes: serde_bytes_compat::Buf = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(1, &self))?;
            let tag = match code {
                EXT_SENDER_EXPORT => RefTag::SenderExport,
                EXT_RECEIVER_OWN => RefTag::ReceiverOwn,
                other => return Err(de::Error::custom(format!("unknown extension type {other}"))),
            };
            let arr: [u8; 4] = bytes.0.as_slice().try_into().map_err(|_| {
                de::Error::custom(format!(
                    "reference payload must be 4 bytes, got {}",
                    bytes.0.len()
                ))
            })?;
            Ok((tag, ObjectId(u32::from_be_bytes(arr))))
        }
    }
    d.deserialize_newtype_struct(rmp_serde::MSGPACK_EXT_STRUCT_NAME, RefVisitor)
}

mod serde_bytes_compat {
    use serde::de::{Deserialize, Deserializer, Visitor};
    use std::fmt;

    pub(super) struct Buf(pub(super) Vec<u8>);

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Buf;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Buf, E> {
                    Ok(Buf(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Buf, E> {
                    Ok(Buf(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}
