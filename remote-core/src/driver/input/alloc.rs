//! The read buffer's room, and where its allocation starts when the
//! reader knows it.
//!
//! `BytesMut::capacity` counts from the buffer's current start, not from
//! its allocation's: a frame read behind others in the same allocation
//! (a large one, then a call in the same write) looked alone in an
//! allocation of about its size, so a small `Bytes` value shared from it
//! kept the whole buffer alive (a red-team pass: 8,400 stored bytes kept
//! 8.1 MB), and the kept buffer was counted without what lay before its
//! frame (2.0 MB held, 1.05 MB counted). So the reader remembers where the
//! allocation it reads into starts, when it made that allocation itself
//! (and while it stays the one its buffer is in): only a frame at that
//! start may lend its memory to a large `Bytes` value
//! (`codec/shared_bytes.rs`), and only a large frame there has its
//! allocation kept for the next one, counted whole (`keep.rs`).

use bytes::BytesMut;

use super::{Input, MAX_READ, MIN_READ};

impl Input {
    /// Makes room to read into, returning how much there is: what is left
    /// of the buffer, or room for a new chunk once it is full (or, after a
    /// large read, less than half a chunk is left). A buffer left large
    /// by a burst is dropped when empty, once reads have become small.
    pub(super) fn make_room(&mut self) -> usize {
        if self.aside.is_some() && self.buf.capacity() > self.buf.len() {
            // A medium frame's own buffer: room for exactly its rest.
            return self.buf.capacity() - self.buf.len();
        }
        if self.kept > 0 && self.buf.is_empty() {
            // The kept allocation, from its start, once the last large
            // frame is dropped: the next large frame is read whole into
            // it rather than its head into what was left past the last
            // one (which then moved, to make room for the rest). While
            // that frame lives, nothing changes.
            let _ = self.reclaim_tracked(self.kept);
        }
        if self.buf.is_empty()
            && self.kept == 0
            && self.buf.capacity() > 4 * self.chunk.max(self.reserved)
        {
            self.set_unknown(BytesMut::new());
        }
        // After a large read (a burst), a read into a sliver of room (what
        // that read left past its frames) would take only part of what is
        // waiting and need another: a chunk is made room for first. After
        // small reads the buffer is used up first, as the frames read last
        // may still be alive (replies not yet taken by their callers) and
        // making room would then take a new allocation. Only while what
        // the buffer holds is less than a chunk: a large frame in progress
        // has room for exactly its rest (reserved above), and growing the
        // buffer that holds it would copy the frame and double its
        // allocation (tests/attack_read_buffer.rs).
        let low = if self.last_read >= self.chunk / 2 && self.buf.len() < self.chunk {
            self.chunk / 2
        } else {
            1
        };
        if self.buf.capacity() - self.buf.len() < low {
            self.reserve_tracked(self.chunk);
        }
        self.buf.capacity() - self.buf.len()
    }

    /// Sizes the next chunk after a read of `n` bytes into `spare`: a read
    /// that filled a chunk-sized space means more was waiting.
    pub(super) fn adapt(&mut self, n: usize, spare: usize) {
        if n == spare && n >= self.chunk / 2 {
            self.chunk = (self.chunk * 2).min(MAX_READ);
        } else if n < spare && n < self.chunk / 8 {
            self.chunk = (self.chunk / 2).max(MIN_READ);
        }
    }

    /// `buf` becomes the read buffer: a new allocation, its bytes at its
    /// start.
    pub(super) fn set_fresh(&mut self, buf: BytesMut) {
        self.base = start_of(&buf);
        self.buf = buf;
    }

    /// `buf` becomes the read buffer: where its allocation starts is not
    /// known.
    pub(super) fn set_unknown(&mut self, buf: BytesMut) -> BytesMut {
        self.base = 0;
        std::mem::replace(&mut self.buf, buf)
    }

    /// Whether the read buffer starts where its allocation does.
    pub(super) fn at_base(&self) -> bool {
        self.base != 0 && self.base == self.buf.as_ptr() as usize
    }

    /// Room for `room` more bytes behind a large frame's start, which the
    /// buffer holds (and nothing before it): in the allocation the buffer
    /// is in, if that frees it at the allocation's start (a kept buffer
    /// whose last frame is gone); otherwise in a new allocation the frame
    /// starts.
    pub(super) fn large_room(&mut self, room: usize) {
        if self.reclaim_tracked(room) && self.at_base() {
            return;
        }
        let mut own = BytesMut::with_capacity(self.buf.len() + room);
        own.extend_from_slice(&self.buf);
        self.set_fresh(own);
    }

    /// `self.buf.reserve(additional)`, keeping track of the allocation.
    pub(super) fn reserve_tracked(&mut self, additional: usize) {
        reserve_tracked(&mut self.buf, &mut self.base, additional);
    }

    /// `self.buf.try_reclaim(additional)`, keeping track of the allocation.
    pub(super) fn reclaim_tracked(&mut self, additional: usize) -> bool {
        let before = self.buf.as_ptr() as usize;
        let reclaimed = self.buf.try_reclaim(additional);
        moved(&mut self.base, before, &self.buf);
        reclaimed
    }
}

/// Where `buf`'s allocation starts (0: it has none).
fn start_of(buf: &BytesMut) -> usize {
    if buf.capacity() == 0 {
        0
    } else {
        buf.as_ptr() as usize
    }
}

/// `buf.reserve(additional)`, `base` kept as [`Input`]'s is.
pub(super) fn reserve_tracked(buf: &mut BytesMut, base: &mut usize, additional: usize) {
    let before = buf.as_ptr() as usize;
    buf.reserve(additional);
    moved(base, before, buf);
}

/// After an operation that may have moved `buf` (from `before`): the
/// allocation's start is still known if it did not move, or moved to that
/// start (its bytes moved to the front of the same allocation). Moved
/// anywhere else, it is in a new allocation (made while the old one was
/// alive, so it cannot start at the old start) or at an unknown place in
/// the old one.
fn moved(base: &mut usize, before: usize, buf: &BytesMut) {
    let now = buf.as_ptr() as usize;
    if now != before && now != *base {
        *base = 0;
    }
}
