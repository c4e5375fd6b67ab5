//! Weighing a value this side holds (not a peer's) by its types, as a
//! call's arguments are weighed, counted against no budget.

use std::cell::Cell;

use super::{active, reset_state, FALLBACK_DENSEST, STATE};

thread_local! {
    /// Set while [`measured`] runs: what a decode takes is counted, and
    /// taken from no budget.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, a decode through [`weighing_wire`](super::weighing_wire) of a value this side
/// holds (`codec::held_weight`: a shared collection's change, a stream's
/// item), and returns with its result what the value's collections'
/// elements weigh beyond the `DECODED_ITEM` each item was counted at, as
/// a call's arguments are weighed (serde's buffered types under the same
/// bounds on tries and CPU time: unbounded, a 100-byte value of a nested
/// untagged enum took seconds to weigh, a review), counted against no
/// budget. A decode stopped by those bounds counts each node of serde's
/// buffer it read at the most a node may weigh. `None` inside a weighed
/// decode (never nested).
pub(crate) fn measured<R>(f: impl FnOnce() -> R) -> Option<(R, usize)> {
    if active() || measuring() {
        return None;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MEASURING.with(|m| m.set(false));
            reset_state();
        }
    }
    MEASURING.with(|m| m.set(true));
    STATE.with(|s| s.floor.set(0));
    let _reset = Reset;
    let out = f();
    let weight = STATE.with(|s| {
        let granted = s.granted.get();
        if s.stop.get().is_some() {
            granted.max(s.nodes.get().saturating_mul(2 * FALLBACK_DENSEST))
        } else {
            granted
        }
    });
    Some((out, weight))
}

/// Whether [`measured`] runs on this thread.
#[inline]
pub(super) fn measuring() -> bool {
    MEASURING.with(Cell::get)
}
