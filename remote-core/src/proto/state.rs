//! The per-connection protocol state machine.
//!
//! ```text
//!                 our Hello sent by the driver
//!   AwaitingHello ──── peer Hello, versions overlap ───► Open
//!        │                                                │
//!        │ anything else / no overlap                     │ Goodbye, violation,
//!        ▼                                                ▼ local close
//!     Closed ◄─────────────────────────────────────────── (drain)
//! ```
//!
//! Calls, from the receiving side: `Call` → running (counted in
//! `max_calls_in_flight`) → answered (`answered` returns `true`: send the
//! reply) or cancelled (`Cancel`: the driver aborts the handler and sends
//! the `cancelled` error the event carries; a reply the handler produces
//! later is not sent, `answered` returns `false`) → the handler has stopped
//! (`call_done`) → no longer counted. Either way exactly one reply goes out
//! per call, and a cancelled call counts against the limit until its
//! handler really stops. From the calling side: `start_call` → waiting → a
//! `Return`/`Error` hands the waiter back; or `cancel_call` forgets the
//! waiter and keeps the id reserved until the call's one reply arrives
//! (which is then dropped), so a reused id can never be answered by the
//! old call's reply.

use std::sync::Arc;

use super::msg::{Hello, Message, PROTOCOL_VERSION};
use super::tables::{ExportKey, ExportTable, ImportRef, ImportTable, ReleaseSink, TableError};
use super::{CallId, ObjectId};
use crate::{Limits, RemoteError};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the peer's handshake.
    AwaitingHello,
    /// Handshake done at this protocol version.
    Open(u32),
    /// Closed; nothing more is processed.
    Closed,
}

/// The peer broke the protocol: send it a goodbye with this reason and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

impl From<super::Malformed> for Violation {
    fn from(m: super::Malformed) -> Self {
        Violation(m.to_string())
    }
}

/// Why the references in a message could not all be resolved.
#[derive(Debug)]
enum RefError {
    /// A type-2 reference names none of our objects: the call is refused.
    UnknownOwn(String),
    /// Connection-level (import limit, reference to object 0).
    Violation(Violation),
}

impl From<RefError> for Violation {
    fn from(e: RefError) -> Self {
        match e {
            RefError::UnknownOwn(m) => Violation(m),
            RefError::Violation(v) => v,
        }
    }
}

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
        /// Imports referenced by the arguments: one hold per distinct
        /// object (receipts are counted in it), sorted by id.
        refs: Vec<ImportRef>,
        /// Our own objects handed back in the arguments, held until
        /// decoded: one per distinct id, sorted by id.
        owns: Vec<(ObjectId, O)>,
    },
    /// Answer this call at once with an error frame (no handler runs).
    Reject {
        /// The complete error frame.
        frame: Vec<u8>,
        /// Its error kind (`unknown_object`, `limit_exceeded`).
        kind: &'static str,
    },
    /// A reply for one of our calls.
    Reply {
        /// The waiter registered by `start_call`.
        waiter: W,
        /// The value's byte range, or the error.
        result: Result<std::ops::Range<usize>, RemoteError>,
        /// Imports referenced by the value: one hold per distinct object,
        /// sorted by id.
        refs: Vec<ImportRef>,
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

/// The connection's protocol state: handshake, object tables, calls.
#[derive(Debug)]
pub struct State<O, W> {
    phase: Phase,
    limits: Limits,
    exports: ExportTable<O>,
    imports: ImportTable,
    outgoing: super::IdMap<CallId, W>,
    /// Our calls cancelled before their reply arrived: the ids stay
    /// reserved until that reply comes (every call gets exactly one).
    cancelled: super::IdMap<CallId, ()>,
    next_call: u32,
    /// Live incoming call ids (not yet answered or cancelled) → sequence.
    incoming: super::IdMap<CallId, u64>,
    /// Handlers counted in flight (live, or cancelled/answered but not yet
    /// stopped).
    running: usize,
    next_seq: u64,
    scratch: Vec<(bool, ObjectId)>,
    /// Both hellos listed the `keepalive` feature.
    keepalive: bool,
    /// Both hellos listed the `invalidate` feature.
    invalidate: bool,
}

fn reject(id: CallId, kind: &str, message: String, limits: &Limits) -> Vec<u8> {
    super::encode::error(
        id,
        &RemoteError::new(kind, "remote_core::Error", message),
        limits,
    )
}

/// Sorts `v` by `key` and keeps one element per key.
fn sort_dedup<T>(v: &mut Vec<T>, key: impl Fn(&T) -> ObjectId) {
    if v.len() > 1 {
        v.sort_unstable_by_key(&key);
        v.dedup_by(|a, b| key(a) == key(b));
    }
}

impl<O: Clone, W> State<O, W> {
    /// Serves `root` as object 0 from now on (set before any call is read).
    pub fn set_root(&mut self, root: O) {
        self.exports.set_root(root);
    }

    /// A new connection serving `root` as object 0.
    pub fn new(root: Option<O>, limits: Limits, sink: Arc<dyn ReleaseSink>) -> Self {
        State {
            phase: Phase::AwaitingHello,
            exports: ExportTable::new(root, limits.max_exports),
            imports: ImportTable::new(sink, limits.max_imports),
            limits,
            outgoing: super::IdMap::default(),
            cancelled: super::IdMap::default(),
            next_call: 0,
            incoming: super::IdMap::default(),
            running: 0,
            next_seq: 0,
            scratch: Vec::new(),
            keepalive: false,
            invalidate: false,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Our handshake. It lists the `keepalive` feature (this side always
    /// answers pings; whether it sends any is the driver's choice) and the
    /// `invalidate` feature (it always applies and acknowledges
    /// invalidations).
    pub fn hello<'a>(auth: Option<&'a [u8]>) -> Hello<'a> {
        Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            features: vec![super::ping::FEATURE, super::invalidate::FEATURE],
            auth,
        }
    }

    /// Whether both peers listed the `invalidate` feature (invalidations
    /// may be sent).
    pub fn invalidate_negotiated(&self) -> bool {
        self.invalidate
    }

    /// Whether both peers listed the `keepalive` feature (pings may be sent).
    pub fn keepalive_negotiated(&self) -> bool {
        self.keepalive
    }

    /// Incoming calls currently counted as running.
    pub fn calls_in_flight(&self) -> usize {
        self.running
    }

    /// Our calls waiting for replies (cancelled ones included: their ids
    /// stay reserved until the reply arrives).
    pub fn calls_waiting(&self) -> usize {
        self.outgoing.len() + self.cancelled.len()
    }

    /// The export table.
    pub fn exports(&self) -> &ExportTable<O> {
        &self.exports
    }

    /// The import table.
    pub fn imports(&self) -> &ImportTable {
        &self.imports
    }

    /// Records one send of an object.
    pub fn export(
        &mut self,
        key: ExportKey,
        make: impl FnOnce() -> O,
    ) -> Result<ObjectId, TableError> {
        self.exports.export(key, make)
    }

    /// Takes back one send of `id` that never left (its message was not
    /// sent). Returns the object if that was its last send.
    pub fn undo_export(&mut self, id: ObjectId) -> Result<Option<O>, TableError> {
        self.exports.release(id, 1)
    }

    /// Registers an outgoing call, returning its id.
    pub fn start_call(&mut self, waiter: W) -> Result<CallId, crate::Error> {
        if self.phase == Phase::Closed {
            return Err(crate::Error::ConnectionLost("connection is closed".into()));
        }
        if self.calls_waiting() >= self.limits.max_outgoing_calls {
            return Err(crate::Error::limit(
                "max_outgoing_calls",
                self.limits.max_outgoing_calls as u64,
                "too many calls waiting for replies on this connection",
            ));
        }
        loop {
            let id = CallId(self.next_call);
            self.next_call = self.next_call.wrapping_add(1);
            if self.cancelled.contains_key(&id) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = self.outgoing.entry(id) {
                slot.insert(waiter);
                return Ok(id);
            }
        }
    }

    /// Sets the next call id to try (tests of id reuse).
    #[cfg(test)]
    pub(crate) fn set_next_call_id(&mut self, id: u32) {
        self.next_call = id;
    }

    /// Forgets an outgoing call's waiter (cancelled or timed out). `sent`
    /// says whether its call frame went out: if so, the id stays reserved
    /// until the peer's one reply to it arrives (PROTOCOL.md §3.6), and
    /// that reply is dropped. Returns `true` if the call was still waiting
    /// and was sent, so a cancel frame should be sent.
    pub fn cancel_call(&mut self, id: CallId, sent: bool) -> bool {
        if self.outgoing.remove(&id).is_none() {
            return false;
        }
        if sent && self.phase != Phase::Closed {
            self.cancelled.insert(id, ());
        }
        sent
    }

    /// The reply to incoming call `id` (running as `seq`) is about to be
    /// sent: from now on the peer may reuse the id. Returns `false` if the
    /// call was cancelled (already answered with `cancelled`) or answered:
    /// the reply must then not be sent.
    pub fn answered(&mut self, id: CallId, seq: u64) -> bool {
        // Not generic: compiled once here, not in every crate whose
        // generated code replies to a call.
        fn forget(incoming: &mut super::IdMap<CallId, u64>, id: CallId, seq: u64) -> bool {
            if incoming.get(&id) == Some(&seq) {
                incoming.remove(&id);
                true
            } else {
                false
            }
        }
        forget(&mut self.incoming, id, seq)
    }

    /// An incoming call's handler has stopped (finished or aborted).
    pub fn call_done(&mut self, id: CallId, seq: u64) {
        let _ = self.answered(id, seq);
        self.running = self.running.saturating_sub(1);
    }

    /// Handles a queued release of an import; returns the release frame.
    pub fn import_released(
        &mut self,
        id: ObjectId,
        generation: u64,
        count: u32,
    ) -> Option<Vec<u8>> {
        if self.phase == Phase::Closed {
            return None;
        }
        self.imports.released(id, generation);
        Some(super::encode::release(id, count))
    }

    /// Closes: fails nothing itself, but returns every waiter (to fail) and
    /// every exported object (to drop after releasing locks).
    pub fn close(&mut self) -> (Vec<W>, Vec<O>) {
        self.phase = Phase::Closed;
        self.imports.clear();
        self.incoming.clear();
        self.cancelled.clear();
        self.running = 0;
        let waiters = self.outgoing.drain().map(|(_, w)| w).collect();
        (waiters, self.exports.drain())
    }

    /// Resolves the references found in a message, in message order: imports
    /// are counted, and our own objects handed back are held, so a release
    /// processed before the value is decoded cannot free them.
    #[allow(clippy::type_complexity)]
    fn take_refs(&mut self) -> Result<(Vec<ImportRef>, Vec<(ObjectId, O)>), RefError> {
        let found = std::mem::take(&mut self.scratch);
        let mut refs = Vec::new();
        let mut owns = Vec::new();
        let mut first_error = None;
        // Every reference of the sender's is counted even after an error:
        // the sender counted each send, and dropping `refs` releases them.
        for &(sender_export, id) in &found {
            if sender_export {
                if id == ObjectId::ROOT {
                    first_error.get_or_insert(RefError::Violation(Violation(
                        "a reference (ext type 1) to object 0: the root is never sent as a reference".into(),
                    )));
                    continue;
                }
                match self.imports.receive(id) {
                    Ok(r) => refs.push(r),
                    Err(e) => {
                        // Too many imports is connection-level, whatever the message.
                        first_error = Some(RefError::Violation(Violation(e.to_string())));
                    }
                }
            } else {
                match self.exports.get(id) {
                    Some(o) => owns.push((id, o.clone())),
                    None => {
                        first_error.get_or_insert(RefError::UnknownOwn(format!(
                            "reference to unknown object id {id} of ours"
                        )));
                    }
                }
            }
        }
        self.scratch = found;
        self.scratch.clear();
        // One hold per distinct object, sorted by id, so decoding looks each
        // reference up in O(log n): the counts live in the holds, so
        // duplicates add nothing.
        sort_dedup(&mut refs, |r| r.id());
        sort_dedup(&mut owns, |(id, _)| *id);
        match first_error {
            Some(e) => Err(e),
            None => Ok((refs, owns)),
        }
    }

    /// Processes one frame from the peer.
    pub fn handle_frame<'a>(&mut self, frame: &'a [u8]) -> Result<Event<'a, O, W>, Violation> {
        if self.phase == Phase::Closed {
            return Ok(Event::Nothing);
        }
        self.scratch.clear();
        let mut scratch = std::mem::take(&mut self.scratch);
        let parsed = Message::parse(frame, &self.limits, &mut scratch);
        self.scratch = scratch;
        let msg = parsed?;
        if self.phase == Phase::AwaitingHello {
            let Message::Hello(h) = msg else {
                return Err(Violation(
                    "expected a handshake (message kind 0) first".into(),
                ));
            };
            let version = h.max_version.min(PROTOCOL_VERSION);
            if version < h.min_version.max(PROTOCOL_VERSION) {
                return Err(Violation(format!(
                    "no common protocol version: peer speaks {}..={}, we speak {PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                    h.min_version, h.max_version
                )));
            }
            self.phase = Phase::Open(version);
            // Unknown names are ignored; the enabled set is the intersection.
            let known = [super::ping::FEATURE, super::invalidate::FEATURE];
            let mut features: Vec<String> = Vec::new();
            for f in known {
                if h.features.contains(&f) {
                    features.push(f.to_owned());
                }
            }
            self.keepalive = features.iter().any(|f| f == super::ping::FEATURE);
            self.invalidate = features.iter().any(|f| f == super::invalidate::FEATURE);
            return Ok(Event::Opened {
                version,
                auth: h.auth,
                features,
            });
        }
        match msg {
            Message::Hello(_) => Err(Violation("handshake sent twice".into())),
            Message::Call {
                id,
                target,
                method,
                timeout_ms,
                args,
            } => {
                if self.incoming.contains_key(&id) {
                    return Err(Violation(format!("call id {id} is already in flight")));
                }
                let (refs, owns) = match self.take_refs() {
                    Ok(r) => r,
                    Err(RefError::UnknownOwn(m)) => {
                        return Ok(Event::Reject {
                            frame: reject(id, "unknown_object", m, &self.limits),
                            kind: "unknown_object",
                        })
                    }
                    Err(RefError::Violation(v)) => return Err(v),
                };
                if self.running >= self.limits.max_calls_in_flight {
                    let msg = format!(
                        "limit exceeded: max_calls_in_flight = {} (call {id} refused)",
                        self.limits.max_calls_in_flight
                    );
                    return Ok(Event::Reject {
                        frame: reject(id, "limit_exceeded", msg, &self.limits),
                        kind: "limit_exceeded",
                    });
                }
                let Some(obj) = self.exports.get(target).cloned() else {
                    let msg = format!("no object with id {target} on this connection");
                    return Ok(Event::Reject {
                        frame: reject(id, "unknown_object", msg, &self.limits),
                        kind: "unknown_object",
                    });
                };
                let cap = u32::try_from(self.limits.max_deadline.as_millis()).unwrap_or(u32::MAX);
                let seq = self.next_seq;
                self.next_seq += 1;
                self.incoming.insert(id, seq);
                self.running += 1;
                Ok(Event::Call {
                    id,
                    seq,
                    target: obj,
                    object: target,
                    method,
                    timeout_ms: timeout_ms.min(cap),
                    args,
                    refs,
                    owns,
                })
            }
            Message::Return { id, value } => {
                let (refs, owns) = self.take_refs()?;
                match self.outgoing.remove(&id) {
                    Some(waiter) => Ok(Event::Reply {
                        waiter,
                        result: Ok(value),
                        refs,
                        owns,
                    }),
                    None => {
                        // The one reply to a call we cancelled: its id is
                        // free again. (`refs` are released when dropped.)
                        self.cancelled.remove(&id);
                        Ok(Event::Nothing)
                    }
                }
            }
            Message::Error { id, error } => {
                let (refs, owns) = self.take_refs()?;
                let Some(waiter) = self.outgoing.remove(&id) else {
                    self.cancelled.remove(&id);
                    return Ok(Event::Nothing);
                };
                let e = RemoteError {
                    kind: error.kind.into_owned(),
                    type_name: error.type_name.into_owned(),
                    message: error.message.into_owned(),
                    chain: error.chain.into_iter().map(|s| s.into_owned()).collect(),
                    backtrace: error.backtrace.map(|s| s.into_owned()),
                    data: error.data.map(|r| frame[r].to_vec()),
                };
                Ok(Event::Reply {
                    waiter,
                    result: Err(e),
                    refs,
                    owns,
                })
            }
            Message::Release { id, count } => {
                let obj = self
                    .exports
                    .release(id, count)
                    .map_err(|e| Violation(e.to_string()))?;
                Ok(Event::Released(obj))
            }
            Message::Cancel { id } => {
                if let Some(seq) = self.incoming.remove(&id) {
                    let reply = reject(
                        id,
                        "cancelled",
                        format!("call {id} was cancelled by the caller"),
                        &self.limits,
                    );
                    Ok(Event::Cancel { seq, reply })
                } else {
                    Ok(Event::Nothing)
                }
            }
            Message::Goodbye { reason } => {
                self.phase = Phase::Closed;
                Ok(Event::Goodbye(reason.into_owned()))
            }
            Message::Ping { token } if self.keepalive => Ok(Event::Ping(token)),
            Message::Pong { token } if self.keepalive => Ok(Event::Pong(token)),
            Message::Ping { .. } | Message::Pong { .. } => Err(Violation(
                "keepalive message (kind 7 or 8) without the negotiated keepalive feature".into(),
            )),
            Message::Invalidate {
                token,
                object,
                methods,
            } if self.invalidate => Ok(Event::Invalidate {
                token,
                object,
                methods,
            }),
            Message::Invalidated { token } if self.invalidate => Ok(Event::Invalidated(token)),
            Message::Invalidate { .. } | Message::Invalidated { .. } => Err(Violation(
                "invalidation message (kind 10 or 11) without the negotiated invalidate feature"
                    .into(),
            )),
        }
    }
}
