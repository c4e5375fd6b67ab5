//! Making calls (proxy side) and answering them (serving side).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::rt::time::Instant;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::control::{Control, Held, Incoming};
use super::shared::Shared;
use crate::codec;
use crate::proto::{encode, CallId, ImportRef, ObjectId};
use crate::{Connection, Error, RemoteErrorType, Wire};

pub(super) type Prepared = (
    CallId,
    Instant,
    std::time::Duration,
    tokio::sync::oneshot::Receiver<Result<Incoming, Error>>,
);

thread_local! {
    /// A reusable encode buffer: frames are encoded here, then appended to
    /// the connection's write buffer, so a call allocates no frame.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer (an empty one if it is in use
/// further up the stack).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.take();
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= 64 << 10 {
        SCRATCH.set(buf);
    }
    r
}

/// A proxy's link to one object of a peer: the connection, the object's
/// id, and the counted hold that keeps it alive at the peer.
///
/// Generated proxies (`ChatClient`) wrap one. Clones share the hold; when
/// the last one is dropped a release is queued for the connection task.
///
/// ```
/// use remote_core::collections::{RemoteList, SharedVec};
/// use remote_core::{Connection, ConnectionBuilder};
///
/// fn main() -> remote_core::Result<()> {
///     tokio::runtime::Runtime::new()?.block_on(async {
///         let list = SharedVec::<u64>::new();
///         let (client, _server) =
///             Connection::pair(ConnectionBuilder::new(), ConnectionBuilder::new().serve(list.remote()))
///                 .await?;
///         let remote = client.root::<dyn RemoteList<u64>>();
///         let handle = remote.handle().expect("a proxy has a handle");
///         assert_eq!(handle.object_id(), 0); // the root
///         assert!(handle.same_target(client.root::<dyn RemoteList<u64>>().handle().unwrap()));
///         // A local object has none.
///         assert!(list.remote().handle().is_none());
///         Ok(())
///     })
/// }
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    target: ObjectId,
    _hold: Option<ImportRef>,
    /// Set on a root proxy for the wrong interface: every call fails with
    /// it, nothing is sent.
    refused: Option<Arc<Error>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("object", &self.target.0)
            .field("conn", &self.shared)
            .finish()
    }
}

struct CancelOnDrop<'a> {
    shared: &'a Shared,
    id: CallId,
    sent: bool,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Queued, not sent from here: Drop does no I/O and takes no lock.
            let _ = self.shared.ctl.send(Control::Cancel {
                id: self.id,
                sent: self.sent,
            });
        }
    }
}

impl Handle {
    pub(crate) fn root(shared: Arc<Shared>) -> Self {
        Handle {
            shared,
            target: ObjectId::ROOT,
            _hold: None,
            refused: None,
        }
    }

    /// A root handle whose every call fails with `error` (the peer's root
    /// is another interface than the proxy's).
    pub(crate) fn refused_root(shared: Arc<Shared>, error: Error) -> Self {
        Handle {
            refused: Some(Arc::new(error)),
            ..Handle::root(shared)
        }
    }

    pub(crate) fn imported(shared: Arc<Shared>, hold: ImportRef) -> Self {
        Handle {
            target: hold.id(),
            shared,
            _hold: Some(hold),
            refused: None,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn target_id(&self) -> ObjectId {
        self.target
    }

    /// The peer's id of the object.
    pub fn object_id(&self) -> u32 {
        self.target.0
    }

    /// The connection the object lives behind.
    pub fn connection(&self) -> Connection {
        Connection {
            shared: self.shared.clone(),
        }
    }

    /// Whether both handles name the same object on the same connection.
    pub fn same_target(&self, other: &Handle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared) && self.target == other.target
    }

    /// Like [`call`](Handle::call), blocking the current thread. Returns
    /// [`Error::BlockingInAsync`] on an async runtime thread instead of
    /// deadlocking.
    pub fn call_blocking<A, T, E>(&self, method: &'static str, args: A) -> Result<T, E>
    where
        A: Serialize + Send + 'static,
        T: Wire,
        E: RemoteErrorType,
    {
        crate::blocking::block_on_call(&self.shared.runtime, self.call(method, args))
    }

    pub(super) fn prepare(
        &self,
        method: &str,
        args: &dyn codec::Encode,
    ) -> Result<Prepared, Error> {
        if let Some(e) = &self.refused {
            return Err((**e).clone());
        }
        let shared = &*self.shared;
        let now = Instant::now();
        let deadline = super::current_deadline()
            .unwrap_or_else(|| super::deadline::after(now, shared.limits.default_deadline));
        let budget = deadline.saturating_duration_since(now);
        if budget.is_zero() {
            return Err(Error::DeadlineExceeded(budget));
        }
        let timeout_ms = u32::try_from(budget.as_millis().max(1)).unwrap_or(u32::MAX);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A closed connection's calls fail with the reason it closed.
        let id = shared.core().start_call(tx).map_err(|e| match e {
            Error::ConnectionLost(_) => shared.lost(),
            other => other,
        })?;
        let guard = CancelOnDrop {
            shared,
            id,
            sent: false,
            armed: true,
        };
        with_scratch(|buf| {
            encode::begin_in(buf);
            encode::call_head(buf, id, self.target, method, timeout_ms);
            let args_at = buf.len();
            let exported = codec::encode_into(&self.shared, args, buf, "arguments")?;
            if buf[args_at..] == [0xc0] {
                // `()` encodes as nil; arguments are always an array.
                buf[args_at] = 0x90;
            }
            let len = encode::finish(buf);
            let sent = if len > shared.limits.max_frame_len {
                Err(Error::limit(
                    "max_frame_len",
                    shared.limits.max_frame_len as u64,
                    format!("call to {method} encodes to {len} bytes"),
                ))
            } else {
                shared.send_vec(buf)
            };
            if sent.is_err() {
                // Never sent: the peer will never release what we counted.
                exported.undo(shared);
            }
            sent
        })?;
        std::mem::forget(guard);
        Ok((id, deadline, budget, rx))
    }

    pub(super) fn finish<T: Wire, E: RemoteErrorType>(&self, inc: Incoming) -> Result<T, E> {
        let mut slot = None::<T>;
        match self.finish_into(inc, &mut slot) {
            Finished::Decoded => slot.ok_or_else(|| {
                E::from_error(Error::Decode {
                    what: "return value",
                    message: "no value decoded".into(),
                })
            }),
            Finished::Failed(e) => Err(E::from_error(e)),
            Finished::Remote(remote) => Err(E::from_remote(remote)),
        }
    }

    /// The type-independent part of [`finish`](Handle::finish): decodes a
    /// return value into `slot`, or says which error the call ended with.
    fn finish_into(&self, inc: Incoming, slot: &mut dyn codec::DecodeSlot) -> Finished {
        let held = Held {
            refs: inc.refs,
            owns: inc.owns,
        };
        match inc.result {
            Ok(range) => {
                match codec::decode_into(
                    &self.shared,
                    &inc.frame[range],
                    held,
                    "return value",
                    slot,
                ) {
                    Ok(()) => Finished::Decoded,
                    Err(e) => Finished::Failed(e),
                }
            }
            // The server's own timer may beat ours by a millisecond.
            Err(remote) if remote.kind == "deadline_exceeded" => {
                Finished::Failed(Error::DeadlineExceeded(std::time::Duration::ZERO))
            }
            Err(remote) => Finished::Remote(remote),
        }
    }
}

/// How a call's reply was handled by [`Handle::finish_into`].
enum Finished {
    /// The return value is in the slot.
    Decoded,
    /// A local error: the reply did not decode, or the deadline passed.
    Failed(Error),
    /// The peer's error.
    Remote(crate::RemoteError),
}

/// The encoded arguments of an incoming call.
pub struct Args {
    shared: Arc<Shared>,
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

    pub(crate) fn new(shared: Arc<Shared>, frame: Bytes, range: Range<usize>, held: Held) -> Self {
        Args {
            shared,
            frame,
            range,
            held,
        }
    }

    /// Decodes the arguments as a tuple (`()` for none).
    pub fn decode<A: DeserializeOwned>(self) -> Result<A, Error> {
        let bytes = &self.frame[self.range.clone()];
        let bytes: &[u8] = if bytes == [0x90] { &[0xc0] } else { bytes };
        codec::decode_from(&self.shared, bytes, self.held, "arguments")
    }
}

/// Context of an incoming call: encodes its reply, runs blocking methods.
pub struct CallCx {
    shared: Arc<Shared>,
    id: CallId,
    seq: u64,
    deadline: Instant,
}

impl fmt::Debug for CallCx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallCx").field("id", &self.id).finish()
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
        if !running_inline() && !self.shared.core().answered(self.id, self.seq) {
            return Reply { _queued: () };
        }
        // A reply that could not be encoded: an error naming why instead.
        let fail = |e: Error| {
            let re = e.to_remote();
            if re.kind == "limit_exceeded" {
                self.shared
                    .meter
                    .limit_hit(crate::trace::limit_name(&re.message), &re.message);
            }
            let sent = self.shared.send(&encode::error(self.id, &re, limits));
            if sent.is_ok() {
                self.shared.meter.replied_error(&re.kind);
            }
            sent
        };
        let sent = with_scratch(|buf| {
            encode::begin_in(buf);
            let mut exported = codec::Exported::default();
            // The error kind counted for this reply (`None`: a return).
            let mut counted = None;
            // Where a reference-free return value starts (memoisable).
            let mut value_at = None;
            match r {
                Ok(v) => {
                    encode::return_head(buf, self.id);
                    let at = buf.len();
                    match codec::encode_into(&self.shared, &v, buf, "return value") {
                        Ok(e) => {
                            value_at = e.is_empty().then_some(at);
                            exported = e;
                        }
                        Err(e) => return fail(e),
                    }
                }
                Err(e) => {
                    let re = e.to_remote();
                    let data = match error_data(&re, limits.max_depth) {
                        Ok(d) => d,
                        Err(e) => return fail(e),
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
                return fail(Error::limit(
                    "max_frame_len",
                    limits.max_frame_len as u64,
                    format!("reply encodes to {len} bytes"),
                ));
            }
            if let Some(at) = value_at {
                memo.store(&buf[at..]);
            }
            let sent = self.shared.send_vec(buf);
            self.shared.output_share.replied(len);
            if sent.is_err() {
                exported.undo(&self.shared);
            } else {
                self.shared.meter.replied(counted);
            }
            sent
        });
        // A reply that cannot be queued means the connection is gone; the
        // caller learns that from the connection itself.
        let _ = sent;
        Reply { _queued: () }
    }

    /// Answers with an already encoded return value (a memoised reply).
    pub(crate) fn reply_encoded(&self, value: &[u8]) -> Reply {
        if !running_inline() && !self.shared.core().answered(self.id, self.seq) {
            return Reply { _queued: () };
        }
        with_scratch(|buf| {
            encode::begin_in(buf);
            encode::return_head(buf, self.id);
            buf.extend_from_slice(value);
            let len = encode::finish(buf);
            if self.shared.send_vec(buf).is_ok() {
                self.shared.meter.replied(None);
            }
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
            crate::blocking::allow_blocking(|| {
                crate::peer::blocking_scope(peer, || super::deadline::blocking_scope(deadline, f))
            })
        });
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => std::panic::resume_unwind(Box::new("blocking method was cancelled")),
        }
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

thread_local! {
    static INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current code runs in a handler's first poll by the reader.
pub(crate) fn running_inline() -> bool {
    INLINE.with(std::cell::Cell::get)
}

/// Marks the reader's inline poll of a handler (reset on drop, also on panic).
pub(super) struct Inline(bool);

impl Inline {
    pub(super) fn enter() -> Self {
        Inline(INLINE.with(|c| c.replace(true)))
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        INLINE.with(|c| c.set(self.0));
    }
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
