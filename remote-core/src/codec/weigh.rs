//! Weighing a call's arguments by their Rust types as they decode.
//!
//! The memory budget counts a call's arguments at their frame's bytes and
//! `DECODED_ITEM` per item (`driver/share.rs`). An item of one byte on the
//! wire can decode to far more: a `nil` as an `Option<[u64; 32]>` takes
//! 264 bytes in a `Vec`, a unit variant the size of its whole enum. Counted
//! so, a few connections' calls held 513 MiB against a 64 MiB budget
//! (red-team pass 35).
//!
//! A dispatch runs in [`weighed`]: the deserializer is wrapped so that
//! each element of a collection (what `deserialize_seq` and
//! `deserialize_map` build: `Vec`, maps, sets) weighs twice the size of its
//! type (a `Vec` holds up to twice its length while it grows), and what an
//! element weighs beyond the `DECODED_ITEM` its item was counted at is
//! taken from the budget as the decode goes. Elements of types that weigh
//! no more (strings, numbers, small structs) cost nothing here: the test
//! is on a constant. A decode the budget has no room for
//! stops with an error, before it allocates more. Inline values (tuples,
//! structs, arrays, options) are inside their parent's size already.
//!
//! Two things are not decoded through the wrapper's collections (red-team
//! pass 36), and are weighed otherwise:
//! - A box. Each deserializer knows the size of the place its value goes
//!   to (its seed's type); a value asked of it that is larger is put in a
//!   box (`Box<T>`, `Arc<T>`), and weighs its size. A `nil` in a
//!   `Box<Option<[u64; 32]>>` allocates 264 bytes.
//! - What serde builds from its own buffer (`Content`: untagged and
//!   internally tagged enums, flattened fields): the types built from the
//!   buffer are not decoded here at all. Each node of the buffer weighs
//!   twice the most bytes per item of the types the value decoded may hold
//!   (an element, or a box, spread over the fewest items it decodes from:
//!   [`SchemaBuilder::densest`]). `#[derive(Wire)]` says which type is
//!   decoded ([`Buffered`]), or else the whole call's type does. A
//!   buffered type nested in another decodes from a copy of its part of
//!   the buffer, held while it decodes: it weighs the whole buffer (the
//!   copy is out of sight), as long as it decodes. serde tries an untagged
//!   enum's variants in turn; the tries of nested such types multiply, and
//!   are capped per node of the buffer, their nesting is capped, and the
//!   CPU time their copies take is bounded (`work.rs`).

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::mem::size_of;
use std::sync::{Arc, OnceLock};

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;

use crate::driver::{Budget, Shared};
use crate::schema::SchemaBuilder;
use crate::Wire;

/// Taken from the budget at least this much at a time.
const CHUNK: usize = 16 << 10;

mod measure;
mod refusal;
mod wrapper;

pub(crate) use measure::measured;
use measure::measuring;
pub(crate) use refusal::{refusal, refusal_limit, refusal_text, refusal_value};
use wrapper::wrap;
pub(crate) use wrapper::Weighed;

/// What a call's decode takes from the budget whether or not it has room,
/// as the reader always reads a frame this long: a call of a few large
/// elements is not refused because a heavy call waits in line for room
/// (red-team pass 36).
const ALWAYS: usize = crate::driver::SMALL_FRAME;

scoped_tls::scoped_thread_local! {
    /// The connection of the dispatch running on this thread, whose budget
    /// its arguments' decode takes room from (lent, no count taken).
    static CONN: Arc<Shared>
}

/// [`densest_of`] of the type being decoded, if known.
type Densest = Option<fn() -> usize>;

/// The running dispatch's weighing, on its thread.
struct State {
    /// What its decode may still take without asking the budget (the rest
    /// of a chunk taken, or what its caller counted for it already).
    free: Cell<usize>,
    /// What its decode takes whatever the budget's room ([`ALWAYS`] for a
    /// call's arguments; nothing for a reply, [`weighed_reply`]).
    floor: Cell<usize>,
    /// What the decode would have held where the budget had no room for
    /// more ([`Taken::wanted`]).
    short: Cell<usize>,
    /// What it took from the budget.
    granted: Cell<usize>,
    /// Why its decode was stopped, if it was.
    stop: Cell<Option<Stop>>,
    /// The most bytes per item what serde builds from its own buffer may
    /// take ([`densest_of`] of the type being decoded), if known; see
    /// [`Buffered`].
    densest: Cell<Densest>,
    /// Nodes of serde's buffer decoded here, and how deep in buffers the
    /// decode is.
    nodes: Cell<usize>,
    depth: Cell<usize>,
    /// `nodes` as the innermost buffered decode from the wire under way
    /// began (the buffers decodes from serde's buffer copy from), and the
    /// size of a node.
    top: Cell<usize>,
    node_size: Cell<usize>,
    /// Decodes of `#[derive(Wire)]` types that serde decodes through its
    /// buffer ([`Buffered::of`]) from its buffer: the tries of nested
    /// values.
    attempts: Cell<usize>,
    /// Such decodes under way, weighed or not (each guard gives its own
    /// back); and, not weighed, whether one was nested too deep (all fail
    /// until the outermost ends).
    open: Cell<usize>,
    too_deep: Cell<bool>,
    /// The bytes of those copies, at most (each at most the buffer), and
    /// the most they came to, taken from the budget.
    copies: Cell<usize>,
    copies_peak: Cell<usize>,
}

/// Why a weighed decode was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The budget had no room for what it decodes to.
    Budget,
    /// It tried buffered types more than `ATTEMPTS_PER_NODE` times a node.
    Tries,
    /// Its buffered decodes nested more than `MAX_NESTED` deep.
    Nesting,
    /// Their nested tries took too much CPU time (`work.rs`).
    Time,
}

thread_local! {
    static STATE: State = const {
        State {
            free: Cell::new(0),
            floor: Cell::new(ALWAYS),
            short: Cell::new(0),
            granted: Cell::new(0),
            stop: Cell::new(None),
            densest: Cell::new(None),
            nodes: Cell::new(0),
            depth: Cell::new(0),
            top: Cell::new(0),
            node_size: Cell::new(0),
            attempts: Cell::new(0),
            open: Cell::new(0),
            too_deep: Cell::new(false),
            copies: Cell::new(0),
            copies_peak: Cell::new(0),
        }
    };
}

/// What a weighed dispatch took from the budget.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Taken {
    /// Bytes counted in the budget, to be given back when the arguments
    /// are dropped (with the handler).
    pub(crate) bytes: usize,
    /// Why the decode was stopped (the call is refused), if it was.
    pub(crate) stop: Option<Stop>,
    /// For a decode stopped for the budget's room: what it would have
    /// held beyond its items' count at that point, at least (what it had
    /// taken, and what it asked for), so what to wait for before trying
    /// again ([`weighed_reply`]).
    pub(crate) wanted: usize,
}

impl Taken {
    /// Whether the decode was stopped: the call is refused.
    pub(crate) fn refused(&self) -> bool {
        self.stop.is_some()
    }
}

/// Runs `f` (a dispatch, which decodes its call's arguments) with the
/// arguments decoded on this thread weighed against `conn`'s budget;
/// returns `f`'s result and what was taken.
pub(crate) fn weighed<R>(conn: &Arc<Shared>, f: impl FnOnce() -> R) -> (R, Taken) {
    // Dispatches do not nest (one decodes its arguments before the next
    // can start), so the state starts at zero and is left so: on an
    // unwind, with what was taken given back.
    struct Reset<'a>(&'a Arc<Shared>);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            let granted = reset_state();
            if granted > 0 {
                self.0.budget.release(granted);
            }
        }
    }
    let reset = Reset(conn);
    let out = CONN.set(conn, f);
    let taken = STATE.with(|s| Taken {
        bytes: s.granted.replace(0),
        stop: s.stop.get(),
        wanted: s.short.get(),
    });
    drop(reset);
    (out, taken)
}

/// Puts the weighing's state back at rest; returns what it had taken.
fn reset_state() -> usize {
    STATE.with(|s| {
        s.free.set(0);
        s.floor.set(ALWAYS);
        s.short.set(0);
        s.stop.set(None);
        s.densest.set(None);
        // Only a decode that met serde's buffer (a node read, or a
        // buffered type tried) set the rest: most calls do not.
        if s.nodes.get() > 0 || s.attempts.get() > 0 {
            s.nodes.set(0);
            s.depth.set(0);
            s.top.set(0);
            s.attempts.set(0);
            s.copies.set(0);
            s.copies_peak.set(0);
            super::work::reset();
        }
        s.granted.replace(0)
    })
}

/// [`weighed`] for the decode of a reply to one of this side's calls
/// (`driver::heavy_reply::decoded`): nothing is taken whatever the room
/// (a reply goes to a caller that runs already, so a full budget would
/// not stop the next: 128 handlers of a connection each took 64 KiB over
/// a budget, a review of the weighing of replies), and the first
/// `prepaid` bytes it takes were counted by its caller already (after it
/// waited for room for them: [`Taken::wanted`] of a try before).
pub(crate) fn weighed_reply<R>(
    conn: &Arc<Shared>,
    prepaid: usize,
    f: impl FnOnce() -> R,
) -> (R, Taken) {
    STATE.with(|s| {
        s.floor.set(0);
        s.free.set(prepaid);
    });
    let (out, mut taken) = weighed(conn, f);
    if taken.stop == Some(Stop::Budget) {
        // It had used what was counted for it before asking for more.
        taken.wanted = taken.wanted.saturating_add(prepaid);
    }
    (out, taken)
}

/// The running dispatch's connection, for a dispatch that decodes its
/// arguments later (a call on a promise not yet resolved) to weigh them as
/// this one would.
pub(crate) fn current() -> Option<Arc<Shared>> {
    CONN.is_set().then(|| CONN.with(Arc::clone))
}

/// Bytes a weighed decode took from a budget ([`Taken::bytes`]), given
/// back on drop unless a spawned handler keeps them.
pub(crate) struct TakenBack<'a>(pub(crate) &'a Budget, pub(crate) usize);

impl TakenBack<'_> {
    /// The bytes, now the keeper's to give back.
    pub(crate) fn keep(mut self) -> usize {
        std::mem::take(&mut self.1)
    }
}

impl Drop for TakenBack<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.1 > 0 {
            self.0.release(self.1);
        }
    }
}

/// Whether decodes on this thread are weighed (a dispatch runs).
#[inline]
pub(crate) fn active() -> bool {
    CONN.is_set()
}

/// `de`, weighing what its collections' elements take, as it decodes a
/// `T` (held inline by its caller).
pub(crate) fn weighing<'de, T, D: Deserializer<'de>>(de: D) -> Weighed<D> {
    wrap(de, false, size_of::<T>())
}

/// [`weighing`] for a `Wire` type, whose [`densest_of`] bounds what serde
/// builds from its own buffer within it, where no inner type says better.
pub(crate) fn weighing_wire<'de, T: Wire, D: Deserializer<'de>>(de: D) -> Weighed<D> {
    STATE.with(|s| s.densest.set(Some(densest_of::<T>)));
    weighing::<T, D>(de)
}

/// The most bytes per item of the types a `T` may hold
/// ([`SchemaBuilder::densest`]), computed once per type and thread.
pub(crate) fn densest_of<T: Wire>() -> usize {
    thread_local! {
        static SIZES: RefCell<HashMap<TypeId, usize>> = RefCell::new(HashMap::new());
    }
    let id = TypeId::of::<T>();
    if let Some(n) = SIZES.with(|m| m.borrow().get(&id).copied()) {
        return n;
    }
    // Described with the map not borrowed: describing runs user code.
    let n = SchemaBuilder::densest::<T>();
    SIZES.with(|m| m.borrow_mut().insert(id, n));
    n
}

/// Decodes of buffered types a call may make per node of serde's buffer
/// it decoded (plus [`ATTEMPTS_FREE`]). serde tries an untagged enum's
/// variants in turn, each decoding what it holds: nested, the tries
/// multiply (red-team pass 37: a 273-byte call of 22 nested untagged
/// values took 4.8 s of a thread, each level twice the one below).
const ATTEMPTS_PER_NODE: usize = 16;
const ATTEMPTS_FREE: usize = 1024;

/// Buffered decodes a call may have under way nested in one another.
/// Nested decodes never end for a type that decodes itself from its own
/// buffer (a left-recursive untagged enum, `Paren(Box<Self>)`): plain
/// serde overflows the thread's stack, which aborts the process (red-team
/// pass 39). Data nested `max_depth` (64) deep, each level a recursive
/// untagged value, takes 64.
pub(crate) const MAX_NESTED: usize = 128;

/// While a `#[derive(Wire)]` type that serde decodes through its own
/// buffer decodes (an untagged or internally tagged enum, a struct with a
/// flattened field: `#[derive(Wire)]` knows them by their attributes),
/// what serde builds from the buffer is weighed by that type's densest
/// type, not by the whole call's. One that serde decodes from its buffer
/// (nested in another, a try that may be one of many) decodes from a copy
/// of its part of the buffer and holds it until it ends: the copy is
/// weighed at the size of the buffer it copies from (at most; it is out
/// of sight), such tries are counted against `ATTEMPTS_PER_NODE`, and
/// their CPU time bounded (`work.rs`). One decoded from the wire (through
/// the weighing wrapper) is no try: it reads new items. Their nesting is
/// capped at `MAX_NESTED`. Hidden API, for the derive.
#[must_use]
#[derive(Debug)]
pub struct Buffered(Option<Saved>);

/// What a weighed [`Buffered`] gives back as it ends.
#[derive(Debug, Clone, Copy)]
struct Saved {
    /// The densest type of the decode around it.
    densest: Densest,
    /// The bytes its copy was weighed at.
    copy: usize,
    /// Where the buffers the decodes nested in it copy from began.
    top: usize,
}

/// The error for a decode nested past `MAX_NESTED`.
fn too_deep<E: serde::de::Error>() -> E {
    E::custom(format_args!(
        "untagged or internally tagged types nested more than {MAX_NESTED} deep"
    ))
}

/// Whether `D` is the weighing deserializer, which decodes from the wire
/// (else `D` is serde's, over its buffer).
fn from_wire<D>() -> bool {
    static PREFIX: OnceLock<&'static str> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let name = std::any::type_name::<Weighed<()>>();
        name.strip_suffix("()>").unwrap_or(name)
    });
    std::any::type_name::<D>().starts_with(prefix)
}

impl Buffered {
    /// Starts decoding a `T` from `D` (`#[derive(Wire)]` calls it); an
    /// error if the call has tried too many times already, or its decode
    /// was stopped.
    #[inline]
    pub fn of<'de, T: Wire, D: Deserializer<'de>>() -> Result<Buffered, D::Error> {
        if !active() && !measuring() {
            return unweighed();
        }
        // From serde's buffer (a copy of its part of it), not the wire: a
        // try that may be one of many, of a value decoded already.
        let from_buffer = !from_wire::<D>();
        STATE.with(|s| {
            // Every try after a stop fails at once; the dispatch answers
            // `limit_exceeded`.
            if s.stop.get().is_some() {
                return Err(<D::Error as serde::de::Error>::custom(
                    "the decode was stopped",
                ));
            }
            let open = s.open.get();
            let nodes = if from_buffer {
                s.nodes.get().saturating_sub(s.top.get())
            } else {
                0
            };
            let stop = if open >= MAX_NESTED {
                Some(Stop::Nesting)
            } else if !from_buffer {
                None
            } else {
                let attempts = s.attempts.get() + 1;
                s.attempts.set(attempts);
                let allowed = s
                    .nodes
                    .get()
                    .saturating_mul(ATTEMPTS_PER_NODE)
                    .saturating_add(ATTEMPTS_FREE);
                if attempts > allowed {
                    Some(Stop::Tries)
                } else if !super::work::nested_try(nodes, s.nodes.get()) {
                    Some(Stop::Time)
                } else {
                    None
                }
            };
            if let Some(stop) = stop {
                s.stop.set(Some(stop));
                return Err(match stop {
                    Stop::Nesting => too_deep(),
                    _ => <D::Error as serde::de::Error>::custom(
                        "the decode of buffered types was stopped",
                    ),
                });
            }
            let copy = nodes.saturating_mul(s.node_size.get());
            // The copies under way, taken from the budget as their most;
            // not what a value held weighs ([`measured`]: counted so, a
            // nested untagged value weighed ten times what it holds, a
            // review).
            let copies = s.copies.get() + copy;
            if copies > s.copies_peak.get() {
                if !measuring() {
                    add::<D::Error>(copies - s.copies_peak.get())?;
                }
                s.copies_peak.set(copies);
            }
            s.copies.set(copies);
            s.open.set(open + 1);
            let top = s.top.get();
            if !from_buffer {
                // What it reads into serde's buffers (one, or one per
                // field of a flattened or internally tagged one) is what
                // the decodes nested in it copy from.
                s.top.set(s.nodes.get());
            }
            let densest = s.densest.replace(Some(densest_of::<T>));
            Ok(Buffered(Some(Saved { densest, copy, top })))
        })
    }
}

/// [`Buffered::of`] where the decode is not weighed (a call's flat
/// arguments, a reply): only the nesting is capped, as it would overflow
/// the stack; past the cap, every buffered decode fails at once until the
/// outermost ends (red-team pass 40: failing only there, each of 128
/// levels tried its other variants, 2^128 tries from a 3-byte call).
fn unweighed<E: serde::de::Error>() -> Result<Buffered, E> {
    STATE.with(|s| {
        let open = s.open.get();
        if s.too_deep.get() || open >= MAX_NESTED {
            s.too_deep.set(true);
            return Err(too_deep());
        }
        s.open.set(open + 1);
        Ok(Buffered(None))
    })
}

impl Drop for Buffered {
    #[inline]
    fn drop(&mut self) {
        STATE.with(|s| {
            let open = s.open.get().saturating_sub(1);
            s.open.set(open);
            if open == 0 {
                s.too_deep.set(false);
            }
            if let Some(saved) = self.0 {
                s.densest.set(saved.densest);
                s.copies.set(s.copies.get().saturating_sub(saved.copy));
                s.top.set(saved.top);
            }
        });
    }
}

/// The name `std::any::type_name` gives serde's buffer type (`Content`,
/// private to serde): found once, by decoding an untagged enum from a
/// deserializer that records the type its `deserialize_any` is asked for.
fn buffer_type_name() -> &'static str {
    static NAME: OnceLock<&'static str> = OnceLock::new();
    NAME.get_or_init(|| {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Probe {
            #[allow(dead_code)]
            Unit(()),
        }
        struct Recorder<'a>(&'a Cell<&'static str>);
        impl<'de> Deserializer<'de> for Recorder<'_> {
            type Error = serde::de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
                self.0.set(std::any::type_name::<V::Value>());
                v.visit_unit()
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map struct enum identifier ignored_any
            }
        }
        let name = Cell::new("");
        let _ = Probe::deserialize(Recorder(&name));
        name.get()
    })
}

/// The most bytes per item a decode that does not say is taken to hold
/// ([`buffered_node`]).
const FALLBACK_DENSEST: usize = 1024;

/// Whether `T` is serde's buffer type.
#[inline]
fn is_buffer<T>() -> bool {
    std::any::type_name::<T>() == buffer_type_name()
}

/// What a node of serde's buffer is weighed at, beside the node itself:
/// what serde may build from it, twice the most bytes per item of the
/// types the value decoded may hold (an element, with its collection's
/// growth, or a box). A decode that does not say (a hand-written
/// dispatcher's) is taken to hold types of `FALLBACK_DENSEST` bytes per
/// item. The copies serde makes of the buffer are weighed as they are
/// made ([`Buffered`]).
fn buffered_node(node: usize) -> usize {
    STATE.with(|s| {
        s.node_size.set(node);
        s.nodes.set(s.nodes.get() + 1);
        let densest = s.densest.get().map_or(FALLBACK_DENSEST, |f| f());
        2 * densest
    })
}

/// Counts `n` bytes more of the running dispatch's arguments.
fn add<E: serde::de::Error>(n: usize) -> Result<(), E> {
    let need = STATE.with(|s| {
        let f = s.free.get();
        if n <= f {
            s.free.set(f - n);
            0
        } else {
            n - f
        }
    });
    if need == 0 {
        return Ok(());
    }
    if measuring() {
        STATE.with(|s| s.granted.set(s.granted.get().saturating_add(need)));
        return Ok(());
    }
    let (taken, floor) = STATE.with(|s| (s.granted.get(), s.floor.get()));
    let (need, charged, limit) = CONN.with(|c| {
        if taken + need <= floor {
            // Within the first frame's worth: taken as needed, whatever
            // the room.
            let need = need.max(CHUNK).min(floor - taken);
            c.budget.charge(need);
            (need, true, 0)
        } else {
            let need = need.max(CHUNK);
            (need, c.budget.try_charge(need), c.budget.limit())
        }
    });
    STATE.with(|s| {
        if charged {
            s.granted.set(s.granted.get() + need);
            s.free.set(s.free.get() + need - n);
            Ok(())
        } else {
            s.stop.set(Some(Stop::Budget));
            s.short.set(taken.saturating_add(need));
            Err(E::custom(format_args!(
                "the arguments decode to more than their frame was counted at, and \
                 memory_budget = {limit} has no room for {need} bytes more"
            )))
        }
    })
}
