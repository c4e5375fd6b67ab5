//! A bounded msgpack reader and writer.
//!
//! The reader never allocates from a peer's declared length: every declared
//! string, binary, array or map length is checked against the bytes left in
//! the frame (an array of N elements needs at least N bytes), nesting depth
//! is limited, and all arithmetic is checked. The walker also collects the
//! references inside a value so they are counted in message order.

use super::{ObjectId, EXT_RECEIVER_OWN, EXT_SENDER_EXPORT};

/// Why bytes are not a well-formed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message at byte {offset}: {reason}")]
pub struct Malformed {
    /// Byte offset in the frame.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

/// How the reason of a [`Malformed`] for a value nested too deep starts.
pub const TOO_DEEP: &str = "nesting deeper than max_depth";

/// A reference found inside a value: `(is_sender_export, id)`.
pub type FoundRef = (bool, ObjectId);

/// Checks that the next value in `r` is well formed (lengths fit, depth at
/// most `max_depth`, only reference extension types), collecting the
/// references in it. This is what every peer value goes through before
/// serde sees it.
pub fn walk(
    r: &mut Reader<'_>,
    max_depth: usize,
    refs: &mut Vec<FoundRef>,
) -> Result<(), Malformed> {
    r.skip_value(max_depth, refs).map(|_| ())
}

/// A cursor over one frame's bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Items of the containers walked so far (see [`items`](Self::items)).
    items: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            items: 0,
        }
    }

    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to `pos` (at most the end), past what an earlier walk of the
    /// same bytes already checked.
    pub(crate) fn skip_to(&mut self, pos: usize) {
        self.pos = pos.min(self.buf.len());
    }

    /// Items in the arrays and maps [`skip_value`](Self::skip_value) has
    /// walked so far (a map's key and value are two): what a value decodes
    /// into grows with them, not with its bytes alone (an empty string is
    /// one byte on the wire and a `String` of 24 in memory).
    pub fn items(&self) -> usize {
        self.items
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error at the current offset.
    pub fn err(&self, reason: impl Into<String>) -> Malformed {
        Malformed {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        match self.buf.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.short(n)),
        }
    }

    /// The error of a [`take`](Self::take) past the end (out of line: the
    /// hot path only compares lengths).
    #[cold]
    #[inline(never)]
    fn short(&self, n: usize) -> Malformed {
        self.err(format!("needs {n} more bytes, {} left", self.remaining()))
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, Malformed> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.short(1)),
        }
    }

    /// A big-endian integer of `n` bytes (1, 2, 4 or 8).
    #[inline]
    fn be(&mut self, n: usize) -> Result<u64, Malformed> {
        let s = self.take(n)?;
        Ok(match *s {
            [a] => u64::from(a),
            [a, b] => u64::from(u16::from_be_bytes([a, b])),
            [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
            _ => s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        })
    }

    fn peek(&self) -> Result<u8, Malformed> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end of frame"))
    }

    /// The next byte, not consumed (`None` at the end).
    pub(crate) fn next_byte(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Whether the next value is nil (consumes it if so).
    pub fn nil(&mut self) -> Result<bool, Malformed> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Reads a non-negative integer.
    #[inline]
    pub fn uint(&mut self) -> Result<u64, Malformed> {
        // Positive fixints and one- or two-byte unsigned integers (kinds,
        // ids, timeouts): no call.
        match self.buf.get(self.pos..self.pos + 3) {
            Some(&[m @ 0x00..=0x7f, ..]) => {
                self.pos += 1;
                Ok(u64::from(m))
            }
            Some(&[0xcc, v, _]) => {
                self.pos += 2;
                Ok(u64::from(v))
            }
            Some(&[0xcd, a, b]) => {
                self.pos += 3;
                Ok(u64::from(u16::from_be_bytes([a, b])))
            }
            _ => self.uint_slow(),
        }
    }

    /// [`uint`](Self::uint) past the fixint fast path.
    fn uint_slow(&mut self) -> Result<u64, Malformed> {
        let m = self.byte()?;
        match m {
            0x00..=0x7f => Ok(u64::from(m)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            // Signed encodings of non-negative values are accepted.
            0xd0..=0xd3 => {
                let n = 1usize << (m - 0xd0);
                let v = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                let signed = ((v << shift) as i64) >> shift;
                u64::try_from(signed).map_err(|_| self.err("expected a non-negative integer"))
            }
            _ => {
                self.pos -= 1;
                Err(self.err(format!("expected an integer, found marker 0x{m:02x}")))
            }
        }
    }

    /// Reads an integer that must fit in `u32`.
    #[inline]
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let start = self.pos;
        let v = self.uint()?;
        u32::try_from(v).map_err(|_| Malformed {
            offset: start,
            reason: format!("{v} does not fit in u32"),
        })
    }

    /// Reads an array header.
    #[inline]
    pub fn array_len(&mut self) -> Result<usize, Malformed> {
        // A fixarray that fits: no call.
        if let Some(&m @ 0x90..=0x9f) = self.buf.get(self.pos) {
            let n = usize::from(m & 0x0f);
            if n < self.remaining() {
                self.pos += 1;
                return Ok(n);
            }
        }
        self.array_len_slow()
    }

    /// [`array_len`](Self::array_len) past the fixarray fast path.
    fn array_len_slow(&mut self) -> Result<usize, Malformed> {
        let m = self.byte()?;
        let n = match m {
            0x90..=0x9f => usize::from(m & 0x0f),
            0xdc => self.be(2)? as usize,
            0xdd => self.be(4)? as usize,
            _ => {
                self.pos -= 1;
                return Err(self.err(format!("expected an array, found marker 0x{m:02x}")));
            }
        };
        if n > self.remaining() {
            return Err(self.err(format!(
                "array of {n} elements cannot fit in {} bytes",
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// Reads a string.
    #[inline]
    pub fn str(&mut self) -> Result<&'a str, Malformed> {
        let m = self.byte()?;
        let n = match m {
            0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => {
                self.pos -= 1;
                return Err(self.err(format!("expected a string, found marker 0x{m:02x}")));
            }
        };
        let start = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| Malformed {
            offset: start,
            reason: "string is not UTF-8".into(),
        })
    }

    /// Reads a binary blob.
    pub fn bin(&mut self) -> Result<&'a [u8], Malformed> {
        let m = self.byte()?;
        let n = match m {
            0xc4 => self.be(1)? as usize,
            0xc5 => self.be(2)? as usize,
            0xc6 => self.be(4)? as usize,
            _ => {
                self.pos -= 1;
                return Err(self.err(format!("expected binary, found marker 0x{m:02x}")));
            }
        };
        self.take(n)
    }

    /// Skips one value of any type, checking it is well formed, no deeper
    /// than `depth`, and collecting references into `refs`. Returns the
    /// value's byte range.
    pub(crate) fn skip_value(
        &mut self,
        depth: usize,
        refs: &mut Vec<FoundRef>,
    ) -> Result<std::ops::Range<usize>, Malformed> {
        let start = self.pos;
        // A scalar (a return value, most often) needs no stack.
        let children = self.next_item(refs)?;
        if children == 0 {
            return Ok(start..self.pos);
        }
        self.enter(children, 0, depth)?;
        // A container of scalars (the arguments of most calls) needs no
        // stack either: its items are read here until one is a container.
        let mut left = children;
        let nested = loop {
            if left == 0 {
                return Ok(start..self.pos);
            }
            left -= 1;
            let children = self.next_item(refs)?;
            if children > 0 {
                break children;
            }
        };
        self.enter(nested, 1, depth)?;
        // An explicit stack instead of recursion: depth cannot overflow ours.
        // The first levels live inline, so a typical value allocates nothing.
        let mut pending = Stack::default();
        pending.push(0);
        pending.push(left);
        let mut todo: usize = nested;
        loop {
            while todo == 0 {
                match pending.pop() {
                    Some(t) => todo = t,
                    None => return Ok(start..self.pos),
                }
            }
            todo -= 1;
            let children = self.next_item(refs)?;
            if children > 0 {
                self.enter(children, pending.len(), depth)?;
                pending.push(todo);
                todo = children;
            }
        }
    }

    /// Reads one item's marker and what follows it up to its children
    /// ([`item`](Self::item)), returning how many children it has. An item
    /// whose size its marker alone tells (a number, nil, a bool, a short
    /// string: most items of a large value) is skipped here, by a table.
    #[inline(always)]
    fn next_item(&mut self, refs: &mut Vec<FoundRef>) -> Result<usize, Malformed> {
        let m = self.byte()?;
        let n = FIXED_SIZE[usize::from(m)];
        if n != SIZED_LATER && usize::from(n) <= self.remaining() {
            self.pos += usize::from(n);
            return Ok(0);
        }
        // Anything else, or one cut short (which `item` reports).
        self.item(m, refs)
    }

    /// Checks a container of `children` items opened with `open` containers
    /// around it: its items must fit, and its depth stay within `depth`.
    #[inline]
    fn enter(&mut self, children: usize, open: usize, depth: usize) -> Result<(), Malformed> {
        if children > self.remaining() {
            return Err(self.err(format!(
                "container of {children} items cannot fit in {} bytes",
                self.remaining()
            )));
        }
        if open + 1 >= depth {
            return Err(self.err(format!("{TOO_DEEP} = {depth}")));
        }
        // Counted once it fits: a value that parses has at most one item
        // per byte; a walk that fails is discarded, and cannot overflow
        // the count either (at most `depth` open claims, each of at most
        // the bytes left).
        self.items += children;
        Ok(())
    }

    /// Checks one item whose marker `m` was just read: skips a scalar's
    /// bytes, records a reference, and returns how many items a container
    /// holds (0 for a scalar).
    #[inline]
    fn item(&mut self, m: u8, refs: &mut Vec<FoundRef>) -> Result<usize, Malformed> {
        Ok(match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x80..=0x8f => usize::from(m & 0x0f) * 2,
            0x90..=0x9f => usize::from(m & 0x0f),
            0xa0..=0xbf => {
                self.take(usize::from(m & 0x1f))?;
                0
            }
            0xc4 | 0xd9 => {
                let n = self.be(1)? as usize;
                self.take(n)?;
                0
            }
            0xc5 | 0xda => {
                let n = self.be(2)? as usize;
                self.take(n)?;
                0
            }
            0xc6 | 0xdb => {
                let n = self.be(4)? as usize;
                self.take(n)?;
                0
            }
            0xcc | 0xd0 => {
                self.take(1)?;
                0
            }
            0xcd | 0xd1 => {
                self.take(2)?;
                0
            }
            0xca | 0xce | 0xd2 => {
                self.take(4)?;
                0
            }
            0xcb | 0xcf | 0xd3 => {
                self.take(8)?;
                0
            }
            0xdc => self.be(2)? as usize,
            0xdd => self.be(4)? as usize,
            0xde => (self.be(2)? as usize) * 2,
            0xdf => (self.be(4)? as usize)
                .checked_mul(2)
                .ok_or_else(|| self.err("map length overflows"))?,
            0xd6 => {
                let ty = self.byte()? as i8;
                let payload = self.take(4)?;
                let id = ObjectId(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
                match ty {
                    EXT_SENDER_EXPORT => refs.push((true, id)),
                    EXT_RECEIVER_OWN => refs.push((false, id)),
                    _ => return Err(self.err(format!("unknown extension type {ty}"))),
                }
                0
            }
            0xd4 | 0xd5 | 0xd7 | 0xd8 | 0xc7 | 0xc8 | 0xc9 => {
                self.pos -= 1;
                return Err(
                    self.err("extension types other than 4-byte references are not allowed")
                );
            }
            0xc1 => {
                self.pos -= 1;
                return Err(self.err("marker 0xc1 is never used in msgpack"));
            }
        })
    }
}

/// [`FIXED_SIZE`] of a marker whose item's size is not the marker's alone.
const SIZED_LATER: u8 = u8::MAX;

/// For each marker byte, the bytes that follow it when the marker alone
/// tells (and the item has no children); [`SIZED_LATER`] otherwise
/// (containers, long strings and binaries, extensions, 0xc1).
const FIXED_SIZE: [u8; 256] = {
    let mut t = [SIZED_LATER; 256];
    let mut m = 0;
    while m < 256 {
        t[m] = match m as u8 {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0xa0..=0xbf => (m & 0x1f) as u8,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xca | 0xce | 0xd2 => 4,
            0xcb | 0xcf | 0xd3 => 8,
            _ => SIZED_LATER,
        };
        m += 1;
    }
    t
};

/// A stack of pending element counts: 16 levels inline, then the heap.
#[derive(Default)]
struct Stack {
    inline: [usize; 16],
    len: usize,
    spill: Vec<usize>,
}

impl Stack {
    fn len(&self) -> usize {
        self.len + self.spill.len()
    }
    fn push(&mut self, v: usize) {
        if self.len < self.inline.len() && self.spill.is_empty() {
            self.inline[self.len] = v;
            self.len += 1;
        } else {
            self.spill.push(v);
        }
    }
    fn pop(&mut self) -> Option<usize> {
        if let Some(v) = self.spill.pop() {
            return Some(v);
        }
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.inline[self.len])
    }
}

/// Appends msgpack encodings to a buffer.
pub(crate) mod enc {
    #[inline]
    pub(crate) fn uint(buf: &mut Vec<u8>, v: u64) {
        if v < 0x80 {
            buf.push(v as u8);
        } else if v <= 0xff {
            buf.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            buf.push(0xcd);
            buf.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            buf.push(0xce);
            buf.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            buf.push(0xcf);
            buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    #[inline]
    pub(crate) fn array_len(buf: &mut Vec<u8>, n: usize) {
        if n < 16 {
            buf.push(0x90 | n as u8);
        } else if n <= 0xffff {
            buf.push(0xdc);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            buf.push(0xdd);
            buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    #[inline]
    pub(crate) fn str(buf: &mut Vec<u8>, s: &str) {
        let n = s.len();
        if n < 32 {
            buf.push(0xa0 | n as u8);
        } else if n <= 0xff {
            buf.extend_from_slice(&[0xd9, n as u8]);
        } else if n <= 0xffff {
            buf.push(0xda);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            buf.push(0xdb);
            buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn bin(buf: &mut Vec<u8>, b: &[u8]) {
        let n = b.len();
        if n <= 0xff {
            buf.extend_from_slice(&[0xc4, n as u8]);
        } else if n <= 0xffff {
            buf.push(0xc5);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            buf.push(0xc6);
            buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        buf.extend_from_slice(b);
    }

    pub(crate) fn nil(buf: &mut Vec<u8>) {
        buf.push(0xc0);
    }
}
