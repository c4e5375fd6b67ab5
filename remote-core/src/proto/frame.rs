//! Length-prefixed framing: a 4-byte big-endian length, then that many bytes
//! of msgpack.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// What can go wrong reading frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announced more than the limit. Nothing was allocated.
    #[error("frame of {len} bytes exceeds max_frame_len = {max}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// An I/O error underneath.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A codec for length-prefixed frames with a maximum length.
///
/// The maximum can change (it is small during the handshake). A length over
/// the maximum is refused as soon as the 4-byte prefix is read, before any
/// buffer grows for it.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use remote_core::proto::FrameCodec;
/// let mut codec = FrameCodec::new(16);
/// let mut buf = BytesMut::from(&[0, 0, 0, 2, 0x91, 0x01][..]);
/// assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], &[0x91, 0x01]);
/// let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
/// assert!(codec.decode(&mut huge).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_len: usize,
}

impl FrameCodec {
    /// A codec refusing frames over `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameCodec { max_len }
    }

    /// Changes the maximum (e.g. after the handshake).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// The current maximum.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: self.max_len,
            });
        }
        let total = 4 + len;
        if src.len() < total {
            // Grow towards the announced (bounded) size, not beyond it.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}
