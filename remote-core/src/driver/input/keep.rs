//! The read buffer kept for the next large frame (see
//! [`kept`](crate::driver::kept)): kept in a run of large frames only,
//! counted in the memory budget, and given up when frames become small or
//! the connection idles.

use bytes::{Bytes, BytesMut};

use super::{Input, MAX_READ, MIN_READ};
use crate::driver::kept::may_keep;

impl Input {
    /// A large frame of `total` bytes was split off the read buffer. Its
    /// allocation is kept for the next large frame, counted in the budget
    /// (the buffer takes it back once the frame is dropped, so a stream of
    /// large frames reads each into the same memory instead of a fresh
    /// allocation the system allocator pages in again), if the budget has
    /// room; otherwise the allocation leaves with the frame and what was
    /// read past the frame moves to a small buffer.
    pub(super) fn keep(&mut self, total: usize) {
        let whole = total + self.buf.capacity();
        let shared = self.shared.clone();
        if whole <= self.kept {
            return;
        }
        // Kept only while the budget is less than half used: a kept buffer
        // must not make other connections wait for room.
        let more = whole - self.kept;
        if may_keep(&shared.budget, more) && shared.budget.try_charge(more) {
            self.kept = whole;
            shared.kept.reader_kept(more as isize);
        } else {
            self.shed();
        }
    }

    /// Gives up a large read buffer kept by [`keep`](Self::keep): what was
    /// read past the last frame moves to a small buffer, and the budget gets
    /// the kept bytes back. Also called by the reader's idle check, so an
    /// idle connection does not hold a large buffer for long.
    pub(crate) fn shed(&mut self) {
        self.shed_with(&[]);
    }

    /// [`shed`](Self::shed), with `more` read after what was left.
    fn shed_with(&mut self, more: &[u8]) {
        self.release_kept();
        self.aside = None;
        // The allocation leaves with the frames split off it (and is freed
        // with them). Kept in the buffer (even as the spare room of a view
        // past the last frame), an idle connection would hold up to
        // `max_frame_len` outside the budget.
        let rest = self.set_unknown(BytesMut::new());
        let mut buf = BytesMut::with_capacity((rest.len() + more.len()).max(MIN_READ));
        buf.extend_from_slice(&rest);
        buf.extend_from_slice(more);
        self.set_fresh(buf);
    }

    /// The rest of a medium frame of `total` bytes (over a read chunk, not
    /// large: `SMALL_FRAME`) does not fit in the read buffer: the frame is
    /// read into a buffer of exactly its size, which leaves with it whole
    /// ([`own_frame`](Self::own_frame)), and the read buffer is set aside
    /// meanwhile (dropped if it is larger than a chunk). Grown to take the
    /// frame instead, the read buffer was copied into a new allocation,
    /// shared with the frame split off it, and made again after: two
    /// allocations and a reallocation more per frame (a caller of 36 KB
    /// calls one at a time, BENCHMARKS.md §52).
    pub(super) fn frame_buffer(&mut self, total: usize) {
        let mut own = BytesMut::with_capacity(total);
        own.extend_from_slice(&self.buf);
        let mut old = self.set_unknown(BytesMut::new());
        self.set_fresh(own);
        if self.aside.is_none() {
            old.clear();
            self.aside = Some(if old.capacity() <= MAX_READ {
                old
            } else {
                BytesMut::new()
            });
        }
    }

    /// Splits the frame of `total` bytes off a medium frame's own buffer
    /// ([`frame_buffer`](Self::frame_buffer)): the whole buffer when it
    /// holds just the frame (no copy, no allocation), and the read buffer
    /// set aside takes its place.
    pub(super) fn own_frame(&mut self, total: usize) -> Bytes {
        let aside = self.aside.take().unwrap_or_default();
        if self.buf.len() == total {
            self.set_unknown(aside).freeze()
        } else {
            self.buf.split_to(total).freeze()
        }
    }

    /// A frame left a medium frame's own buffer other than by
    /// [`own_frame`](Self::own_frame) (set aside whole, `defer.rs`): the
    /// read buffer set aside comes back once the frame's buffer is empty.
    pub(super) fn aside_back(&mut self) {
        if let Some(aside) = self.aside.take() {
            if self.buf.is_empty() {
                self.set_unknown(aside);
            }
        }
    }

    /// What the split of a frame off the buffer rarely has to do: the walk
    /// of its arguments becomes the frame's (or the last frame's goes),
    /// and the byte read past a full buffer while it waited
    /// ([`Input::probe`]) goes back behind what the buffer holds (which
    /// had no room for it: it moves to a small buffer first, as
    /// [`shed`](Self::shed) does).
    #[cold]
    pub(super) fn split_off_rare(&mut self) {
        self.walk = self.head_walk.take();
        self.put_back_probe();
    }

    /// The byte read past a full buffer while a wait for room went on
    /// ([`Input::probe`]), if any, goes back behind what the buffer holds
    /// (which had no room for it: it moves to a small buffer first, as
    /// [`shed`](Self::shed) does), once the frame at its head is split off.
    pub(super) fn put_back_probe(&mut self) {
        if let Some(b) = self.probe.take() {
            // The socket is read again: no more watching it for a close
            // (`hang_up.rs`, which starts only once the byte is taken).
            self.hang_up.done();
            // Room for the byte too: shed to its content, the buffer
            // doubled to take it, and the next wait for room read the
            // peer's input into that room, and so on, every turn (the
            // doubling `watch` avoids): a peer flooding small calls while
            // the budget was exhausted had all it sent, 420 KB, held in
            // 680 KB per connection outside the budget
            // (`tests/flood_memory.rs`).
            self.shed_with(&[b]);
        }
    }

    /// Gives the kept count back to the budget, returning it.
    pub(super) fn release_kept(&mut self) {
        let n = std::mem::take(&mut self.kept);
        if n > 0 {
            self.shared.budget.release(n);
            self.shared.kept.reader_kept(-(n as isize));
        }
    }

    /// [`shed`](Self::shed)s a kept buffer unless part of a frame is in it.
    pub(crate) fn shed_if_idle(&mut self) {
        if self.kept > 0 && self.buf.is_empty() && self.reserved == 0 {
            self.shed();
        }
    }

    /// [`shed`](Self::shed)s a kept buffer, if any, whatever is in it
    /// (what was read past the last frame moves to a small buffer): the
    /// budget is short (`reader.rs`).
    pub(crate) fn shed_kept(&mut self) {
        if self.kept > 0 {
            self.shed();
        }
    }

    /// Bytes counted in the budget for a kept large read buffer.
    #[inline]
    pub(crate) fn kept(&self) -> usize {
        self.kept
    }
}
