//! The protocol as a sans-IO state machine.
//!
//! Nothing in this module touches a socket, a clock or a runtime: frames come
//! in as bytes, and what to send or do comes out as values. The async
//! `driver` module is a thin loop around it. See `PROTOCOL.md` for
//! the wire format.

mod clock;
mod count_pool;
mod frame;
mod invalidate;
mod msg;
mod ping;
mod pipeline;
mod state;
mod tables;
mod value;
mod walk;

#[cfg(test)]
mod cancel_tests;
#[cfg(test)]
mod invalidate_tests;
#[cfg(test)]
mod tests;

pub(crate) use clock::later;
pub use count_pool::{CountPool, PoolShare, RESERVED_EXPORTS, RESERVED_KEPT_ANSWERS};
pub use frame::{FrameCodec, FrameError};
pub use invalidate::{
    ack as encode_invalidated, invalidate as encode_invalidate, FEATURE as FEATURE_INVALIDATE,
    MAX_INVALIDATE_METHODS,
};
pub use msg::{encode, Hello, Message, WireError, PROTOCOL_MAGIC, PROTOCOL_VERSION};
pub(crate) use msg::{is_call, kind_of};
pub use ping::{
    ping as encode_ping, pong as encode_pong, Keepalive, KeepaliveAction,
    FEATURE as FEATURE_KEEPALIVE,
};
pub(crate) use pipeline::finish_inline;
pub use pipeline::{
    call_head as encode_pipelined_call_head, finish as encode_finish, CallTarget,
    FEATURE as FEATURE_PIPELINE,
};
pub use state::{Event, Phase, State, Violation};
pub(crate) use tables::ExportIndex;
pub use tables::{
    ExportKey, ExportTable, ImportInner, ImportRef, ImportRefs, ImportTable, ReleaseSink,
    TableError, GIVE_BACK_AT,
};
pub use value::{walk, FoundRef, Malformed, Reader, TOO_DEEP};
pub(crate) use walk::ArgsWalk;

/// Message kind codes (first element of every message array).
pub mod kind {
    /// Handshake.
    pub const HELLO: u8 = 0;
    /// Call a method.
    pub const CALL: u8 = 1;
    /// A call's result.
    pub const RETURN: u8 = 2;
    /// A call's error.
    pub const ERROR: u8 = 3;
    /// Release references.
    pub const RELEASE: u8 = 4;
    /// Cancel a call.
    pub const CANCEL: u8 = 5;
    /// Closing the connection.
    pub const GOODBYE: u8 = 6;
    /// Keepalive ping (only with the negotiated `keepalive` feature).
    pub const PING: u8 = 7;
    /// Answer to a ping, echoing its token.
    pub const PONG: u8 = 8;
    // 9 is the authentication exchange's proof (`auth::proto`), never
    // parsed here.
    /// Drop cached results of an object's methods (only with the
    /// negotiated `invalidate` feature).
    pub const INVALIDATE: u8 = 10;
    /// Acknowledges every invalidation up to a token.
    pub const INVALIDATED: u8 = 11;
    /// A call whose answer the receiver keeps for pipelined calls until
    /// the caller's finish (only with the negotiated `pipeline` feature).
    pub const KEPT_CALL: u8 = 12;
    /// The caller no longer needs a kept answer.
    pub const FINISH: u8 = 13;
}

/// msgpack extension type of a reference into the sender's export table.
pub const EXT_SENDER_EXPORT: i8 = 1;
/// msgpack extension type of a reference into the receiver's export table.
pub const EXT_RECEIVER_OWN: i8 = 2;

/// Index into one peer's export table. `0` is the connection's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub u32);

impl ObjectId {
    /// The root object every connection starts with.
    pub const ROOT: ObjectId = ObjectId(0);

    /// The highest id, which names no object (PROTOCOL.md §4): never
    /// exported, and a reference (ext type 1) to it is a violation. This
    /// side uses it in-band for "no object yet" (a promise proxy not yet
    /// resolved has it as its id), so a peer that could hand out an
    /// object with this id would make it one its holder can never send
    /// back (found by a red-team pass).
    pub const RESERVED: ObjectId = ObjectId(u32::MAX);
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies a call among the caller's calls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u32);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A fast hasher for maps keyed by ids this side allocates: no SipHash on
/// the hot path. Not for ids a peer chooses: a fixed multiplicative hash
/// puts ids equal in their low bits in one probe chain ([`PeerIdMap`]).
/// The import table, keyed by the peer's object ids, is a `BTreeMap`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map with [`IdHasher`].
pub(crate) type IdMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A map keyed by ids the peer chooses (its calls in flight, its kept
/// answers): `foldhash`, a few instructions per id, seeded at random per
/// map so the peer cannot pick ids that collide, whatever
/// `max_calls_in_flight` allows. Its `quality` variant: `fast` takes a
/// hash's low bits (the bucket) from one multiply by the seed, and under
/// some process-wide seeds (about one in ten) ids equal in their low 16
/// bits fell in a few buckets; `quality` folds once more (one multiply).
pub(crate) type PeerIdMap<K, V> = std::collections::HashMap<K, V, PeerIdHash>;

/// The hasher of [`PeerIdMap`]: random by default, seedable for tests.
pub(crate) type PeerIdHash = foldhash::quality::SeedableRandomState;
