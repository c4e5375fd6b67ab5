//! [`Args`]: the encoded arguments of an incoming call.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::driver::control::Held;
use crate::driver::shared::Shared;
use crate::{Error, Wire};

/// The encoded arguments of an incoming call.
///
/// A view of the frame the call came in, borrowed while the call starts
/// (no reference count of the frame taken per call): a dispatcher decodes
/// it in [`Dispatch::call`](crate::Dispatch::call), as
/// generated ones do, and its future holds the decoded values.
pub struct Args<'a> {
    /// The connection, to look the references up in: only for arguments
    /// that hold one (most hold none, and need no reference count).
    shared: Option<Arc<Shared>>,
    /// The reader's (no reference count taken per call), or a copy of
    /// their own bytes.
    frame: FrameBytes<'a>,
    range: Range<usize>,
    held: Held,
}

/// The arguments' frame: lent by the frame being handled (as `Bytes` if a
/// large `Bytes` argument may share its memory, `codec/shared_bytes.rs`),
/// or a copy of their own bytes ([`Args::detach`]).
enum FrameBytes<'a> {
    Lent(&'a [u8]),
    Lending(&'a Bytes),
    Own(Bytes),
}

impl std::ops::Deref for FrameBytes<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            FrameBytes::Lent(b) => b,
            FrameBytes::Lending(b) => b,
            FrameBytes::Own(b) => b,
        }
    }
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("len", &self.range.len())
            .field("refs", &self.held.refs.len())
            .finish()
    }
}

impl<'a> Args<'a> {
    /// The encoded arguments, if they hold no reference (a memo key).
    pub(crate) fn plain_bytes(&self) -> Option<&[u8]> {
        let plain = self.held.refs.is_empty() && self.held.owns.is_empty();
        plain.then(|| &self.frame[self.range.clone()])
    }

    pub(crate) fn new(
        shared: &Arc<Shared>,
        frame: &'a [u8],
        range: Range<usize>,
        held: Held,
    ) -> Self {
        let plain = held.refs.is_empty() && held.owns.is_empty();
        Args {
            shared: (!plain).then(|| shared.clone()),
            frame: FrameBytes::Lent(frame),
            range,
            held,
        }
    }

    /// [`new`](Self::new), with a frame a large `Bytes` argument may share
    /// (the reader says which, `Input::received`).
    pub(crate) fn lending(
        shared: &Arc<Shared>,
        frame: &'a Bytes,
        range: Range<usize>,
        held: Held,
    ) -> Self {
        let mut args = Args::new(shared, frame, range, held);
        args.frame = FrameBytes::Lending(frame);
        args
    }

    /// The arguments in an allocation of their own, for a call that waits
    /// before it is dispatched (a call on a promise not yet resolved). The
    /// frame shares the memory of the read buffer it came in, which can be
    /// far larger (a buffer kept for a run of large frames): held while the
    /// call waits, a few bytes of arguments would keep all of it alive,
    /// counted at their own size only.
    pub(crate) fn detach(self) -> Args<'static> {
        let frame = Bytes::copy_from_slice(&self.frame[self.range.clone()]);
        let range = 0..frame.len();
        Args {
            shared: self.shared,
            frame: FrameBytes::Own(frame),
            range,
            held: self.held,
        }
    }

    /// Decodes the arguments as a tuple (`()` for none).
    pub fn decode<A: DeserializeOwned>(self) -> Result<A, Error> {
        let mut slot = None;
        self.decode_into(&mut slot, false)?;
        codec::decoded(slot, "arguments")
    }

    /// [`decode`](Self::decode) for generated dispatchers: a large `Bytes`
    /// argument shares the frame's memory where the reader allows it
    /// (`codec/shared_bytes.rs`; a copy of its own arguments, detached,
    /// always does).
    pub(crate) fn decode_wire<A: Wire>(self) -> Result<A, Error> {
        let mut slot = codec::WireSlot::<A>::default();
        self.decode_into(&mut slot, true)?;
        slot.take("arguments")
    }

    /// Decodes the arguments into `slot`, lending their frame to a large
    /// `Bytes` argument if `lend` and the frame may lend.
    fn decode_into(self, slot: &mut dyn codec::DecodeSlot, lend: bool) -> Result<(), Error> {
        let bytes = &self.frame[self.range.clone()];
        let bytes: &[u8] = if bytes == [0x90] { &[0xc0] } else { bytes };
        let lender = match &self.frame {
            _ if !lend => None,
            FrameBytes::Lent(_) => None,
            FrameBytes::Lending(b) => Some(*b),
            FrameBytes::Own(own) => Some(own),
        };
        let (shared, held) = (&self.shared, self.held);
        codec::lending(lender, || match shared {
            Some(shared) => codec::decode_into(shared, bytes, held, "arguments", slot),
            None => codec::decode_plain_into(bytes, "arguments", slot),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Args;
    use crate::collections::RemoteList;
    use crate::driver::Held;
    use crate::{Connection, ConnectionBuilder, Error, Remote};

    /// Arguments that hold no reference take no count of the connection,
    /// decode, and still refuse a reference in their bytes (never look it
    /// up) with the error a message holding none gives.
    #[test]
    fn arguments_holding_no_reference_refuse_one_in_their_bytes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (client, _server) = rt
            .block_on(Connection::pair(
                ConnectionBuilder::new(),
                ConnectionBuilder::new(),
            ))
            .unwrap();
        let shared = &client.shared;
        let args = |bytes: &[u8]| {
            let own = Args::new(shared, bytes, 0..bytes.len(), Held::default());
            own.detach()
        };
        let counted = Arc::strong_count(shared);
        let plain = args(&[0x92, 0x07, 0xa2, b'h', b'i']);
        // Borrowed, they decode the same as from their own copy.
        let view = [0x92, 0x07, 0xa2, b'h', b'i'];
        let lent: (u32, String) = Args::new(shared, &view, 0..5, Held::default())
            .decode()
            .unwrap();
        assert_eq!((lent.0, lent.1.as_str()), (7, "hi"));
        assert_eq!(Arc::strong_count(shared), counted, "no count taken");
        assert_eq!(plain.plain_bytes().map(<[u8]>::len), Some(5));
        let (n, s): (u32, String) = plain.decode().unwrap();
        assert_eq!((n, s.as_str()), (7, "hi"));

        type List = Remote<dyn RemoteList<u64>>;
        for (tag, what) in [
            (1, "reference to object 3"),
            (2, "reference to our object 3"),
        ] {
            let forged = args(&[0x91, 0xd6, tag, 0, 0, 0, 3]);
            match forged.decode::<(List,)>() {
                Err(Error::Decode {
                    what: "arguments",
                    message,
                }) => assert!(
                    message.contains(&format!("{what} was not registered")),
                    "{message}"
                ),
                other => panic!(
                    "a forged reference was not refused: {:?}",
                    other.map(|_| ())
                ),
            }
        }
        // `()` arrives as an empty array.
        args(&[0x90]).decode::<()>().unwrap();
    }
}
