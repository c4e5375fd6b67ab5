//! Stack for values that nest deep.
//!
//! Values nest at most `max_depth` levels on the wire, and serde's
//! buffered decodes at most `MAX_NESTED` in one another (`weigh.rs`), but
//! the stack a level takes is as large as its types: serde keeps the
//! value being decoded on the stack, several times over (a debug build
//! took 350 KiB a level for a struct of 16 KiB). A recursive untagged
//! type with a 16 KiB inline variant overflowed a 2 MiB tokio worker
//! stack at 30 levels in a release build, and a stack overflow aborts the
//! process (red-team pass 40).
//!
//! So each `#[derive(Wire)]` type decodes and encodes (on a server's
//! calls and replies and a client's alike) through [`decode_on_stack`] and
//! [`encode_on_stack`]: when less than a level's worth of the thread's
//! stack is left, a level goes on on a new stack segment ([`stacker`]),
//! freed as it returns. A recursive type is a named type, so every level
//! of a recursive value passes there; what lies between two of them is
//! one level's frames. The segments under way in one decode are bounded
//! by its nesting (at most `max_depth` levels of data, `MAX_NESTED`
//! buffered decodes) times what a level of its types takes, and one
//! decode runs on a thread at a time. Siblings just past where the stack
//! runs short each take a segment, so one value may take at most
//! [`MAX_SEGMENTS`] in all, and fails past that.
//!
//! The room left is what [`stacker`] finds: the thread's stack as the OS
//! reports it. A whole value's encode or decode starting with less than
//! [`SESSION_ROOM`] left runs on a segment of its own ([`SESSION_STACK`],
//! an `mmap` a value), and so does every one where the OS does not report
//! the stack to `stacker` (Android, iOS, ...): there its end is known. On
//! wasm32 nothing is known, and values decode on the thread's own stack.

use std::cell::Cell;
use std::fmt;
use std::mem::size_of;

/// The stack a level of any type is taken to need, beyond its size...
pub(super) const LEVEL_BASE: usize = 256 << 10;

/// ...and in copies of its value: a struct of 16 KiB took 350 KiB a level
/// in a debug build (serde's visitor, its fields' results, the weighing
/// wrapper's frames, each holding the value or a `Result` of it).
const LEVEL_COPIES: usize = 32;

/// ...and in the fields of all an enum's variants (a debug build keeps
/// each variant's results in the one frame, each try's for a buffered
/// enum: 32 untagged variants of 8 KiB overflowed a 2 MiB stack at depth
/// 0, red-team pass 41; 64 externally tagged newtype variants too, pass
/// 42).
const TRIED_COPIES: usize = 8;

/// ...and in copies of what its fields hold beyond their own size
/// ([`Wire::INLINE`](crate::Wire::INLINE): a `Box<[T; 16]>` field's
/// decode keeps the array on its own frame, then boxes it; a debug build
/// keeps each element's result and the whole array, red-team pass 42).
const HELD_COPIES: usize = 16;

/// What a `T` holds on the stack beyond its own size as it decodes: its
/// [`Wire::INLINE`](crate::Wire::INLINE) less its size.
const fn held_beyond<T: crate::Wire>() -> usize {
    T::INLINE.saturating_sub(size_of::<T>())
}

/// The least a new segment holds.
const SEGMENT: usize = 1 << 20;

/// The stack a level of `T` is taken to need, its tries decoding `tried`
/// bytes of fields, its fields holding `held` bytes beyond their size.
fn level<T>(tried: usize, held: usize) -> usize {
    LEVEL_BASE
        .saturating_add(LEVEL_COPIES.saturating_mul(size_of::<T>()))
        .saturating_add(TRIED_COPIES.saturating_mul(tried))
        .saturating_add(HELD_COPIES.saturating_mul(held))
}

/// New segments one decode or encode may take ([`Session`]). Siblings
/// each take their own: a list of values just past where the stack runs
/// short takes one a value, each an `mmap`, an `mprotect`, a `munmap` and
/// the faults of the pages its frames touch (red-team pass 41: 256 empty
/// lists of a 16 KiB untagged type there, a 261-byte call, took 23 ms of
/// a debug build's thread, against 2.8 ms before). A deep value takes one
/// per segment's worth of levels (at least three).
pub(crate) const MAX_SEGMENTS: u32 = 64;

/// The stack a whole value's encode or decode needs left as it starts
/// (besides [`HELD_COPIES`] of what its type holds inline,
/// [`Session::run_holding`]), or it runs on a segment of
/// [`SESSION_STACK`] at least: on a thread with a small stack, every
/// value of a list would otherwise be short of a level's worth, and each
/// take a segment of its own.
const SESSION_ROOM: usize = 1 << 20;

/// The room a whole value's decode starts with: [`SESSION_ROOM`], or a
/// level of a derived type as large as the elements of the lists in it
/// ([`Wire::LISTED`](crate::Wire::LISTED)) if that is more (each of them
/// needs a level under the list's frames: with less, each took a
/// segment, and 40 boxes of two 64 KiB structs were refused), besides
/// [`HELD_COPIES`] of what it holds inline. A single value (a boxed
/// one, an option) takes its level's segment itself, if need be, when
/// it is there: a `nil` takes none.
#[inline]
pub(crate) const fn session_room(inline: usize, listed: usize) -> usize {
    let level = LEVEL_BASE.saturating_add(LEVEL_COPIES.saturating_mul(listed));
    let base = if level > SESSION_ROOM {
        level
    } else {
        SESSION_ROOM
    };
    base.saturating_add(HELD_COPIES.saturating_mul(inline))
}

/// The segment a whole value's encode or decode runs on where less than
/// [`SESSION_ROOM`] is left, or where the OS does not report the thread's
/// stack to `stacker` (Android, iOS, ...): its end is known.
const SESSION_STACK: usize = 8 << 20;

/// This thread's sessions under way, the new segments they took, and the
/// end of its stack (0: not asked yet; `usize::MAX`: not known).
struct Segments {
    sessions: Cell<u32>,
    taken: Cell<u32>,
    end: Cell<usize>,
    /// Segments of ours this thread runs on now, one in another: `end` is
    /// the thread's own stack's, neither asked nor used on a segment
    /// (red-team pass 43: a thread's first session, run on the
    /// dispatcher's segment, cached that segment's end for good, and the
    /// thread's own stack then looked endless).
    ours: Cell<u32>,
}

thread_local! {
    static SEGMENTS: Segments = const {
        Segments {
            sessions: Cell::new(0),
            taken: Cell::new(0),
            end: Cell::new(0),
            ours: Cell::new(0),
        }
    };
}

/// Runs `f` on a new segment of `size` bytes, counted in
/// [`Segments::ours`] while it runs.
#[cfg(not(target_arch = "wasm32"))]
fn on_segment<R>(size: usize, f: impl FnOnce() -> R) -> R {
    /// Counts the segment out when `f` returns or unwinds.
    struct Ours;
    impl Drop for Ours {
        fn drop(&mut self) {
            SEGMENTS.with(|s| s.ours.set(s.ours.get() - 1));
        }
    }
    stacker::grow(size, move || {
        SEGMENTS.with(|s| s.ours.set(s.ours.get() + 1));
        let _ours = Ours;
        f()
    })
}

/// One encode or decode of a whole value (a call's arguments, a reply, a
/// stored value), for [`MAX_SEGMENTS`]: the count starts at zero, unless
/// the session is nested in another (a value decoded by hand-written code
/// while another is), which it counts in.
pub(crate) struct Session(std::marker::PhantomData<*const ()>);

impl Session {
    /// Runs `f` as a session. The outermost runs on a segment of
    /// [`SESSION_STACK`] where less than [`SESSION_ROOM`] of the thread's
    /// stack is left, or how much is not known.
    #[inline]
    pub(crate) fn run<R>(f: impl FnOnce(&Session) -> R) -> R {
        Self::run_holding(0, 0, f)
    }

    /// [`run`](Self::run) for the decode of a value whose type holds
    /// `inline` bytes on the stack at once ([`Wire::INLINE`](crate::Wire::INLINE)),
    /// with lists of values of up to `listed` bytes ([`Wire::LISTED`](crate::Wire::LISTED)),
    /// which the room it starts with (or its segment) counts besides
    /// ([`session_room`]).
    #[inline]
    pub(crate) fn run_holding<R>(inline: usize, listed: usize, f: impl FnOnce(&Session) -> R) -> R {
        // Where the stack is now: a local's address (the stack grows down
        // on every target this runs on).
        let here = std::hint::black_box(0u8);
        let here = std::ptr::addr_of!(here) as usize;
        let room = session_room(inline, listed);
        let short = SEGMENTS.with(|s| {
            let n = s.sessions.get();
            s.sessions.set(n + 1);
            if n > 0 {
                return false;
            }
            s.taken.set(0);
            if s.ours.get() > 0 {
                return short_on_segment(room);
            }
            let end = match s.end.get() {
                0 => stack_end(here),
                end => end,
            };
            here.saturating_sub(end) < room
        });
        let session = Session(std::marker::PhantomData);
        #[cfg(not(target_arch = "wasm32"))]
        if short {
            return grown_session(room, move || f(&session));
        }
        #[cfg(target_arch = "wasm32")]
        let _ = short;
        // A value small inline decodes here: its slots, moved into this
        // frame, are small (its derived types' levels have their own
        // frames); a large one in a frame of its own, after the check.
        if inline < OWN_FRAME_FROM {
            return f(&session);
        }
        in_own_frame(move || f(&session))
    }

    /// The error, if this session was refused a segment: serde's untagged
    /// enums drop a variant's error and try the next, which may decode
    /// without a segment; the value is refused all the same.
    #[inline]
    pub(crate) fn refused<E: serde::de::Error>(&self) -> Result<(), E> {
        match SEGMENTS.with(|s| s.taken.get()) > MAX_SEGMENTS {
            true => Err(E::custom(TooManySegments)),
            false => Ok(()),
        }
    }
}

impl Drop for Session {
    #[inline]
    fn drop(&mut self) {
        SEGMENTS.with(|s| s.sessions.set(s.sessions.get() - 1));
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[cold]
fn grown_session<R>(room: usize, f: impl FnOnce() -> R) -> R {
    on_segment(SESSION_STACK.max(room.saturating_mul(2)), f)
}

/// Whether less than `room` is left on the segment of ours this thread
/// runs on: what `stacker` knows of it.
#[cold]
fn short_on_segment(room: usize) -> bool {
    left_here().is_none_or(|left| left < room)
}

/// The stack left, as `stacker` knows it (`None` on wasm32 or where the
/// OS does not say).
fn left_here() -> Option<usize> {
    #[cfg(not(target_arch = "wasm32"))]
    let left = stacker::remaining_stack();
    #[cfg(target_arch = "wasm32")]
    let left = None;
    #[cfg(test)]
    let left = left.filter(|_| !FORCE_UNKNOWN.with(Cell::get));
    left
}

#[cfg(test)]
thread_local! {
    /// Makes the thread's stack unknown, as on Android.
    static FORCE_UNKNOWN: Cell<bool> = const { Cell::new(false) };
}

/// The end of this thread's stack, `here` being a local's address: asked
/// of `stacker` once per thread, on the thread's own stack (outside any
/// segment of ours, [`Segments::ours`]); `usize::MAX` if not known (on
/// wasm32, taken as known and far: nothing can be done there).
#[cold]
fn stack_end(here: usize) -> usize {
    let left = if cfg!(target_arch = "wasm32") {
        Some(here)
    } else {
        left_here()
    };
    let end = left.map_or(usize::MAX, |left| here.saturating_sub(left).max(1));
    SEGMENTS.with(|s| s.end.set(end));
    end
}

/// Runs `f`, the decode or encode of one level of a `T`, with a level's
/// worth of stack left at least: on a new segment if the thread's stack
/// has not that much left; `None` if the session has taken
/// [`MAX_SEGMENTS`] already.
#[inline]
#[cfg_attr(target_arch = "wasm32", allow(clippy::extra_unused_type_parameters))]
fn on_stack<T, R>(tried: usize, held: usize, f: impl FnOnce() -> R) -> Option<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let level = level::<T>(tried, held);
        match stacker::remaining_stack() {
            Some(left) if left < level => grown(level, f),
            // Enough, or not known (then nothing can be done).
            _ => Some(in_own_frame(f)),
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (tried, held);
        Some(f())
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[cold]
fn grown<R>(level: usize, f: impl FnOnce() -> R) -> Option<R> {
    // Outside a session (a value a user encodes or decodes by hand, not
    // a peer's), not counted.
    let room = SEGMENTS.with(|s| {
        let taken = s.taken.get();
        if s.sessions.get() == 0 {
            return true;
        }
        s.taken.set(taken.saturating_add(1));
        taken < MAX_SEGMENTS
    });
    if !room {
        return None;
    }
    Some(on_segment(SEGMENT.max(level.saturating_mul(4)), f))
}

/// Runs `f` with `need` bytes of the thread's stack left at least: on a
/// new segment (not counted in any session) if it has not that much, or
/// how much is not known.
#[inline]
pub(super) fn with_room<R>(need: usize, f: impl FnOnce() -> R) -> R {
    #[cfg(not(target_arch = "wasm32"))]
    {
        match stacker::remaining_stack() {
            Some(left) if left >= need => in_own_frame(f),
            _ => on_segment(SEGMENT.max(need.saturating_mul(2)), f),
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = need;
        f()
    }
}

/// What a whole value's type holds inline from which its decode runs in
/// a frame of its own ([`in_own_frame`]).
const OWN_FRAME_FROM: usize = 16 << 10;

/// Runs `f` in a frame of its own, never inlined into its caller: the
/// stack `f`'s code takes is then taken as `f` runs, after its caller
/// has looked at the stack left, not as the caller is entered (an
/// optimized build moves an inlined function's stack slots into its
/// caller's frame: a release build's dispatcher overflowed on a call of
/// 1 MiB of arguments before its check, red-team pass 43's rerun).
#[inline(never)]
fn in_own_frame<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The error of a value that took more than [`MAX_SEGMENTS`] new segments.
struct TooManySegments;

impl fmt::Display for TooManySegments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the value ran short of the thread's stack too many times (more than \
             {MAX_SEGMENTS} new stack segments in one value)"
        )
    }
}

/// Decodes one level of a `T` by `f` with a level's worth of stack left
/// (see the module's doc); `tried`: the bytes of the fields of all its
/// variants for an enum, else 0; `held`: what its fields hold beyond
/// their size ([`HeldProbe`]). Hidden API, for the derive.
#[inline]
pub fn decode_on_stack<T, R, E: serde::de::Error>(
    tried: usize,
    held: usize,
    f: impl FnOnce() -> Result<R, E>,
) -> Result<R, E> {
    on_stack::<T, _>(tried, held, f).unwrap_or_else(|| Err(E::custom(TooManySegments)))
}

/// Encodes one level of a value by `f` with a level's worth of stack
/// left. Hidden API, for the derive.
#[inline]
pub fn encode_on_stack<R, E: serde::ser::Error>(f: impl FnOnce() -> Result<R, E>) -> Result<R, E> {
    // A level of an encode holds references to the value, not copies of
    // it: the base alone (red-team pass 43: with a decode's 32 copies of
    // a 64 KiB struct, each value of a list of 100 took a segment on a
    // 2 MiB thread, and the list could not be sent).
    on_stack::<(), _>(0, 0, f).unwrap_or_else(|| Err(E::custom(TooManySegments)))
}

/// Decodes a field of a `#[derive(Wire)]` type (one routed through the
/// derive's probe, `FieldWire`): a type that holds more on the stack
/// than its size as it decodes ([`Wire::INLINE`](crate::Wire::INLINE): a
/// `Box<[T; 16]>`) does so with room for [`HELD_COPIES`] of that, here
/// rather than at the level of the type holding it, so that an enum's
/// other variants and a struct's other fields do not pay for it (red-team
/// pass 43: a list of a data-less variant took a segment per value).
#[inline]
pub(crate) fn decode_field<'de, T: crate::Wire, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    match held_beyond::<T>() {
        0 => T::deserialize(d),
        held => decode_on_stack::<(), _, _>(0, held, move || T::deserialize(d)),
    }
}

/// The receiver that selects [`HeldWire`] or [`HeldOther`] for a field of
/// type `T` of a `#[derive(Wire)]` type: what the field holds on the
/// stack beyond its size as it decodes. Hidden API, for the derive.
pub struct HeldProbe<T>(std::marker::PhantomData<fn() -> T>);

impl<T> fmt::Debug for HeldProbe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeldProbe")
    }
}

impl<T> HeldProbe<T> {
    /// The probe (a zero-sized value).
    pub const NEW: Self = HeldProbe(std::marker::PhantomData);
}

/// Selected for a field whose type is `Wire`.
pub trait HeldWire {
    /// `T::INLINE` beyond `size_of::<T>()`.
    fn held_beyond(&self) -> usize;
}

impl<T: crate::Wire> HeldWire for &HeldProbe<T> {
    #[inline]
    fn held_beyond(&self) -> usize {
        held_beyond::<T>()
    }
}

/// Selected for a field whose type is not `Wire` (a skipped field).
pub trait HeldOther {
    /// Nothing.
    fn held_beyond(&self) -> usize;
}

impl<T> HeldOther for HeldProbe<T> {
    #[inline]
    fn held_beyond(&self) -> usize {
        0
    }
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
