//! A frame's bytes as the code handling it holds them: lent by the frame
//! being handled (no reference count taken), or owned.

use std::ops::Deref;

use bytes::Bytes;

/// A frame's bytes: a view of the frame, valid while it is handled, or a
/// [`Bytes`] of their own.
pub(crate) enum FrameBytes<'a> {
    Lent(&'a [u8]),
    Own(Bytes),
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
