//! The buffer values are encoded onto: capped at the frame limit.

/// The buffer a value is encoded onto, which refuses to grow past `cap`
/// bytes: a value that cannot fit in a frame stops encoding there, instead
/// of being encoded whole first (a reply of 16 MiB made its server allocate
/// 32 MiB more before it was refused). Not for a sequence or map of
/// unknown length (`#[serde(flatten)]`, an iterator without an exact size),
/// which rmp_serde gathers in a buffer of its own before writing it here.
pub(crate) struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    cap: usize,
    /// Whether a write was refused.
    pub(super) over: bool,
}

impl<'a> Capped<'a> {
    pub(super) fn new(buf: &'a mut Vec<u8>, cap: usize) -> Self {
        Capped {
            buf,
            cap,
            over: false,
        }
    }
}

impl Capped<'_> {
    /// Writes `b`, which needs a larger buffer, unless that passes the cap.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, b: &[u8]) -> std::io::Result<()> {
        if self.buf.len().saturating_add(b.len()) > self.cap {
            self.over = true;
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }
}

impl std::io::Write for Capped<'_> {
    #[inline(always)]
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.write_all(b)?;
        Ok(b.len())
    }

    #[inline(always)]
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        // Within the buffer's capacity (allocated already), no check: the
        // cap bounds what encoding allocates, and the frame's length is
        // checked once it is encoded.
        if b.len() > self.buf.capacity() - self.buf.len() {
            return self.grow(b);
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
