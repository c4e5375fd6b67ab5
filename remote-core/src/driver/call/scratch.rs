//! The reusable encode buffer calls and replies are encoded in.

thread_local! {
    /// A reusable encode buffer: frames are encoded here, then appended to
    /// the connection's write buffer, so a call allocates no frame.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with the connection's spare large buffer if it keeps one (the
/// last large frame it wrote: a stream of large values is encoded into the
/// same memory, see `driver/kept.rs`), else with this thread's scratch
/// buffer (an empty one if it is in use further up the stack).
#[inline]
pub(in crate::driver) fn with_scratch_on<R>(
    shared: &crate::driver::Shared,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    // One call of `f` (not one per branch): it is the whole encode path.
    // Without a spare this is the thread's scratch and one flag load.
    let mut buf = SCRATCH.take();
    let from_spare = shared.kept.swap_in(&shared.budget, &mut buf);
    buf.clear();
    let r = f(&mut buf);
    if from_spare {
        if shared.kept.give_back(&shared.budget, buf) {
            shared.kept_spare();
        }
    } else if buf.capacity() <= 64 << 10 {
        SCRATCH.set(buf);
    }
    r
}
