//! Encoding values in the context of a connection.
//!
//! References (`Remote<T>`) need the connection's object tables while serde
//! runs. The runtime sets a thread-local context around every encode and
//! decode it performs; serde code never awaits, so the context cannot leak
//! across tasks.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::driver::{Held, Shared};
use crate::interface::Interface;
use crate::proto::ObjectId;
use crate::Error;

mod capped;
mod check;
mod conn_cx;
pub(crate) mod dispatch_stack;
mod ref_wire;
mod shared_bytes;
pub(crate) mod stack;
pub(crate) mod weigh;
mod work;

use capped::Capped;
use check::{check_carried, check_depth};

pub(crate) use ref_wire::{deserialize_ref, serialize_ref, RefTag};
pub(crate) use shared_bytes::{decode_bytes, lending, Top, WireSlot};

/// What [`export`] counted, or the error it failed with, during the
/// innermost [`encode_into`] on this thread.
#[derive(Default)]
struct EncodeOut {
    /// Sends counted by this encode, to undo if the message is never sent.
    exported: Vec<ObjectId>,
    /// The runtime's own error behind a serde failure (e.g. `max_exports`),
    /// surfaced instead of serde's text.
    error: Option<Error>,
}

/// References counted while encoding one message. If the message is not
/// sent after all, [`Exported::undo`] gives the counts back.
#[derive(Debug, Default)]
#[must_use = "undo the exports if the message is not sent"]
pub(crate) struct Exported(Vec<ObjectId>);

/// An [`Exported`] list gives its allocation back here when dropped, and
/// the next encode that exports takes it: a message carrying references
/// does not allocate a list of its own each time.
const SPARE_IDS_MAX: usize = 64;

thread_local! {
    static SPARE_IDS: Cell<Vec<ObjectId>> = const { Cell::new(Vec::new()) };
}

impl Drop for Exported {
    fn drop(&mut self) {
        // Most messages export nothing and never allocated a list.
        if self.0.capacity() > 0 && self.0.capacity() <= SPARE_IDS_MAX {
            let mut ids = std::mem::take(&mut self.0);
            ids.clear();
            // `try_with`: a thread being torn down has no spare to keep.
            let _ = SPARE_IDS.try_with(|s| s.set(ids));
        }
    }
}

impl Exported {
    /// Whether encoding exported no object.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message carrying these exports is about to be queued: the peer
    /// may call, name and release them from now on, not before (an object
    /// of a message that is refused after its encode is never reachable).
    /// Made before the message is queued, so a peer answering it at once
    /// finds them.
    pub(crate) fn publish(&self, conn: &Shared) {
        if !self.0.is_empty() {
            conn.exports_sent(&self.0);
        }
    }

    /// The message was not sent: release what its encoding counted.
    pub(crate) fn undo(self, conn: &Shared) {
        if !self.0.is_empty() {
            conn.unexport(&self.0);
        }
    }
}

struct DecodeCx {
    conn: Arc<Shared>,
    held: Held,
}

/// Which decode context is set on this thread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decoding {
    /// None: a reference cannot be received here.
    Outside,
    /// A message that carries no reference: every reference in the value
    /// is unregistered (the walk found none).
    NothingHeld,
    /// [`DECODE`] holds the connection and the message's references.
    Held,
}

// The hot path (a value without references) touches only `Cell`s, which
// cost a load or a store each; the `RefCell`s are used only when a
// reference is sent or received.
thread_local! {
    /// Whether [`ENCODE_OUT`] holds anything for the current encode.
    static ENCODE_DIRTY: Cell<bool> = const { Cell::new(false) };
    static ENCODE_OUT: RefCell<EncodeOut> = RefCell::new(EncodeOut::default());
    static DECODING: Cell<Decoding> = const { Cell::new(Decoding::Outside) };
    static DECODE: RefCell<Option<DecodeCx>> = const { RefCell::new(None) };
    /// Set while [`encoded_len`] runs: references are sized, not exported.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// Restores the previous context on drop (also on panic inside serde code).
struct Restore<'a, T: 'static>(
    &'static std::thread::LocalKey<RefCell<Option<T>>>,
    Option<T>,
    std::marker::PhantomData<&'a ()>,
);

impl<T: 'static> Drop for Restore<'_, T> {
    fn drop(&mut self) {
        let prev = self.1.take();
        self.0.with(|c| *c.borrow_mut() = prev);
    }
}

/// Restores the previous [`Decoding`] on drop.
struct RestoreDecoding(Decoding);

impl Drop for RestoreDecoding {
    fn drop(&mut self) {
        DECODING.with(|d| d.set(self.0));
    }
}

/// The serializer every message is encoded with: msgpack, structs as maps.
pub(crate) type Ser<'a> = rmp_serde::Serializer<
    Capped<'a>,
    rmp_serde::config::StructMapConfig<rmp_serde::config::DefaultConfig>,
>;

/// A value that encodes with [`Ser`]: `&dyn Encode` lets the encode path
/// be compiled once, in this crate, whatever the value's type (only
/// `Serialize::serialize` itself is instantiated per type).
pub(crate) trait Encode {
    /// `self.serialize(ser)`.
    fn encode(&self, ser: &mut Ser<'_>) -> Result<(), rmp_serde::encode::Error>;
}

impl<T: Serialize> Encode for T {
    fn encode(&self, ser: &mut Ser<'_>) -> Result<(), rmp_serde::encode::Error> {
        self.serialize(ser)
    }
}

/// Serializes `value` (msgpack) onto `buf` with `conn` as the reference
/// context. A value nested deeper than the connection's `max_depth` is
/// refused here (`limit_exceeded`), as the peer would refuse it.
pub(crate) fn encode_into(
    conn: &Arc<Shared>,
    value: &dyn Encode,
    buf: &mut Vec<u8>,
    what: &'static str,
) -> Result<Exported, Error> {
    let start = buf.len();
    // Past the frame limit the frame is refused anyway.
    let max = conn.limits.max_frame_len;
    let cap = start.saturating_add(max).saturating_add(1);
    let (r, over, exported, error) = conn_cx::enter(conn, || {
        let mut scope = EncodeScope::enter();
        // Structs as maps keyed by field name: self-describing for clients
        // in other languages, and tolerant of added optional fields.
        let mut ser: Ser<'_> =
            rmp_serde::Serializer::new(Capped::new(&mut *buf, cap)).with_struct_map();
        let r = stack::Session::run(|_| value.encode(&mut ser));
        let over = ser.get_ref().over;
        let (exported, error) = scope.finish();
        (r, over, exported, error)
    });
    let exported = Exported(exported);
    // A refused write ends the encode, even if a `Serialize` impl went on
    // after its error: what was written is not the value.
    let r = match r {
        _ if over => Err(Error::limit(
            "max_frame_len",
            max as u64,
            format!("{what} of more than {max} bytes"),
        )),
        Ok(()) if exported.is_empty() => check_depth(&buf[start..], conn.limits.max_depth, what),
        Ok(()) => check_carried(&buf[start..], conn.limits.max_depth, &exported.0, what),
        Err(e) => Err(error.unwrap_or_else(|| Error::Encode {
            what,
            message: e.to_string(),
        })),
    };
    match r {
        Ok(()) => Ok(exported),
        Err(e) => {
            exported.undo(conn);
            Err(e)
        }
    }
}

/// One [`encode_into`]'s exports: in `finish` (or on drop after a panic)
/// restores the enclosing encode's, taking what this encode's counted.
struct EncodeScope {
    /// The exports an enclosing (or suspended) encode counted so far, set
    /// aside while this one runs (only when encodes nest).
    outer: Option<EncodeOut>,
    done: bool,
}

impl EncodeScope {
    #[inline]
    fn enter() -> Self {
        // Encodes rarely nest; when they do, the enclosing one's exports
        // wait here so this one's are counted apart. Also when the
        // enclosing one is suspended (an encode made from inside an
        // `export` or an `encode_detached`): its exports are not this
        // one's either.
        let outer = if ENCODE_DIRTY.with(|d| d.replace(false)) {
            Some(ENCODE_OUT.with(|o| std::mem::take(&mut *o.borrow_mut())))
        } else {
            None
        };
        EncodeScope { outer, done: false }
    }

    /// This encode's exports and error; the enclosing context is back.
    #[inline]
    fn finish(&mut self) -> (Vec<ObjectId>, Option<Error>) {
        self.done = true;
        let out = self.take_out();
        self.restore_outer();
        (out.exported, out.error)
    }

    #[inline]
    fn take_out(&self) -> EncodeOut {
        if ENCODE_DIRTY.with(|d| d.replace(false)) {
            ENCODE_OUT.with(|o| std::mem::take(&mut *o.borrow_mut()))
        } else {
            EncodeOut::default()
        }
    }

    fn restore_outer(&mut self) {
        if let Some(outer) = self.outer.take() {
            ENCODE_OUT.with(|o| *o.borrow_mut() = outer);
            ENCODE_DIRTY.with(|d| d.set(true));
        }
    }
}

impl Drop for EncodeScope {
    fn drop(&mut self) {
        if !self.done {
            // A panic in serde code: the message is never sent, so this
            // encode's sends are given back, on the connection it encodes
            // for (set until this scope's closure returns). They were kept
            // until the connection closed, neither callable nor releasable
            // by the peer (found by a red-team pass).
            let out = self.take_out();
            self.restore_outer();
            if !out.exported.is_empty() {
                if let Some(conn) = conn_cx::running() {
                    conn.unexport(&out.exported);
                }
            }
        }
    }
}

/// The deserializer every message is decoded with.
pub(crate) type De<'a> = rmp_serde::Deserializer<rmp_serde::decode::ReadRefReader<'a, [u8]>>;

/// Where a decoded value goes: `&mut dyn DecodeSlot` lets the decode path
/// be compiled once, in this crate, whatever the value's type.
pub(crate) trait DecodeSlot {
    /// Deserializes a value from `de` into `self`.
    fn decode_from(&mut self, de: &mut De<'_>) -> Result<(), rmp_serde::decode::Error>;
}

impl<T: DeserializeOwned> DecodeSlot for Option<T> {
    fn decode_from(&mut self, de: &mut De<'_>) -> Result<(), rmp_serde::decode::Error> {
        stack::Session::run(|session| {
            *self = Some(if weigh::active() {
                T::deserialize(weigh::weighing::<T, _>(de))?
            } else {
                T::deserialize(de)?
            });
            session.refused()
        })
    }
}

/// Deserializes `bytes` with `conn` and the message's pre-registered
/// imports ([`decode_into`] with a slot of its own).
#[cfg(test)]
pub(crate) fn decode_from<T: DeserializeOwned>(
    conn: &Arc<Shared>,
    bytes: &[u8],
    held: Held,
    what: &'static str,
) -> Result<T, Error> {
    let mut slot = None;
    decode_into(conn, bytes, held, what, &mut slot)?;
    decoded(slot, what)
}

/// The value a decode put in its slot, or the error if it put none.
#[inline]
pub(crate) fn decoded<T>(slot: Option<T>, what: &'static str) -> Result<T, Error> {
    slot.ok_or_else(|| Error::Decode {
        what,
        message: "no value decoded".into(),
    })
}

/// Deserializes `bytes` into `slot` (`Some` after `Ok`) with `conn` and
/// the message's pre-registered imports.
pub(crate) fn decode_into(
    conn: &Arc<Shared>,
    bytes: &[u8],
    held: Held,
    what: &'static str,
    slot: &mut dyn DecodeSlot,
) -> Result<(), Error> {
    let mut de: De<'_> = rmp_serde::Deserializer::from_read_ref(bytes);
    // Every field named: one added to `Held` must be thought about here.
    let Held { refs, owns } = &held;
    if refs.is_empty() && owns.is_empty() {
        // Nothing to look up: no connection needed.
        if !refs.spilled() && owns.capacity() == 0 {
            // Nothing to free either: skip the (out-of-line) drops of two
            // empty collections on every call.
            std::mem::forget(held);
        }
        return decode_nothing_held(&mut de, what, slot);
    }
    let prev = DECODE.with(|c| {
        c.borrow_mut().replace(DecodeCx {
            conn: conn.clone(),
            held,
        })
    });
    let _restore = Restore(&DECODE, prev, std::marker::PhantomData);
    let _restore_decoding = RestoreDecoding(DECODING.with(|d| d.replace(Decoding::Held)));
    slot.decode_from(&mut de)
        .map_err(|e| decode_error(what, &e))
}

/// [`decode_into`] for a message that holds no reference (nothing to
/// look up, so no connection needed): a reference in `bytes` is refused.
pub(crate) fn decode_plain_into(
    bytes: &[u8],
    what: &'static str,
    slot: &mut dyn DecodeSlot,
) -> Result<(), Error> {
    decode_nothing_held(
        &mut rmp_serde::Deserializer::from_read_ref(bytes),
        what,
        slot,
    )
}

/// Decodes into `slot` from a message that holds no reference.
fn decode_nothing_held(
    de: &mut De<'_>,
    what: &'static str,
    slot: &mut dyn DecodeSlot,
) -> Result<(), Error> {
    let _restore = RestoreDecoding(DECODING.with(|d| d.replace(Decoding::NothingHeld)));
    slot.decode_from(de).map_err(|e| decode_error(what, &e))
}

/// Encodes a value that may not contain references.
pub(crate) fn encode_detached<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let _suspended = conn_cx::suspend();
    stack::Session::run(|_| rmp_serde::to_vec_named(value)).map_err(|e| Error::Encode {
        what: "value",
        message: e.to_string(),
    })
}

/// [`encode_detached`] through `&dyn Encode` (cache keys): a value holding
/// a reference fails here, as there is no connection to export it on.
pub(crate) fn encode_detached_dyn(value: &dyn Encode) -> Result<Vec<u8>, Error> {
    let _suspended = conn_cx::suspend();
    let mut buf = Vec::new();
    let mut ser: Ser<'_> =
        rmp_serde::Serializer::new(Capped::new(&mut buf, usize::MAX)).with_struct_map();
    stack::Session::run(|_| value.encode(&mut ser)).map_err(|e| Error::Encode {
        what: "cache key",
        message: e.to_string(),
    })?;
    Ok(buf)
}

/// Decodes a value that may not contain references.
pub(crate) fn decode_detached<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let _restore = RestoreDecoding(DECODING.with(|d| d.replace(Decoding::Outside)));
    stack::Session::run(|session| {
        let mut de: De<'_> = rmp_serde::Deserializer::from_read_ref(bytes);
        // A typed error decoded from a reply's data is weighed as its value
        // would be (`driver::heavy_reply::decoded`).
        let v = if weigh::active() {
            T::deserialize(weigh::weighing::<T, _>(&mut de))?
        } else {
            T::deserialize(&mut de)?
        };
        session.refused().map(|()| v)
    })
    .map_err(|e| decode_error("value", &e))
}

/// Longest decode error message kept: serde quotes the offending value
/// (a peer's string, whole), and the message is sent back to the peer.
const MAX_DECODE_MESSAGE: usize = 4 * crate::bounded::QUOTE_MAX;

fn decode_error(what: &'static str, e: &rmp_serde::decode::Error) -> Error {
    let message = e.to_string();
    Error::Decode {
        what,
        message: crate::bounded::truncate(&message, MAX_DECODE_MESSAGE).into_owned(),
    }
}

/// The number of bytes [`encode_into`] would write for `value`, computed
/// without a connection and without allocating: a reference counts as its
/// fixed six bytes and nothing is exported. Lets a handler bound a reply by
/// its encoded size before building it (collection pages).
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    measure_into(value, &mut count)?;
    Ok(count.0)
}

/// What `value` weighs held decoded, as the memory budget weighs a call's
/// arguments: its encoded bytes and `DECODED_ITEM` per item of its arrays
/// and maps (an empty string is one byte on the wire and 24 in a `Vec`),
/// and what its types take beyond that, found by decoding a copy through
/// the weighing deserializer (`weigh::measured`). Counted by its encoded
/// bytes alone, a map's change log of values full of empty strings held
/// 24 times its bound (a red-team pass); by its items alone, one of
/// values of `nil`s as `Option<[u64; 32]>` held 84 MB against its 16 MiB
/// (red-team pass 48). A value whose copy cannot be decoded (it holds a
/// reference, not decoded outside a connection) counts each item at the
/// most its types may take (`weigh::densest_of`; counted at what was
/// weighed before the reference, one placed first hid the rest: a change
/// of 20,000 large items weighed 5 MB against 46 MB, a review).
pub(crate) fn held_weight<T: crate::Wire>(value: &T) -> Result<usize, Error> {
    let mut buf = Vec::new();
    measure_into(value, &mut buf)?;
    let mut r = crate::proto::Reader::new(&buf);
    r.skip_value(usize::MAX, &mut Vec::new())
        .map_err(|m| Error::Encode {
            what: "value",
            message: m.to_string(),
        })?;
    let items = u32::try_from(r.items()).unwrap_or(u32::MAX);
    let base = crate::driver::args_weight(buf.len(), items);
    let more = weigh::measured(|| {
        let _restore = RestoreDecoding(DECODING.with(|d| d.replace(Decoding::Outside)));
        stack::Session::run(|_| {
            let mut de: De<'_> = rmp_serde::Deserializer::from_read_ref(&buf);
            T::deserialize(weigh::weighing_wire::<T, _>(&mut de)).map(drop)
        })
    });
    let more = match more {
        Some((Ok(()), more)) => more,
        Some((Err(_), more)) => {
            let most = 2 * weigh::densest_of::<T>();
            let per_item = most.saturating_sub(crate::driver::DECODED_ITEM);
            more.max((items as usize).saturating_mul(per_item))
        }
        None => 0,
    };
    Ok(base.saturating_add(more))
}

/// Encodes `value` onto `w` as [`encode_into`] would, without a connection:
/// a reference is written as its fixed six bytes and nothing is exported.
fn measure_into<T: Serialize + ?Sized, W: std::io::Write>(value: &T, w: W) -> Result<(), Error> {
    struct Unmeasure(bool);
    impl Drop for Unmeasure {
        fn drop(&mut self) {
            MEASURING.with(|m| m.set(self.0));
        }
    }
    // Not a session: a measure is not a peer's value, and its callers
    // take a failure for "cannot be encoded".
    let _restore = Unmeasure(MEASURING.with(|m| m.replace(true)));
    let mut ser = rmp_serde::Serializer::new(w).with_struct_map();
    value.serialize(&mut ser).map_err(|e| Error::Encode {
        what: "value",
        message: e.to_string(),
    })
}

/// Registers `obj` for sending on the current encode connection.
pub(crate) fn export<T: ?Sized + Interface>(obj: &Arc<T>) -> Result<(RefTag, ObjectId), Error> {
    if MEASURING.with(Cell::get) {
        // Only sizing: a reference is six bytes whatever its id.
        return Ok((RefTag::SenderExport, ObjectId::ROOT));
    }
    // Suspended for the export and resumed (also on panic).
    let suspended = conn_cx::suspend();
    let Some(conn) = suspended.conn() else {
        return Err(Error::Encode {
            what: "remote reference",
            message: "a Remote<_> can only be sent as part of a remote call or reply".into(),
        });
    };
    if let Some(h) = T::handle(obj) {
        if Arc::ptr_eq(h.shared(), &conn) {
            if h.target_id() == ObjectId::RESERVED {
                return Err(Error::Encode {
                    what: "remote reference",
                    message: "a promise cannot be sent to the peer that will resolve it \
                              before its call returned; await `Promise::resolved` first"
                        .into(),
                });
            }
            // The peer's own object: hand it back by its id.
            return Ok((RefTag::ReceiverOwn, h.target_id()));
        }
    }
    let r = conn.export::<T>(obj);
    ENCODE_DIRTY.with(|d| d.set(true));
    ENCODE_OUT.with(|o| {
        let mut out = o.borrow_mut();
        match r {
            Ok(id) => {
                if out.exported.capacity() == 0 {
                    out.exported = SPARE_IDS.with(Cell::take);
                }
                out.exported.push(id);
                Ok((RefTag::SenderExport, id))
            }
            Err(e) => {
                // serde only carries text: keep the error itself.
                out.error.get_or_insert_with(|| e.clone());
                Err(e)
            }
        }
    })
}

#[cfg(test)]
thread_local! {
    /// Comparisons made by [`lookup`] on this thread (tests count them).
    pub(crate) static LOOKUP_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Finds `id` in `held`, which the state machine sorted by id with one
/// entry per object: O(log n) per reference, so decoding a message is
/// O(n log n) in its references, not O(n²).
fn lookup<T>(held: &[T], id: ObjectId, key: impl Fn(&T) -> ObjectId) -> Option<&T> {
    held.binary_search_by(|x| {
        #[cfg(test)]
        LOOKUP_STEPS.with(|c| c.set(c.get() + 1));
        key(x).cmp(&id)
    })
    .ok()
    .map(|i| &held[i])
}

/// Why a reference cannot be decoded outside a call or reply.
const OUTSIDE: &str = "a Remote<_> can only be received in a remote call or reply";

/// Resolves a reference to the sender's export (we hold a proxy).
pub(crate) fn import<T: ?Sized + Interface>(id: ObjectId) -> Result<Arc<T>, String> {
    match DECODING.with(Cell::get) {
        Decoding::Outside => return Err(OUTSIDE.into()),
        Decoding::NothingHeld => {
            return Err(format!("reference to object {id} was not registered"))
        }
        Decoding::Held => {}
    }
    DECODE.with(|c| {
        let c = c.borrow();
        let cx = c.as_ref().ok_or(OUTSIDE)?;
        let r = lookup(&cx.held.refs, id, |r| r.id())
            .ok_or_else(|| format!("reference to object {id} was not registered"))?;
        Ok(T::proxy(crate::Handle::imported(
            cx.conn.clone(),
            r.clone(),
        )))
    })
}

/// Resolves a reference to one of our own exports handed back.
pub(crate) fn own<T: ?Sized + Interface>(id: ObjectId) -> Result<Arc<T>, String> {
    match DECODING.with(Cell::get) {
        Decoding::Outside => return Err(OUTSIDE.into()),
        Decoding::NothingHeld => {
            return Err(format!("reference to our object {id} was not registered"))
        }
        Decoding::Held => {}
    }
    DECODE.with(|c| {
        let c = c.borrow();
        let cx = c.as_ref().ok_or(OUTSIDE)?;
        // Resolved when the message arrived (a release processed since then
        // cannot have freed it).
        let d = lookup(&cx.held.owns, id, |(i, _)| *i)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| format!("reference to our object {id} was not registered"))?;
        T::from_dispatch(&d).ok_or_else(|| {
            format!(
                "object {id} is a {}, not a {}",
                d.interface_name(),
                T::name()
            )
        })
    })
}

#[cfg(test)]
mod tests;
