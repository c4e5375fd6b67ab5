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
//! reports it. Where the OS does not report it to `stacker` (Android,
//! iOS, ...), a whole value's encode or decode runs on a segment of its
//! own ([`UNKNOWN_STACK`], an `mmap` a value), whose end is known. On
//! wasm32 nothing is known, and values decode on the thread's own stack.

use std::cell::Cell;
use std::fmt;
use std::mem::size_of;

/// The stack a level of any type is taken to need, beyond its size...
const LEVEL_BASE: usize = 256 << 10;

/// ...and in copies of its value: a struct of 16 KiB took 350 KiB a level
/// in a debug build (serde's visitor, its fields' results, the weighing
/// wrapper's frames, each holding the value or a `Result` of it).
const LEVEL_COPIES: usize = 32;

/// The least a new segment holds.
const SEGMENT: usize = 1 << 20;

/// The stack a level of `T` is taken to need.
fn level<T>() -> usize {
    LEVEL_BASE.saturating_add(LEVEL_COPIES.saturating_mul(size_of::<T>()))
}

/// New segments one decode or encode may take ([`Session`]). Siblings
/// each take their own: a wide list of small values just past where the
/// stack runs short takes one a value, a few microseconds each (`mmap`,
/// `mprotect`, `munmap`), 5 s of a thread for a 1 MiB frame of one-byte
/// values if nothing stopped it. A deep value takes one per segment's
/// worth of levels.
pub(crate) const MAX_SEGMENTS: u32 = 256;

/// The stack a whole value's encode or decode runs on where the OS does
/// not report the thread's stack to `stacker` (Android, iOS, ...): a
/// segment whose end is known, so that its levels are checked too.
const UNKNOWN_STACK: usize = 8 << 20;

/// This thread's sessions under way, the new segments they took, and
/// whether the thread's stack is known (`KNOWN`, `UNKNOWN`, or not yet
/// asked).
struct Segments {
    sessions: Cell<u32>,
    taken: Cell<u32>,
    stack: Cell<u8>,
}

const KNOWN: u8 = 1;
const UNKNOWN: u8 = 2;

thread_local! {
    static SEGMENTS: Segments = const {
        Segments {
            sessions: Cell::new(0),
            taken: Cell::new(0),
            stack: Cell::new(0),
        }
    };
}

/// One encode or decode of a whole value (a call's arguments, a reply, a
/// stored value), for [`MAX_SEGMENTS`]: the count starts at zero, unless
/// the session is nested in another (a value decoded by hand-written code
/// while another is), which it counts in.
pub(crate) struct Session(std::marker::PhantomData<*const ()>);

impl Session {
    /// Runs `f` as a session. The outermost runs on a segment of
    /// [`UNKNOWN_STACK`] where the thread's stack is not known.
    #[inline]
    pub(crate) fn run<R>(f: impl FnOnce(&Session) -> R) -> R {
        let outermost = SEGMENTS.with(|s| {
            let n = s.sessions.get();
            if n == 0 {
                s.taken.set(0);
            }
            s.sessions.set(n + 1);
            n == 0 && s.stack.get() != KNOWN
        });
        let session = Session(std::marker::PhantomData);
        #[cfg(not(target_arch = "wasm32"))]
        if outermost && !stack_known() {
            return stacker::grow(UNKNOWN_STACK, move || f(&session));
        }
        #[cfg(target_arch = "wasm32")]
        let _ = outermost;
        f(&session)
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

#[cfg(test)]
thread_local! {
    /// Makes the thread's stack unknown, as on Android.
    static FORCE_UNKNOWN: Cell<bool> = const { Cell::new(false) };
}

/// Whether `stacker` knows this thread's stack: asked once per thread,
/// outside any session (so outside its segments).
#[cfg(not(target_arch = "wasm32"))]
#[cold]
fn stack_known() -> bool {
    SEGMENTS.with(|s| match s.stack.get() {
        KNOWN => true,
        UNKNOWN => false,
        _ => {
            let known = stacker::remaining_stack().is_some();
            #[cfg(test)]
            let known = known && !FORCE_UNKNOWN.with(Cell::get);
            s.stack.set(if known { KNOWN } else { UNKNOWN });
            known
        }
    })
}

/// Runs `f`, the decode or encode of one level of a `T`, with a level's
/// worth of stack left at least: on a new segment if the thread's stack
/// has not that much left; `None` if the session has taken
/// [`MAX_SEGMENTS`] already.
#[inline]
#[cfg_attr(target_arch = "wasm32", allow(clippy::extra_unused_type_parameters))]
fn on_stack<T, R>(f: impl FnOnce() -> R) -> Option<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let level = level::<T>();
        match stacker::remaining_stack() {
            Some(left) if left < level => grown(level, f),
            // Enough, or not known (then nothing can be done).
            _ => Some(f()),
        }
    }
    #[cfg(target_arch = "wasm32")]
    Some(f())
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
    Some(stacker::grow(SEGMENT.max(level.saturating_mul(4)), f))
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
/// (see the module's doc). Hidden API, for the derive.
#[inline]
pub fn decode_on_stack<T, R, E: serde::de::Error>(
    f: impl FnOnce() -> Result<R, E>,
) -> Result<R, E> {
    on_stack::<T, _>(f).unwrap_or_else(|| Err(E::custom(TooManySegments)))
}

/// Encodes one level of a `T` by `f` with a level's worth of stack left.
/// Hidden API, for the derive.
#[inline]
pub fn encode_on_stack<T, R, E: serde::ser::Error>(
    f: impl FnOnce() -> Result<R, E>,
) -> Result<R, E> {
    on_stack::<T, _>(f).unwrap_or_else(|| Err(E::custom(TooManySegments)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recursion 10,000 levels deep, each through `on_stack` with a 4 KiB
    /// frame (40 MiB in all), runs on a thread of 256 KiB.
    #[test]
    fn recursion_on_stack_goes_past_the_threads_stack() {
        fn down(level: usize) -> usize {
            let pad = std::hint::black_box([level as u8; 4096]);
            if level == 10_000 {
                return level;
            }
            let deepest = on_stack::<[u8; 4096], _>(|| down(level + 1)).unwrap();
            std::hint::black_box(&pad);
            deepest
        }
        let levels = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| Session::run(|_| down(0)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(levels, 10_000);
    }

    /// Calls `f` with less than a level of a `u64` left on the stack.
    fn at_the_edge(f: &mut dyn FnMut()) {
        let pad = std::hint::black_box([0u8; 4096]);
        if stacker::remaining_stack().unwrap() < level::<u64>() {
            f();
        } else {
            at_the_edge(f);
        }
        std::hint::black_box(&pad);
    }

    /// Siblings at the edge each take a segment: a session takes at most
    /// `MAX_SEGMENTS`, the next starts again, and a value decoded by hand
    /// (no session) is not counted.
    #[test]
    fn a_session_takes_at_most_max_segments() {
        let run = || {
            let mut counts = Vec::new();
            at_the_edge(&mut || {
                for _ in 0..2 {
                    let grown = Session::run(|_| {
                        (0..1000)
                            .filter(|_| on_stack::<u64, _>(|| ()).is_some())
                            .count()
                    });
                    counts.push(grown);
                }
                let unsessioned = (0..1000)
                    .filter(|_| on_stack::<u64, _>(|| ()).is_some())
                    .count();
                counts.push(unsessioned);
            });
            counts
        };
        let counts = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
        let max = MAX_SEGMENTS as usize;
        assert_eq!(counts, [max, max, 1000]);
    }

    /// A derived type.
    #[derive(Debug, crate::Wire)]
    struct Small(u8);

    /// A peer's value is decoded in a session: a list of small values at
    /// the edge fails past `MAX_SEGMENTS`, where a shorter one decodes,
    /// and so does the long one decoded by hand.
    #[test]
    fn a_decode_is_a_session() {
        fn list(n: usize) -> Vec<u8> {
            let mut v = vec![0xdc];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v.resize(v.len() + n, 0x07);
            v
        }
        let run = || {
            let mut out = None;
            at_the_edge(&mut || {
                let long = crate::codec::decode_detached::<Vec<Small>>(&list(1000));
                let short = crate::codec::decode_detached::<Vec<Small>>(&list(100));
                let by_hand = rmp_serde::from_slice::<Vec<Small>>(&list(1000));
                out = Some((
                    long.map(|v| v.len()).map_err(|e| e.to_string()),
                    short.map(|v| v.len()).map_err(|e| e.to_string()),
                    by_hand.map(|v| v.len()).map_err(|e| e.to_string()),
                ));
            });
            out.unwrap()
        };
        let (long, short, by_hand) = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
        let long = long.unwrap_err();
        assert!(long.contains("stack segments"), "{long}");
        assert_eq!(short, Ok(100));
        assert_eq!(by_hand, Ok(1000));
    }

    /// Where the thread's stack is not known, a whole value runs on a
    /// segment of `UNKNOWN_STACK`, whose end is known; elsewhere on the
    /// thread's own stack.
    #[test]
    fn a_session_runs_on_a_known_stack() {
        let left = |unknown: bool| {
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    FORCE_UNKNOWN.with(|f| f.set(unknown));
                    Session::run(|_| stacker::remaining_stack().unwrap())
                })
                .unwrap()
                .join()
                .unwrap()
        };
        // The thread's own: 256 KiB asked for, or a larger one glibc kept
        // from an ended thread (2 MiB, a test thread's).
        let own = left(false);
        assert!(own < UNKNOWN_STACK / 2, "{own}");
        let segment = left(true);
        assert!(segment > UNKNOWN_STACK - (64 << 10), "{segment}");
    }
}
