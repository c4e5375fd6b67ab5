//! [`CallCx`]: the serving side of a call, encoding its reply (or the
//! error it ended with) and running blocking methods.

use std::fmt;
use std::sync::Arc;

use crate::rt::time::Instant;

use super::scratch::with_scratch_on;
use crate::codec;
use crate::driver::pipeline::Answer;
use crate::driver::shared::Shared;
use crate::proto::{encode, CallId};
use crate::{Error, RemoteErrorType, Wire};

/// Context of an incoming call: encodes its reply, runs blocking methods.
pub struct CallCx {
    shared: Arc<Shared>,
    id: CallId,
    seq: u64,
    deadline: Instant,
    /// Set for a kept-answer call: its reply sets the kept answer.
    keep: Option<Arc<Answer>>,
}

impl fmt::Debug for CallCx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallCx").field("id", &self.id).finish()
    }
}

/// A method's result, encodable as its call's reply: `Result<T, E>` of
/// types that cross. The bound of the hidden serving methods `#[remote]`
/// adds to a trait (as a `for<'_>` bound, so a type that cannot cross is
/// reported once, by the describer, not again there).
#[doc(hidden)]
pub trait IntoReply {
    /// Encodes and queues the reply ([`CallCx::reply`]).
    fn into_reply(self, cx: &CallCx) -> Reply;
}

impl<T: Wire, E: RemoteErrorType> IntoReply for Result<T, E> {
    #[inline]
    fn into_reply(self, cx: &CallCx) -> Reply {
        cx.reply(self)
    }
}

/// Proof that a handler's reply was queued ([`CallCx::reply`] makes it).
#[derive(Debug)]
pub struct Reply {
    pub(crate) _queued: (),
}

impl CallCx {
    pub(crate) fn new(shared: Arc<Shared>, id: CallId, seq: u64, deadline: Instant) -> Self {
        CallCx {
            shared,
            id,
            seq,
            deadline,
            keep: None,
        }
    }

    /// This call's reply also sets `keep` (a kept-answer call, §3.10).
    pub(crate) fn keeping(mut self, keep: Option<Arc<Answer>>) -> Self {
        self.keep = keep;
        self
    }

    /// A second context answering the same call (for a wrapper that hands
    /// the first to another dispatch and may have to answer itself).
    pub(crate) fn duplicate(&self) -> CallCx {
        CallCx {
            shared: self.shared.clone(),
            id: self.id,
            seq: self.seq,
            deadline: self.deadline,
            keep: self.keep.clone(),
        }
    }

    /// Marks the call answered before its reply is queued: in its
    /// handler's first poll by the reader, in that poll's state (the call
    /// is not in the table), otherwise in the table. `None` if it already
    /// was (a cancel, the deadline or an earlier reply answered it):
    /// nothing is sent then. Otherwise whether this
    /// task writes the reply itself (`direct.rs`): a spawned handler that is
    /// the only call running, with none of ours waiting, writes it at once
    /// instead of waking the writer task; replies made among others leave
    /// in the writer task's batches.
    fn answer(&self) -> Option<bool> {
        if let Some(first) = answer_inline(&self.shared, self.seq) {
            return first.then_some(false);
        }
        let uncount = !self.shared.blocking.any_running();
        let mut core = self.shared.core();
        if !core.replied(self.id, self.seq, uncount) {
            return None;
        }
        Some(core.calls_in_flight() <= 1 && core.calls_waiting() == 0)
    }

    /// Answers with `e` exactly as it is (no re-raise note added).
    pub(crate) fn reply_remote(&self, e: &crate::RemoteError) -> Reply {
        if self.answer().is_none() {
            return Reply { _queued: () };
        }
        if let Some(k) = &self.keep {
            k.fail(e);
        }
        let frame = encode::error(self.id, e, &self.shared.limits);
        self.shared.send_error_reply(&frame, &e.kind);
        Reply { _queued: () }
    }

    /// Drops a returned value once its reply (or the error replacing it) is
    /// queued. A destructor that panics here must not reach the handler's
    /// panic reply: the call would be answered twice, and a second reply
    /// with the id is taken for the peer's next call that reuses it.
    fn drop_value<T>(&self, value: T) {
        crate::driver::teardown::drop_caught(&self.shared.peer, "a returned value", value);
    }

    /// Answers, with `e`, a call whose value could not be encoded (the call
    /// is marked answered already).
    fn reply_unencoded(&self, e: Error) -> Result<(), Error> {
        let re = e.to_remote();
        if re.kind == "limit_exceeded" {
            self.shared
                .meter
                .limit_hit(crate::trace::limit_name(&re.message), &re.message);
        }
        let frame = encode::error(self.id, &re, &self.shared.limits);
        self.keep_reply(&frame);
        self.shared.send_error_frame(&frame, &re.kind)
    }

    /// Sets the kept answer (if any) from the reply frame about to be sent.
    fn keep_reply(&self, frame: &[u8]) {
        if let Some(k) = &self.keep {
            k.on_reply(&self.shared, self.id, &frame[4..]);
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The caller's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Who the peer of this call's connection is (for hand-written
    /// [`Dispatch`](crate::Dispatch) impls; generated handlers use
    /// [`Peer::current`](crate::Peer::current)).
    pub fn peer(&self) -> crate::Peer {
        self.shared.peer_info()
    }

    /// Whether the connection authenticated in its handshake.
    pub fn is_authenticated(&self) -> bool {
        self.shared.is_authenticated()
    }

    /// `Err` unless the connection is authenticated (for
    /// `#[remote(requires_auth)]` methods).
    pub fn require_auth(&self, method: &str) -> Result<(), Error> {
        if self.is_authenticated() {
            Ok(())
        } else {
            Err(Error::Unauthenticated(format!(
                "method {method} requires an authenticated connection"
            )))
        }
    }

    /// Encodes a method's result and queues it for the caller.
    ///
    /// A reply that breaks a limit (`max_depth`, `max_exports`,
    /// `max_frame_len`) is answered with a `limit_exceeded` error naming
    /// it instead; error text is cut to fit (see [`encode::error_head`]).
    pub fn reply<T: Wire, E: RemoteErrorType>(&self, r: Result<T, E>) -> Reply {
        self.reply_memo(r, crate::memo::MemoTicket::none())
    }

    /// [`reply`](Self::reply) for a `#[remote(memoize(..))]` method: a
    /// successful value holding no reference is also stored by `memo`.
    #[doc(hidden)]
    pub fn reply_memo<T: Wire, E: RemoteErrorType>(
        &self,
        r: Result<T, E>,
        memo: crate::memo::MemoTicket,
    ) -> Reply {
        let limits = &self.shared.limits;
        // The peer may reuse the call id as soon as it sees the reply. (A
        // handler run inline by the reader gets `call_done` before the next
        // frame is read, so only spawned handlers need this.)
        // A call cancelled meanwhile was already answered with `cancelled`:
        // its one reply is out, so this one is not sent.
        let Some(direct) = self.answer() else {
            return Reply { _queued: () };
        };
        let sent = with_scratch_on(&self.shared, |buf| {
            encode::begin_in(buf);
            let mut exported = codec::Exported::default();
            // The error kind counted for this reply (`None`: a return).
            let mut counted = None;
            // Where a reference-free return value starts (memoisable).
            let mut value_at = None;
            // The value lives until its frame is queued: a proxy in it may
            // be the last hold on the peer's object it names, and its
            // release (queued when it drops) must not leave first.
            let mut sent_value = None;
            match r {
                Ok(v) => {
                    encode::return_head(buf, self.id);
                    let at = buf.len();
                    let unwinding = AnswerIfUnwinding(self);
                    let encoded = codec::encode_into(&self.shared, &v, buf, "return value");
                    std::mem::forget(unwinding);
                    match encoded {
                        Ok(e) => {
                            value_at = e.is_empty().then_some(at);
                            exported = e;
                        }
                        Err(e) => {
                            let sent = self.reply_unencoded(e);
                            self.drop_value(v);
                            return sent;
                        }
                    }
                    sent_value = Some(v);
                }
                Err(e) => {
                    let re = e.to_remote();
                    let data = match error_data(&re, limits.max_depth) {
                        Ok(d) => d,
                        Err(e) => return self.reply_unencoded(e),
                    };
                    counted = Some(crate::stats::kind_index(&re.kind));
                    encode::error_head(buf, self.id, &re, limits);
                    match data {
                        Some(d) => buf.extend_from_slice(d),
                        None => buf.push(0xc0),
                    }
                }
            }
            let len = encode::finish(buf);
            if len > limits.max_frame_len {
                exported.undo(&self.shared);
                let sent = self.reply_unencoded(Error::limit(
                    "max_frame_len",
                    limits.max_frame_len as u64,
                    format!("reply encodes to {len} bytes"),
                ));
                self.drop_value(sent_value);
                return sent;
            }
            if let Some(at) = value_at {
                memo.store(&buf[at..]);
            }
            self.keep_reply(buf);
            exported.publish(&self.shared);
            let sent = self.shared.send_reply_vec(buf, direct, counted);
            self.shared.output_share.replied(len);
            if sent.is_err() {
                exported.undo(&self.shared);
            }
            self.drop_value(sent_value);
            sent
        });
        // A reply that cannot be queued means the connection is gone; the
        // caller learns that from the connection itself.
        let _ = sent;
        Reply { _queued: () }
    }

    /// Answers with an already encoded return value (a memoised reply).
    pub(crate) fn reply_encoded(&self, value: &[u8]) -> Reply {
        let Some(direct) = self.answer() else {
            return Reply { _queued: () };
        };
        with_scratch_on(&self.shared, |buf| {
            encode::begin_in(buf);
            encode::return_head(buf, self.id);
            buf.extend_from_slice(value);
            let len = encode::finish(buf);
            self.keep_reply(buf);
            let _ = self.shared.send_reply_vec(buf, direct, None);
            self.shared.output_share.replied(len);
        });
        Reply { _queued: () }
    }

    /// Runs a blocking method on tokio's blocking pool with this call's
    /// deadline inherited (and blocking proxies allowed). A panic in `f`
    /// propagates to the caller as a remote `panic` error.
    ///
    /// At most [`Limits::max_blocking_calls`](crate::Limits::max_blocking_calls)
    /// closures run at once per connection and
    /// [`Limits::max_server_blocking_calls`](crate::Limits::max_server_blocking_calls)
    /// per server; over either, the call waits for a slot until its
    /// deadline. A closure cannot be interrupted: if the call is cancelled
    /// or its deadline passes, the closure runs on, and the call keeps
    /// counting in [`Limits::max_calls_in_flight`](crate::Limits::max_calls_in_flight)
    /// and keeps its slots until `f` returns.
    pub async fn blocking<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let deadline = self.deadline;
        let peer = self.shared.peer_info();
        let slots = self.shared.blocking.acquire().await;
        let hold = self
            .shared
            .blocking
            .hold((self.id, self.seq), self.shared.ctl.clone());
        let task = crate::rt::spawn_blocking(move || {
            // Released when `f` returns (or unwinds), not when the awaiting
            // handler is dropped.
            let _held = (hold, slots);
            crate::blocking::allow_blocking(|| crate::ambient::blocking_scope(peer, deadline, f))
        });
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => std::panic::resume_unwind(Box::new("blocking method was cancelled")),
        }
    }
}

/// Answers the call with an `encode` error if the encode of its value
/// unwinds (a `Serialize` impl panicked): the call is marked answered
/// before its value is encoded, so neither its task nor the reader would
/// answer it, and its caller waited until its deadline (found by a
/// red-team pass). Forgotten once the encode returns.
struct AnswerIfUnwinding<'a>(&'a CallCx);

impl Drop for AnswerIfUnwinding<'_> {
    fn drop(&mut self) {
        let _ = self.0.reply_unencoded(Error::Encode {
            what: "return value",
            message: "its Serialize impl panicked".into(),
        });
    }
}

/// The `data` bytes an error reply may carry: well formed, no deeper than
/// `max_depth` (else `limit_exceeded`), and holding no reference. Data that
/// could hold a reference is dropped, never forwarded: a reference names an
/// object of the connection it came from, and would name a different one
/// here (PROTOCOL.md §3.4).
fn error_data(re: &crate::RemoteError, max_depth: usize) -> Result<Option<&[u8]>, Error> {
    let Some(d) = re.data.as_deref() else {
        return Ok(None);
    };
    let mut refs = Vec::new();
    let mut r = crate::proto::Reader::new(d);
    match r.skip_value(max_depth, &mut refs) {
        Ok(_) if r.remaining() == 0 && refs.is_empty() => Ok(Some(d)),
        Err(m) if m.reason.starts_with(crate::proto::TOO_DEEP) => Err(Error::limit(
            "max_depth",
            max_depth as u64,
            "error data nests arrays and maps deeper than the peer accepts",
        )),
        _ => {
            tracing::debug!(name: "remote.error_data_dropped", "error data dropped: not one reference-free value");
            Ok(None)
        }
    }
}

impl Error {
    /// The error for a method name the interface does not have. The
    /// peer-supplied name is quoted cut to a small bound.
    pub fn unknown_method(interface: &str, method: &str) -> Error {
        Error::Remote(Box::new(crate::RemoteError::new(
            "unknown_method",
            "remote_core::Error",
            format!(
                "interface {} has no method {}",
                crate::bounded::truncate(interface, crate::bounded::QUOTE_MAX),
                crate::bounded::quote(method)
            ),
        )))
    }
}

/// [`INLINE`]: not in a handler's first poll by the reader.
const NOT_INLINE: u8 = 0;
/// [`INLINE`]: in a first poll, the call not answered yet.
const INLINE_UNANSWERED: u8 = 1;
/// [`INLINE`]: in a first poll, the call answered (its reply queued).
const INLINE_ANSWERED: u8 = 2;

thread_local! {
    /// The state of the handler's first poll run here by a reader, and the
    /// call it serves (its connection's address and sequence number).
    static INLINE: std::cell::Cell<(u8, usize, u64)> =
        const { std::cell::Cell::new((NOT_INLINE, 0, 0)) };
}

/// Marks the reader's inline poll of a handler (reset on drop, also on
/// panic), and records in `answered` whether the call was answered in it.
pub(in crate::driver) struct Inline<'a> {
    prev: (u8, usize, u64),
    answered: &'a std::cell::Cell<bool>,
}

impl<'a> Inline<'a> {
    /// The first poll of call `seq` of `shared`'s connection.
    pub(in crate::driver) fn enter(
        shared: &Arc<Shared>,
        seq: u64,
        answered: &'a std::cell::Cell<bool>,
    ) -> Self {
        let this = (INLINE_UNANSWERED, Arc::as_ptr(shared) as usize, seq);
        Inline {
            prev: INLINE.with(|c| c.replace(this)),
            answered,
        }
    }
}

impl Drop for Inline<'_> {
    fn drop(&mut self) {
        let (state, ..) = INLINE.with(|c| c.replace(self.prev));
        self.answered.set(state == INLINE_ANSWERED);
    }
}

/// If this runs in the first poll of call `seq` of `shared`'s connection:
/// marks it answered, and says whether it was not already (`false`: a
/// second reply, not to be sent). `None` for any other call (answered
/// through the connection's table).
fn answer_inline(shared: &Arc<Shared>, seq: u64) -> Option<bool> {
    INLINE.with(|c| {
        let (state, conn, s) = c.get();
        if state == NOT_INLINE || conn != Arc::as_ptr(shared) as usize || s != seq {
            return None;
        }
        c.set((INLINE_ANSWERED, conn, s));
        Some(state == INLINE_UNANSWERED)
    })
}

#[cfg(test)]
mod tests {
    use super::error_data;
    use crate::{Error, RemoteError};

    fn with_data(d: &[u8]) -> RemoteError {
        let mut e = RemoteError::new("application", "t", "m");
        e.data = Some(d.to_vec());
        e
    }

    /// Defense in depth behind the parse rule: a re-raised error never
    /// forwards bytes that could hold a reference (they would name an
    /// object of another connection), nor malformed or over-deep ones.
    #[test]
    fn error_data_is_forwarded_only_when_reference_free() {
        let plain = with_data(&[0x92, 0x01, 0xa1, b'x']);
        assert_eq!(error_data(&plain, 64).unwrap(), plain.data.as_deref());
        for bad in [
            &[0xd6, 0x01, 0, 0, 0, 1][..],
            &[0x91, 0xd6, 0x02, 0, 0, 0, 1],
            &[0x92, 0x01],    // truncated
            &[0x01, 0x02],    // two values
            &[0xc7, 0, 0x05], // another extension type
        ] {
            assert_eq!(error_data(&with_data(bad), 64).unwrap(), None, "{bad:?}");
        }
        let deep = with_data(&[[0x91; 70].as_slice(), &[0xc0]].concat());
        match error_data(&deep, 64) {
            Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, "max_depth"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error_data(&RemoteError::new("k", "t", "m"), 64).unwrap(),
            None
        );
    }
}
