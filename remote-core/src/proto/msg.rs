//! Messages: parsing a frame into a [`Message`], and building frames.

use std::borrow::Cow;
use std::ops::Range;

use super::pipeline::{read_target, CallTarget};
use super::value::{enc, FoundRef, Malformed, Reader};
use super::walk::ArgsWalk;
use super::{kind, CallId, ObjectId};
use crate::bounded;
use crate::Limits;

/// The string every handshake starts with.
pub const PROTOCOL_MAGIC: &str = "remote";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Items a reference in a call's arguments counts besides its own, in the
/// weight of what the arguments hold decoded: the receiver makes a proxy
/// for each, and holds an import for each distinct one (about 220 bytes
/// in all, measured, where an item counts 48). Counted as one item, 10,000
/// distinct references held by handlers that await were counted at a
/// quarter of their memory (found by a red-team pass).
pub(crate) const REF_ITEMS: usize = 4;

/// A handshake: `[0, "remote", min_version, max_version, [features], auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Lowest version the sender speaks.
    pub min_version: u32,
    /// Highest version the sender speaks.
    pub max_version: u32,
    /// Feature names the sender supports.
    pub features: Vec<&'a str>,
    /// The authentication slot (PROTOCOL.md §7.1), if any.
    pub auth: Option<&'a [u8]>,
}

/// An error as carried by an error message, its text bounded by
/// [`Limits::max_error_text`] and [`Limits::max_error_chain`] (text past
/// them is cut and marked, so only cut text is copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError<'a> {
    /// Error kind code.
    pub kind: Cow<'a, str>,
    /// Remote type name.
    pub type_name: Cow<'a, str>,
    /// Display text.
    pub message: Cow<'a, str>,
    /// Source chain.
    pub chain: Vec<Cow<'a, str>>,
    /// Remote backtrace.
    pub backtrace: Option<Cow<'a, str>>,
    /// Byte range of the application error value, if any. It never holds
    /// a reference (§3.4): one makes the message malformed.
    pub data: Option<Range<usize>>,
}

impl WireError<'_> {
    /// The owned error, its `data` range read from `frame` (the frame this
    /// error was parsed from).
    pub fn into_remote(self, frame: &[u8]) -> crate::RemoteError {
        crate::RemoteError {
            kind: self.kind.into_owned(),
            type_name: self.type_name.into_owned(),
            message: self.message.into_owned(),
            chain: self.chain.into_iter().map(Cow::into_owned).collect(),
            backtrace: self.backtrace.map(Cow::into_owned),
            data: self.data.map(|r| frame[r].to_vec()),
        }
    }
}

/// One parsed message. Byte ranges index the frame it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Handshake.
    Hello(Hello<'a>),
    /// `[1, call_id, target, method, timeout_ms, args]`.
    Call {
        /// Caller's id for the call.
        id: CallId,
        /// Object in the receiver's export table.
        target: ObjectId,
        /// Method wire name.
        method: &'a str,
        /// Milliseconds left before the caller's deadline.
        timeout_ms: u32,
        /// Byte range of the argument array.
        args: Range<usize>,
        /// Items in the argument array's containers ([`Reader::items`]),
        /// each reference counting `REF_ITEMS` (4) more (still at most the
        /// frame's length, a reference taking six bytes; so a `u32`).
        items: u32,
    },
    /// `[2, call_id, value]`.
    Return {
        /// The call answered.
        id: CallId,
        /// Byte range of the value.
        value: Range<usize>,
        /// Items in the value's containers, each reference counting
        /// `REF_ITEMS` more, as for a call's arguments: what its caller
        /// holds decoded is weighed from it.
        items: u32,
    },
    /// `[3, call_id, error]`.
    Error {
        /// The call answered.
        id: CallId,
        /// The error (boxed: errors are rare, and every message is moved
        /// on its way from the parser to the state machine).
        error: Box<WireError<'a>>,
        /// Items in its application data (counted as a return value's
        /// are): a typed error is decoded from it.
        items: u32,
    },
    /// `[4, object_id, count]`.
    Release {
        /// Object in the receiver's export table.
        id: ObjectId,
        /// How many receipts this releases.
        count: u32,
    },
    /// `[5, call_id]`.
    Cancel {
        /// The caller's id of the call to cancel.
        id: CallId,
    },
    /// `[6, reason]`.
    Goodbye {
        /// Why the sender is closing (cut to
        /// [`encode::MAX_GOODBYE_REASON`] bytes).
        reason: Cow<'a, str>,
    },
    /// `[7, token]` (feature `keepalive`).
    Ping {
        /// Echoed by the pong.
        token: u32,
    },
    /// `[8, token]` (feature `keepalive`).
    Pong {
        /// The token of the ping answered.
        token: u32,
    },
    /// `[10, token, object_id, [method, ..]]` (feature `invalidate`).
    Invalidate {
        /// Increases by one per invalidation sent on the connection.
        token: u64,
        /// The object, in the sender's export table.
        object: ObjectId,
        /// Wire names of the methods whose cached results to drop (at most
        /// [`MAX_INVALIDATE_METHODS`](super::MAX_INVALIDATE_METHODS)).
        methods: Vec<&'a str>,
    },
    /// `[11, token]` (feature `invalidate`): every invalidation up to
    /// `token` was applied.
    Invalidated {
        /// The highest token applied.
        token: u64,
    },
    /// A call to a promise (`[1, call_id, [promise], ..]`) or a
    /// kept-answer call (`[12, call_id, target, ..]`), feature `pipeline`.
    Pipelined {
        /// Kind 12: the receiver keeps the answer until `finish`.
        keep: bool,
        /// Caller's id for the call.
        id: CallId,
        /// An object, or the answer of a kept-answer call.
        target: CallTarget,
        /// Method wire name.
        method: &'a str,
        /// Milliseconds left before the caller's deadline.
        timeout_ms: u32,
        /// Byte range of the argument array.
        args: Range<usize>,
        /// Items in the argument array's containers ([`Reader::items`]),
        /// each reference counting `REF_ITEMS` (4) more (still at most the
        /// frame's length, a reference taking six bytes; so a `u32`).
        items: u32,
    },
    /// `[13, call_id]` (feature `pipeline`): the sender's kept answer of
    /// call `call_id` may be dropped.
    Finish {
        /// The kept-answer call.
        id: CallId,
    },
}

impl<'a> Message<'a> {
    /// Parses one frame's payload. References inside values are appended to
    /// `refs` in order. `limits.max_depth` bounds value nesting, and
    /// `max_error_chain` and `max_error_text` what is kept of an error.
    #[inline]
    pub(crate) fn parse(
        frame: &'a [u8],
        limits: &Limits,
        refs: &mut Vec<FoundRef>,
    ) -> Result<Message<'a>, Malformed> {
        Self::parse_walked(frame, limits, refs, None)
    }

    /// [`parse`](Self::parse), taking a call's arguments from `walked`, a
    /// walk of this very frame's (see [`ArgsWalk`]), instead of walking
    /// them again.
    pub(crate) fn parse_walked(
        frame: &'a [u8],
        limits: &Limits,
        refs: &mut Vec<FoundRef>,
        walked: Option<&ArgsWalk>,
    ) -> Result<Message<'a>, Malformed> {
        let max_depth = limits.max_depth;
        let mut r = Reader::new(frame);
        let n = r.array_len()?;
        if n == 0 {
            return Err(r.err("empty message"));
        }
        let k = r.uint()?;
        let want = match k {
            0 => 6,
            1 => 6,
            2 => 3,
            3 => 3,
            4 => 3,
            5 => 2,
            6 => 2,
            7 => 2,
            8 => 2,
            10 => 4,
            11 => 2,
            12 => 6,
            13 => 2,
            other => return Err(r.err(format!("unknown message kind {other}"))),
        };
        if n != want {
            return Err(r.err(format!("message kind {k} has {want} fields, got {n}")));
        }
        let msg = match k as u8 {
            kind::HELLO => {
                let magic = r.str()?;
                if magic != PROTOCOL_MAGIC {
                    return Err(r.err(format!(
                        "bad magic {}, expected {PROTOCOL_MAGIC:?}",
                        bounded::quote(magic)
                    )));
                }
                let min_version = r.u32()?;
                let max_version = r.u32()?;
                let nf = r.array_len()?;
                if nf > 64 {
                    return Err(r.err("more than 64 features"));
                }
                let mut features = Vec::with_capacity(nf);
                for _ in 0..nf {
                    features.push(r.str()?);
                }
                let auth = if r.nil()? { None } else { Some(r.bin()?) };
                Message::Hello(Hello {
                    min_version,
                    max_version,
                    features,
                    auth,
                })
            }
            kind::CALL | kind::KEPT_CALL => {
                let keep = k == u64::from(kind::KEPT_CALL);
                let id = CallId(r.u32()?);
                let target = read_target(&mut r)?;
                let method = r.str()?;
                // 0 is not a valid deadline (§3.2); read it as 1 ms.
                let timeout_ms = r.u32()?.max(1);
                let start = r.pos();
                let (args, items) = match walked.and_then(|w| w.of_payload(frame, start)) {
                    // Weighed by the walk as below.
                    Some((args, items, found)) => {
                        r.skip_to(args.end);
                        refs.extend_from_slice(found);
                        (args, items)
                    }
                    None => {
                        // Arguments are always an array (checked, not
                        // decoded here).
                        r.clone().array_len()?;
                        let before = (r.items(), refs.len());
                        let args = r.skip_value(max_depth, refs)?;
                        let found = (refs.len() - before.1).saturating_mul(REF_ITEMS);
                        let items = (r.items() - before.0).saturating_add(found);
                        (args, u32::try_from(items).unwrap_or(u32::MAX))
                    }
                };
                debug_assert_eq!(args.start, start);
                match target {
                    CallTarget::Object(target) if !keep => Message::Call {
                        id,
                        target,
                        method,
                        timeout_ms,
                        args,
                        items,
                    },
                    target => Message::Pipelined {
                        keep,
                        id,
                        target,
                        method,
                        timeout_ms,
                        args,
                        items,
                    },
                }
            }
            kind::RETURN => {
                let id = CallId(r.u32()?);
                let before = (r.items(), refs.len());
                let value = r.skip_value(max_depth, refs)?;
                let found = (refs.len() - before.1).saturating_mul(REF_ITEMS);
                let items = (r.items() - before.0).saturating_add(found);
                let items = u32::try_from(items).unwrap_or(u32::MAX);
                Message::Return { id, value, items }
            }
            kind::ERROR => {
                let id = CallId(r.u32()?);
                let n = r.array_len()?;
                if n != 6 {
                    return Err(r.err(format!("error value has 6 fields, got {n}")));
                }
                // Text is kept up to the limits; entries and bytes past them
                // are checked but never stored (§3.4).
                let mut budget = limits.max_error_text;
                let kind = bounded::take(r.str()?, &mut budget);
                let type_name = bounded::take(r.str()?, &mut budget);
                let message = bounded::take(r.str()?, &mut budget);
                let nc = r.array_len()?;
                let chain = bounded::chain(nc, || r.str(), limits.max_error_chain, &mut budget)?;
                let backtrace = if r.nil()? {
                    None
                } else {
                    Some(bounded::take(r.str()?, &mut budget))
                };
                let items_before = r.items();
                let data = if r.nil()? {
                    None
                } else {
                    let at = r.pos();
                    let before = refs.len();
                    let data = r.skip_value(max_depth, refs)?;
                    if let Some(&(sender_export, id)) = refs.get(before) {
                        let ty = if sender_export { 1 } else { 2 };
                        return Err(Malformed {
                            offset: at,
                            reason: format!(
                                "error data holds a reference (ext type {ty}, object {id}); \
                                 references are not allowed in error data"
                            ),
                        });
                    }
                    Some(data)
                };
                Message::Error {
                    id,
                    error: Box::new(WireError {
                        kind,
                        type_name,
                        message,
                        chain,
                        backtrace,
                        data,
                    }),
                    items: u32::try_from(r.items() - items_before).unwrap_or(u32::MAX),
                }
            }
            kind::RELEASE => {
                let id = ObjectId(r.u32()?);
                let count = r.u32()?;
                Message::Release { id, count }
            }
            kind::CANCEL => Message::Cancel {
                id: CallId(r.u32()?),
            },
            kind::PING => Message::Ping { token: r.u32()? },
            kind::PONG => Message::Pong { token: r.u32()? },
            kind::INVALIDATE => {
                let token = r.uint()?;
                let object = ObjectId(r.u32()?);
                let n = r.array_len()?;
                if n > super::MAX_INVALIDATE_METHODS {
                    return Err(r.err(format!(
                        "invalidate names {n} methods, more than {}",
                        super::MAX_INVALIDATE_METHODS
                    )));
                }
                let mut methods = Vec::with_capacity(n);
                for _ in 0..n {
                    methods.push(r.str()?);
                }
                Message::Invalidate {
                    token,
                    object,
                    methods,
                }
            }
            kind::INVALIDATED => Message::Invalidated { token: r.uint()? },
            kind::FINISH => Message::Finish {
                id: CallId(r.u32()?),
            },
            _ => Message::Goodbye {
                reason: bounded::truncate(r.str()?, encode::MAX_GOODBYE_REASON),
            },
        };
        if r.remaining() != 0 {
            return Err(r.err(format!(
                "{} trailing bytes after the message",
                r.remaining()
            )));
        }
        Ok(msg)
    }
}

/// Whether a frame's payload is a call (message kind 1, or a kept-answer
/// call, kind 12), without parsing the rest: a receiver holds calls back
/// while its output is over its budgets (PROTOCOL.md §9).
#[inline]
pub(crate) fn is_call(payload: &[u8]) -> bool {
    matches!(kind_of(payload), Some(k) if k == u64::from(kind::CALL) || k == u64::from(kind::KEPT_CALL))
}

/// A frame's message kind (its first element), without parsing the rest;
/// `None` if it does not read as an array starting with an unsigned
/// integer.
#[inline]
pub(crate) fn kind_of(payload: &[u8]) -> Option<u64> {
    // The usual encoding (a fixarray, the kind a positive fixint) is read
    // here; any other goes through the reader, so a peer cannot pass a
    // message off as another kind by encoding it differently.
    if let [0x90..=0x9f, k @ 0x00..=0x7f, ..] = *payload {
        return Some(u64::from(k));
    }
    kind_read(payload)
}

/// [`kind_of`] for any other encoding, out of line so the usual test
/// stays small enough to inline wherever it is made.
#[cold]
#[inline(never)]
fn kind_read(payload: &[u8]) -> Option<u64> {
    let mut r = Reader::new(payload);
    r.array_len().ok()?;
    r.uint().ok()
}

/// Builders for framed messages: 4-byte big-endian length, then msgpack.
pub mod encode {
    use super::*;

    /// Starts a frame (reserves the length prefix).
    pub fn begin(capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(capacity.max(16));
        buf.extend_from_slice(&[0, 0, 0, 0]);
        buf
    }

    /// Starts a frame in a reused buffer (which must be empty).
    pub fn begin_in(buf: &mut Vec<u8>) {
        buf.extend_from_slice(&[0, 0, 0, 0]);
    }

    /// Fills in the length prefix. Returns the payload length.
    pub fn finish(buf: &mut [u8]) -> usize {
        let len = buf.len() - 4;
        let prefix = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        buf[..4].copy_from_slice(&prefix);
        len
    }

    /// A complete handshake frame.
    pub fn hello(h: &Hello<'_>) -> Vec<u8> {
        let mut b = begin(32);
        enc::array_len(&mut b, 6);
        enc::uint(&mut b, u64::from(kind::HELLO));
        enc::str(&mut b, PROTOCOL_MAGIC);
        enc::uint(&mut b, u64::from(h.min_version));
        enc::uint(&mut b, u64::from(h.max_version));
        enc::array_len(&mut b, h.features.len());
        for f in &h.features {
            enc::str(&mut b, f);
        }
        match h.auth {
            Some(a) => enc::bin(&mut b, a),
            None => enc::nil(&mut b),
        }
        finish(&mut b);
        b
    }

    /// Starts a call frame up to its arguments; append the argument array
    /// (msgpack) and then call [`finish`].
    pub fn call_head(
        buf: &mut Vec<u8>,
        id: CallId,
        target: ObjectId,
        method: &str,
        timeout_ms: u32,
    ) {
        enc::array_len(buf, 6);
        enc::uint(buf, u64::from(kind::CALL));
        enc::uint(buf, u64::from(id.0));
        enc::uint(buf, u64::from(target.0));
        enc::str(buf, method);
        enc::uint(buf, u64::from(timeout_ms));
    }

    /// Starts a return frame; append the value, then [`finish`].
    pub fn return_head(buf: &mut Vec<u8>, id: CallId) {
        enc::array_len(buf, 3);
        enc::uint(buf, u64::from(kind::RETURN));
        enc::uint(buf, u64::from(id.0));
    }

    /// Starts an error frame up to the `data` field; append the data value
    /// (or nil), then [`finish`]. The text is cut to
    /// [`Limits::max_error_text`] (and to what fits in
    /// [`Limits::max_frame_len`]) and the chain to
    /// [`Limits::max_error_chain`] entries, as a receiver would.
    pub fn error_head(buf: &mut Vec<u8>, id: CallId, e: &crate::RemoteError, limits: &Limits) {
        // Headers: at most 5 bytes per string and array, a few integers,
        // and the omitted-causes note.
        let entries = e.chain.len().min(limits.max_error_chain);
        let overhead = 64 + 128 + 5 * entries;
        let max_text = limits
            .max_error_text
            .min(limits.max_frame_len.saturating_sub(overhead));
        let t = bounded::ErrorText::of(e, limits.max_error_chain, max_text);
        enc::array_len(buf, 3);
        enc::uint(buf, u64::from(kind::ERROR));
        enc::uint(buf, u64::from(id.0));
        enc::array_len(buf, 6);
        enc::str(buf, &t.kind);
        enc::str(buf, &t.type_name);
        enc::str(buf, &t.message);
        enc::array_len(buf, t.chain.len());
        for c in &t.chain {
            enc::str(buf, c);
        }
        match &t.backtrace {
            Some(bt) => enc::str(buf, bt),
            None => enc::nil(buf),
        }
    }

    /// A complete error frame without application data (its text bounded
    /// as by [`error_head`], so it fits in a frame).
    pub fn error(id: CallId, e: &crate::RemoteError, limits: &Limits) -> Vec<u8> {
        let mut b = begin(64 + e.message.len().min(limits.max_error_text));
        error_head(&mut b, id, e, limits);
        enc::nil(&mut b);
        finish(&mut b);
        b
    }

    /// A complete release frame.
    pub fn release(id: ObjectId, count: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        release_in(&mut b, id, count);
        b
    }

    /// A complete release frame, in a reused buffer (which must be empty).
    pub fn release_in(b: &mut Vec<u8>, id: ObjectId, count: u32) {
        begin_in(b);
        enc::array_len(b, 3);
        enc::uint(b, u64::from(kind::RELEASE));
        enc::uint(b, u64::from(id.0));
        enc::uint(b, u64::from(count));
        finish(b);
    }

    /// A complete cancel frame.
    pub fn cancel(id: CallId) -> Vec<u8> {
        let mut b = begin(16);
        enc::array_len(&mut b, 2);
        enc::uint(&mut b, u64::from(kind::CANCEL));
        enc::uint(&mut b, u64::from(id.0));
        finish(&mut b);
        b
    }

    /// Longest goodbye reason sent, in bytes: a goodbye may answer a
    /// handshake, so it fits in the smallest frame a peer accepts.
    pub const MAX_GOODBYE_REASON: usize = 1024;

    /// A complete goodbye frame (the reason cut to
    /// [`MAX_GOODBYE_REASON`] bytes).
    pub fn goodbye(reason: &str) -> Vec<u8> {
        let reason = &*bounded::truncate(reason, MAX_GOODBYE_REASON);
        let mut b = begin(16 + reason.len());
        enc::array_len(&mut b, 2);
        enc::uint(&mut b, u64::from(kind::GOODBYE));
        enc::str(&mut b, reason);
        finish(&mut b);
        b
    }
}
