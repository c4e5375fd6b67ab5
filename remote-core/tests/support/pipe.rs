//! A hand-played peer over an in-memory pipe: our connection serves a root
//! object to a raw peer that sent a hello, and the test reads and writes
//! that peer's frames itself. Included by
//! `#[path = "support/pipe.rs"] mod pipe;`.
#![allow(dead_code, unreachable_pub)]

use remote_core::proto::{encode, Hello, Reader};
use remote_core::{Connection, ConnectionBuilder, Interface, Limits, Remote};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// The raw peer's reading half.
pub type PeerRead = ReadHalf<DuplexStream>;
/// The raw peer's writing half.
pub type PeerWrite = WriteHalf<DuplexStream>;

/// Our connection serving `root` with `limits` over a pipe to a raw peer
/// whose hello listed `features`; returns the peer's halves.
pub async fn raw_peer<T: ?Sized + Interface>(
    root: Remote<T>,
    limits: Limits,
    features: Vec<&str>,
) -> (Connection, PeerRead, PeerWrite) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(ours);
    let (tr, mut tw) = tokio::io::split(theirs);
    let hello = encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features,
        auth: None,
    });
    tw.write_all(&hello).await.unwrap();
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .serve(root)
        .over(r, w, "raw peer")
        .await
        .unwrap();
    (conn, tr, tw)
}

/// Reads one frame's payload (`None` at the end of the stream).
pub async fn frame(r: &mut PeerRead) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut f).await.ok()?;
    Some(f)
}

/// `(kind, first field as an integer if it is one)`: a ping's or an
/// invalidate's token, a call's or a reply's id.
pub fn head(f: &[u8]) -> (u64, Option<u64>) {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    let k = r.uint().unwrap();
    (k, r.uint().ok())
}

/// A frame's message kind.
pub fn kind(f: &[u8]) -> u64 {
    head(f).0
}
