//! The physical baseline: a length-prefixed frame (u32 big-endian length,
//! then the payload) written to the same transport, echoed by a task on the
//! other end, read back. No encoding, no dispatch, no call table. The
//! client reads through an 8 KiB `BufReader` (one `read` for many small
//! frames), the echo task copies bytes through a 64 KiB buffer.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The client end of a raw echo.
#[derive(Debug)]
pub struct RawClient<R, W> {
    r: BufReader<R>,
    w: W,
    buf: Vec<u8>,
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    buf.clear();
    buf.extend_from_slice(&len);
    buf.resize(4 + u32::from_be_bytes(len) as usize, 0);
    r.read_exact(&mut buf[4..]).await?;
    Ok(())
}

/// Spawns the echo server on `(r, w)`: writes back whatever bytes arrive,
/// as they arrive (frames are echoed verbatim, so a byte echo is a frame
/// echo; pipelined frames go back in one write, the way a real server's
/// write coalescing would send them).
pub fn spawn_echo<R, W>(mut r: R, mut w: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> RawClient<R, W> {
    /// A client over the given halves.
    pub fn new(r: R, w: W) -> Self {
        RawClient {
            r: BufReader::new(r),
            w,
            buf: Vec::new(),
        }
    }

    /// One round trip of an 8-byte message (a u64), like a trivial call.
    pub async fn ping(&mut self, x: u64) {
        self.buf.clear();
        self.buf.extend_from_slice(&8u32.to_be_bytes());
        self.buf.extend_from_slice(&x.to_be_bytes());
        self.w.write_all(&self.buf).await.expect("write");
        read_frame(&mut self.r, &mut self.buf).await.expect("read");
        assert_eq!(self.buf[4..12], x.to_be_bytes());
    }

    /// `n` round trips of 8-byte messages pipelined: all `n` frames are
    /// written in one buffer, then the `n` echoes are read back (at most `n`
    /// in flight, the way a pipelined client would batch its writes).
    pub async fn ping_many(&mut self, from: u64, n: u64) {
        self.buf.clear();
        for x in from..from + n {
            self.buf.extend_from_slice(&8u32.to_be_bytes());
            self.buf.extend_from_slice(&x.to_be_bytes());
        }
        self.w.write_all(&self.buf).await.expect("write");
        for x in from..from + n {
            read_frame(&mut self.r, &mut self.buf).await.expect("read");
            assert_eq!(self.buf[4..12], x.to_be_bytes());
        }
    }

    /// One round trip of `payload`.
    pub async fn echo(&mut self, payload: &[u8]) {
        self.buf.clear();
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(payload);
        self.w.write_all(&self.buf).await.expect("write");
        read_frame(&mut self.r, &mut self.buf).await.expect("read");
        assert_eq!(self.buf.len(), 4 + payload.len());
    }
}

/// A raw echo over an in-memory duplex (the pipe `Connection::pair` uses).
pub fn memory() -> RawClient<
    tokio::io::ReadHalf<tokio::io::DuplexStream>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
> {
    let (a, b) = super::duplex();
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    spawn_echo(br, bw);
    RawClient::new(ar, aw)
}

/// A raw echo over TCP loopback.
pub async fn tcp() -> RawClient<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf> {
    let (c, s) = super::tcp_pair().await;
    let (sr, sw) = s.into_split();
    spawn_echo(sr, sw);
    let (cr, cw) = c.into_split();
    RawClient::new(cr, cw)
}
