//! A frame's bytes as the code handling it holds them: lent by the read
//! buffer they arrived in (no reference count taken), or owned.

use std::ops::Deref;

use bytes::Bytes;

/// A frame's bytes: a view of the reader's buffer, valid while the frame
/// is handled, or a [`Bytes`] of their own.
pub(crate) enum FrameBytes<'a> {
    Lent(&'a [u8]),
    Own(Bytes),
}

impl FrameBytes<'_> {
    /// The bytes as a [`Bytes`]: the owned ones as they are, lent ones
    /// copied (to be held past the handling of their frame).
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            FrameBytes::Lent(b) => Bytes::copy_from_slice(b),
            FrameBytes::Own(b) => b,
        }
    }
}

impl Deref for FrameBytes<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            FrameBytes::Lent(b) => b,
            FrameBytes::Own(b) => b,
        }
    }
}
