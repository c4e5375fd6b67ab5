//! [`Event`]: what the driver must do about one incoming frame.

use crate::proto::tables::ImportRefs;
use crate::proto::{CallId, ObjectId};
use crate::RemoteError;

/// What the driver must do about one incoming frame.
#[derive(Debug)]
pub enum Event<'a, O, W> {
    /// Handshake completed.
    Opened {
        /// Negotiated version.
        version: u32,
        /// The peer's authentication slot (PROTOCOL.md §7.1).
        auth: Option<&'a [u8]>,
        /// Features both sides support.
        features: Vec<String>,
    },
    /// Run a call. The refs keep the argument's imports counted until the
    /// arguments are decoded.
    Call {
        /// Caller's id.
        id: CallId,
        /// This side's sequence number for the running handler (for
        /// `answered`, `call_done` and cancels).
        seq: u64,
        /// The target object.
        target: O,
        /// The target's id (for logs).
        object: ObjectId,
        /// Method wire name.
        method: &'a str,
        /// Deadline requested by the caller, in ms (already capped).
        timeout_ms: u32,
        /// Byte range of the arguments in the frame.
        args: std::ops::Range<usize>,
        /// Items in the arguments' containers: what they decode into grows
        /// with them ([`Reader::items`](crate::proto::Reader::items)).
        items: u32,
        /// Imports referenced by the arguments: one hold per distinct
        /// object (receipts are counted in it), sorted by id.
        refs: ImportRefs,
        /// Our own objects handed back in the arguments, held until
        /// decoded: one per distinct id, sorted by id.
        owns: Vec<(ObjectId, O)>,
        /// A kept-answer call (kind 12): the driver sets the answer's
        /// object with `keep_answer` before the next frame.
        keep: bool,
    },
    /// Answer this call at once with an error frame (no handler runs).
    Reject {
        /// The complete error frame.
        frame: Vec<u8>,
        /// Its error kind (`unknown_object`, `limit_exceeded`).
        kind: &'static str,
        /// The [`Limits`](crate::Limits) field a `limit_exceeded` names.
        limit: Option<&'static str>,
    },
    /// A reply for one of our calls.
    Reply {
        /// The waiter registered by `start_call`.
        waiter: W,
        /// The value's byte range, or the error (boxed: errors are rare,
        /// and an event is moved several times on every reply).
        result: Result<std::ops::Range<usize>, Box<RemoteError>>,
        /// Items in the value's containers, references counting more
        /// (`Message::Return`'s), 0 for an error: what the value weighs
        /// decoded.
        items: u32,
        /// Imports referenced by the value: one hold per distinct object,
        /// sorted by id.
        refs: ImportRefs,
        /// Our own objects handed back in the value, held until decoded:
        /// one per distinct id, sorted by id.
        owns: Vec<(ObjectId, O)>,
    },
    /// The peer released references; drop this object (outside locks) if set.
    Released(Option<O>),
    /// Abort the handler of this incoming call (its running sequence
    /// number) and send `reply`, the call's `cancelled` error: the call's
    /// one reply (PROTOCOL.md §3.6).
    Cancel {
        /// The handler's sequence number.
        seq: u64,
        /// The complete error frame (kind `cancelled`) answering the call.
        reply: Vec<u8>,
    },
    /// The peer is closing.
    Goodbye(String),
    /// A keepalive ping: answer with a pong echoing `token`.
    Ping(u32),
    /// A keepalive pong echoing `token`.
    Pong(u32),
    /// Drop the cached results of `methods` of the peer's `object` (our
    /// import), then acknowledge `token`.
    Invalidate {
        /// The token to acknowledge.
        token: u64,
        /// The object, in the peer's export table.
        object: ObjectId,
        /// Method wire names.
        methods: Vec<&'a str>,
    },
    /// The peer acknowledged every invalidation up to this token (the
    /// driver checks it against what it sent).
    Invalidated(u64),
    /// Nothing to do (e.g. a late reply to a cancelled call).
    Nothing,
}
