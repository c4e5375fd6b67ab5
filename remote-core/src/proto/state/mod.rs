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

mod answers;
mod calls;
mod event;
mod incoming;
mod refs;

use std::sync::Arc;

use super::count_pool::{CountPool, PoolShare};
use super::msg::{Hello, PROTOCOL_VERSION};
use super::tables::{ExportTable, ImportTable, ReleaseSink};
use super::{CallId, ObjectId};
use crate::Limits;

pub use event::Event;

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
    incoming: super::PeerIdMap<CallId, u64>,
    /// Handlers counted in flight (live, or cancelled/answered but not yet
    /// stopped).
    running: usize,
    /// Handlers whose own reply is out but which have not stopped yet
    /// (`calls.rs`, [`State::replied`]): not in `running`, as the peer
    /// may send its next call on seeing the reply, but counted against
    /// twice `max_calls_in_flight`.
    replied: Vec<u64>,
    next_seq: u64,
    scratch: Vec<(bool, ObjectId)>,
    /// Both hellos listed the `keepalive` feature.
    keepalive: bool,
    /// Both hellos listed the `invalidate` feature.
    invalidate: bool,
    /// Both hellos listed the `pipeline` feature.
    pipeline: bool,
    /// Answers kept for the peer's kept-answer calls until its finish
    /// (`answers.rs`); `None` until the driver sets the answer's object.
    answers: answers::KeptAnswers<O>,
}

impl<O: Clone, W> State<O, W> {
    /// Serves `root` as object 0 from now on (set before any call is read).
    pub fn set_root(&mut self, root: O) {
        self.exports.set_root(root);
    }

    /// Counts this connection's exports in `pool` (its share of a
    /// server's pool) instead of counting them nowhere but here; set
    /// before anything is exported.
    pub fn set_export_pool(&mut self, pool: PoolShare) {
        self.exports.set_pool(pool);
    }

    /// Tells `holders` of every object this connection exports, now and
    /// from now on (`None`: no longer).
    pub(crate) fn set_export_holders(&mut self, holders: Option<Arc<dyn super::ExportIndex>>) {
        self.exports.set_holders(holders);
    }

    /// A new connection serving `root` as object 0.
    pub fn new(root: Option<O>, limits: Limits, sink: Arc<dyn ReleaseSink>) -> Self {
        State {
            phase: Phase::AwaitingHello,
            exports: ExportTable::new(root, limits.max_exports, CountPool::unbounded().share(None)),
            imports: ImportTable::new(sink, limits.max_imports),
            limits,
            outgoing: super::IdMap::default(),
            cancelled: super::IdMap::default(),
            next_call: 0,
            incoming: super::PeerIdMap::default(),
            running: 0,
            replied: Vec::new(),
            next_seq: 0,
            scratch: Vec::new(),
            keepalive: false,
            invalidate: false,
            pipeline: false,
            answers: answers::KeptAnswers::new(),
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
    /// invalidations) and the `pipeline` feature (it keeps answers and
    /// serves calls to them).
    pub fn hello<'a>(auth: Option<&'a [u8]>) -> Hello<'a> {
        Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            features: vec![
                super::ping::FEATURE,
                super::invalidate::FEATURE,
                super::pipeline::FEATURE,
            ],
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

    /// Closes: fails nothing itself, but returns every waiter (to fail) and
    /// every exported object (to drop after releasing locks).
    pub fn close(&mut self) -> (Vec<W>, Vec<O>) {
        self.phase = Phase::Closed;
        self.imports.clear();
        self.incoming.clear();
        self.cancelled.clear();
        self.running = 0;
        self.replied = Vec::new();
        let waiters = self.outgoing.drain().map(|(_, w)| w).collect();
        let mut objects = self.exports.drain();
        objects.extend(self.answers.drain());
        (waiters, objects)
    }
}
