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
//! calls and replies and a client's alike) through [`with_stack`]: when
//! less than a level's worth of the thread's stack is left, it goes on on
//! a new stack segment ([`stacker`]), freed as it returns. A recursive
//! type is a named type, so every level of a recursive value passes
//! there; what lies between two of them is one level's frames. The
//! segments one decode takes are bounded by its nesting (at most
//! `max_depth` levels of data, `MAX_NESTED` buffered decodes) times what
//! a level of its types takes, and one decode runs on a thread at a time.
//!
//! The room left is what [`stacker`] finds: the thread's stack as the OS
//! reports it. On wasm32 it is not known, and values decode on the
//! thread's own stack.

use std::mem::size_of;

/// The stack a level of any type is taken to need, beyond its size...
const LEVEL_BASE: usize = 128 << 10;

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

/// Runs `f`, the decode or encode of one level of a `T`, with a level's
/// worth of stack left at least: on a new segment if the thread's stack
/// has not that much left. Hidden API, for the derive.
#[inline]
pub fn with_stack<T, R>(f: impl FnOnce() -> R) -> R {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let level = level::<T>();
        stacker::maybe_grow(level, SEGMENT.max(level.saturating_mul(4)), f)
    }
    #[cfg(target_arch = "wasm32")]
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recursion 10,000 levels deep, each through `with_stack` with a
    /// 4 KiB frame (40 MiB in all), runs on a thread of 256 KiB.
    #[test]
    fn recursion_through_with_stack_goes_past_the_threads_stack() {
        fn down(level: usize) -> usize {
            let pad = std::hint::black_box([level as u8; 4096]);
            if level == 10_000 {
                return level;
            }
            let deepest = with_stack::<[u8; 4096], _>(|| down(level + 1));
            std::hint::black_box(&pad);
            deepest
        }
        let levels = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| down(0))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(levels, 10_000);
    }
}
