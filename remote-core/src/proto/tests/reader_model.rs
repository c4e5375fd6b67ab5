//! The fast paths of [`Reader`] against a plain model of the reader as it
//! was before them (byte by byte, one `take` per field): on any bytes they
//! return the same values, positions and errors (offset and text), so a
//! hostile frame is refused exactly as before.

use proptest::prelude::*;

use super::*;
use crate::proto::value::TOO_DEEP;

/// The model: a cursor that reads one byte or field at a time.
struct Model<'a> {
    buf: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, Malformed>;

impl Model<'_> {
    fn err(&self, reason: String) -> Malformed {
        Malformed {
            offset: self.pos,
            reason,
        }
    }
    fn take(&mut self, n: usize) -> R<usize> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.err(format!("needs {n} more bytes, {left} left")));
        }
        self.pos += n;
        Ok(self.pos - n)
    }
    fn byte(&mut self) -> R<u8> {
        let at = self.take(1)?;
        Ok(self.buf[at])
    }
    fn be(&mut self, n: usize) -> R<u64> {
        let at = self.take(n)?;
        Ok(self.buf[at..at + n]
            .iter()
            .fold(0, |acc, b| (acc << 8) | u64::from(*b)))
    }
    fn uint(&mut self) -> R<u64> {
        let m = self.byte()?;
        match m {
            0x00..=0x7f => Ok(u64::from(m)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            0xd0..=0xd3 => {
                let n = 1usize << (m - 0xd0);
                let v = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                let signed = ((v << shift) as i64) >> shift;
                u64::try_from(signed)
                    .map_err(|_| self.err("expected a non-negative integer".into()))
            }
            _ => {
                self.pos -= 1;
                Err(self.err(format!("expected an integer, found marker 0x{m:02x}")))
            }
        }
    }
    fn array_len(&mut self) -> R<usize> {
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
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.err(format!("array of {n} elements cannot fit in {left} bytes")));
        }
        Ok(n)
    }
    /// Skips a string or binary with an `n`-byte length.
    fn sized(&mut self, n: usize) -> R<usize> {
        let len = self.be(n)? as usize;
        self.take(len)?;
        Ok(0)
    }
    /// Recursive (the inputs here are short, so their depth is bounded).
    fn skip(&mut self, open: usize, depth: usize, refs: &mut Vec<FoundRef>) -> R<()> {
        let m = self.byte()?;
        let children = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x80..=0x8f => usize::from(m & 0x0f) * 2,
            0x90..=0x9f => usize::from(m & 0x0f),
            0xa0..=0xbf => {
                self.take(usize::from(m & 0x1f))?;
                0
            }
            0xc4 | 0xd9 => self.sized(1)?,
            0xc5 | 0xda => self.sized(2)?,
            0xc6 | 0xdb => self.sized(4)?,
            0xcc | 0xd0 => self.take(1).map(|_| 0)?,
            0xcd | 0xd1 => self.take(2).map(|_| 0)?,
            0xca | 0xce | 0xd2 => self.take(4).map(|_| 0)?,
            0xcb | 0xcf | 0xd3 => self.take(8).map(|_| 0)?,
            0xdc => self.be(2)? as usize,
            0xdd => self.be(4)? as usize,
            0xde => self.be(2)? as usize * 2,
            0xdf => (self.be(4)? as usize) * 2,
            0xd6 => {
                let ty = self.byte()? as i8;
                let at = self.take(4)?;
                let b = &self.buf[at..at + 4];
                let id = ObjectId(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                match ty {
                    1 => refs.push((true, id)),
                    2 => refs.push((false, id)),
                    _ => return Err(self.err(format!("unknown extension type {ty}"))),
                }
                0
            }
            0xc1 => {
                self.pos -= 1;
                return Err(self.err("marker 0xc1 is never used in msgpack".into()));
            }
            _ => {
                self.pos -= 1;
                return Err(
                    self.err("extension types other than 4-byte references are not allowed".into())
                );
            }
        };
        if children > 0 {
            let left = self.buf.len() - self.pos;
            if children > left {
                return Err(self.err(format!(
                    "container of {children} items cannot fit in {left} bytes"
                )));
            }
            if open + 1 >= depth {
                return Err(self.err(format!("{TOO_DEEP} = {depth}")));
            }
            for _ in 0..children {
                self.skip(open + 1, depth, refs)?;
            }
        }
        Ok(())
    }
}

/// Bytes that are mostly msgpack markers the reader has fast paths for.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let marker = prop_oneof![
        any::<u8>(),
        Just(0xcc),
        Just(0xcd),
        Just(0x91),
        Just(0x92),
        Just(0x93),
        Just(0x81),
        Just(0xd6),
        Just(0x01),
        Just(0x02),
        Just(0xdc),
        Just(0xc0),
        Just(0xa1),
        // Skipped by their marker alone (`FIXED_SIZE`), whole or cut short.
        Just(0xcf),
        Just(0xcb),
        Just(0xd2),
        Just(0xd1),
        Just(0xa5),
        Just(0xbf),
        Just(0xc3),
    ];
    proptest::collection::vec(marker, 0..48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn skip_value_matches_the_model(b in bytes(), depth in 1usize..6) {
        let (mut fast, mut model) = (Vec::new(), Vec::new());
        let mut r = Reader::new(&b);
        let got = r.skip_value(depth, &mut fast).map(|range| (range, r.pos()));
        let mut m = Model { buf: &b, pos: 0 };
        let want = m.skip(0, depth, &mut model).map(|()| (0..m.pos, m.pos));
        prop_assert_eq!(got, want);
        prop_assert_eq!(fast, model);
    }

    #[test]
    fn uint_and_array_len_match_the_model(b in bytes()) {
        let mut r = Reader::new(&b);
        let mut m = Model { buf: &b, pos: 0 };
        prop_assert_eq!(r.uint().map(|v| (v, r.pos())), m.uint().map(|v| (v, m.pos)));
        let mut r = Reader::new(&b);
        let mut m = Model { buf: &b, pos: 0 };
        prop_assert_eq!(r.array_len().map(|v| (v, r.pos())), m.array_len().map(|v| (v, m.pos)));
    }
}

#[test]
fn fast_path_edges_read_as_before() {
    // A fixint at the end of a frame, and a fixarray one byte too long.
    let mut r = Reader::new(&[0x05]);
    assert_eq!(r.uint(), Ok(5));
    assert_eq!(
        Reader::new(&[0x92, 0x01]).array_len().unwrap_err().reason,
        "array of 2 elements cannot fit in 1 bytes"
    );
    assert_eq!(
        Reader::new(&[0xcd, 0x01]).uint().unwrap_err().reason,
        "needs 2 more bytes, 1 left"
    );
}

/// `skip_value` and the model on the same bytes and depth limit.
fn same_as_model(b: &[u8], depth: usize) {
    let (mut fast, mut model) = (Vec::new(), Vec::new());
    let mut r = Reader::new(b);
    let got = r.skip_value(depth, &mut fast).map(|range| (range, r.pos()));
    let mut m = Model { buf: b, pos: 0 };
    let want = m.skip(0, depth, &mut model).map(|()| (0..m.pos, m.pos));
    assert_eq!(got, want, "{b:02x?} at depth {depth}");
    assert_eq!(fast, model);
}

/// Values nested past the 16 levels `skip_value` keeps inline (the random
/// inputs above never get that deep): the pending counts spilled to the
/// heap are read back in order, at every depth limit around the nesting,
/// whole or cut short.
#[test]
fn deep_values_read_as_before() {
    for levels in [15usize, 16, 17, 18, 33] {
        // Each level's container first, then more items after it: every
        // level has items left when the walk comes back up, a different
        // number at each level (2 to 5 items a level).
        let items = |level: usize| 2 + level % 4;
        let mut first: Vec<u8> = (0..levels).map(|l| 0x90 | items(l) as u8).collect();
        first.push(0xc0);
        // The items after are one-item arrays: the depth they are read at
        // tells which level they were counted in.
        for l in (0..levels).rev() {
            first.extend([0x91, 0x01].repeat(items(l) - 1));
        }
        // A scalar first, then the next level, and a reference inside.
        let mut last = [0x92, 0x01].repeat(levels);
        last.extend([0xd6, 0x01, 0, 0, 0, 9]);
        for b in [first, last] {
            for cut in [b.len(), b.len() - 1] {
                for depth in [levels - 1, levels, levels + 1, levels + 2, 64] {
                    same_as_model(&b[..cut], depth);
                }
            }
        }
    }
}
