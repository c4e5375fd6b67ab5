//! [`Args`]: the encoded arguments of an incoming call.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::driver::control::Held;
use crate::driver::shared::Shared;
use crate::Error;

/// The encoded arguments of an incoming call.
pub struct Args {
    /// The connection, to look the references up in: only for arguments
    /// that hold one (most hold none, and need no reference count).
    shared: Option<Arc<Shared>>,
    frame: Bytes,
    range: Range<usize>,
    held: Held,
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("len", &self.range.len())
            .field("refs", &self.held.refs.len())
            .finish()
    }
}

impl Args {
    /// The encoded arguments, if they hold no reference (a memo key).
    pub(crate) fn plain_bytes(&self) -> Option<&[u8]> {
        let plain = self.held.refs.is_empty() && self.held.owns.is_empty();
        plain.then(|| &self.frame[self.range.clone()])
    }

    pub(crate) fn new(shared: &Arc<Shared>, frame: Bytes, range: Range<usize>, held: Held) -> Self {
        let plain = held.refs.is_empty() && held.owns.is_empty();
        Args {
            shared: (!plain).then(|| shared.clone()),
            frame,
            range,
            held,
        }
    }

    /// Decodes the arguments as a tuple (`()` for none).
    pub fn decode<A: DeserializeOwned>(self) -> Result<A, Error> {
        let bytes = &self.frame[self.range.clone()];
        let bytes: &[u8] = if bytes == [0x90] { &[0xc0] } else { bytes };
        match &self.shared {
            Some(shared) => codec::decode_from(shared, bytes, self.held, "arguments"),
            None => codec::decode_plain(bytes, "arguments"),
        }
    }
}
