//! Pushed cache invalidation (PROTOCOL.md §3.9): the `invalidate` and
//! `invalidated` messages, as plain data.
//!
//! Both peers list [`FEATURE`] in their hello when they apply
//! invalidations; a side sends `invalidate` only when both listed it. The
//! sender numbers its invalidations 1, 2, 3, .. per connection; the
//! receiver drops the named methods' cached results of the object, then
//! answers `invalidated(token)`. Acknowledgements are cumulative: one for
//! token `n` acknowledges every invalidation up to `n` (frames on one
//! connection are applied in order).

use super::value::enc;
use super::{kind, ObjectId};

/// The hello feature name that negotiates invalidation pushes.
pub const FEATURE: &str = "invalidate";

/// Most method names one `invalidate` message carries (more make the
/// message malformed; a sender splits a longer list).
pub const MAX_INVALIDATE_METHODS: usize = 256;

/// A complete invalidate frame: `[10, token, object_id, [method, ..]]`.
/// `methods` holds at most [`MAX_INVALIDATE_METHODS`] names.
pub fn invalidate(token: u64, object: ObjectId, methods: &[&str]) -> Vec<u8> {
    debug_assert!(methods.len() <= MAX_INVALIDATE_METHODS);
    let names: usize = methods.iter().map(|m| m.len() + 5).sum();
    let mut b = super::encode::begin(24 + names);
    enc::array_len(&mut b, 4);
    enc::uint(&mut b, u64::from(kind::INVALIDATE));
    enc::uint(&mut b, token);
    enc::uint(&mut b, u64::from(object.0));
    enc::array_len(&mut b, methods.len());
    for m in methods {
        enc::str(&mut b, m);
    }
    super::encode::finish(&mut b);
    b
}

/// A complete acknowledgement frame: `[11, token]`.
pub fn ack(token: u64) -> Vec<u8> {
    let mut b = super::encode::begin(16);
    enc::array_len(&mut b, 2);
    enc::uint(&mut b, u64::from(kind::INVALIDATED));
    enc::uint(&mut b, token);
    super::encode::finish(&mut b);
    b
}
