//! What a WebSocket connection keeps, outside the memory budget, after it
//! carried large replies: the buffer a large frame was gathered in is not
//! kept for the connection's life (a red-team pass measured 2,146 KiB per
//! idle connection after two ~1 MiB replies), nor tungstenite's write
//! buffer, which kept the capacity of the largest message written (1,058
//! KiB per connection once the first was fixed): a reply over 64 KiB goes
//! in fragments of 64 KiB, and the server replaces tungstenite's buffers
//! after it once they hold nothing (`transport/ws.rs`, `shed`). Measured
//! with a counting allocator (one measuring test at a time).

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use bytes::Bytes;
use counting::{live, measured};
use remote_core::{remote, Error, Limits, Server};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Blob {
    /// `len` bytes.
    async fn blob(&self, len: u32) -> Result<Bytes, Error>;
}

struct Impl;

#[remote]
impl Blob for Impl {
    async fn blob(&self, len: u32) -> Result<Bytes, Error> {
        Ok(Bytes::from(vec![7u8; len as usize]))
    }
}

const PEERS: usize = 16;

/// What a peer sends after its calls, and holds there.
#[derive(Clone, Copy, Debug)]
enum Then {
    Nothing,
    /// The first byte of a next frame's header: tungstenite holds it, so
    /// its buffers cannot be replaced (`shed`) until the frame ends.
    PartHeader,
    /// A header and 3 bytes of a 10-byte frame.
    PartPayload,
}

/// `PEERS` connections each make `calls` calls for replies of about
/// 1 MiB, read them whole, send what `then` says and idle: each keeps
/// under 192 KiB (2,146 KiB when the gathering buffer was kept, 1,058 KiB
/// when tungstenite's write buffer was, 2,083 KiB with a partial header
/// held back behind one reply: a red-team pass). Measured: about 35 KiB
/// once tungstenite's buffers are replaced, about 100 KiB while a partial
/// frame stops that (its write buffer, which a reply in fragments of
/// 64 KiB leaves at most about twice that).
fn idle_after_large_replies(calls: u32, then: Then) {
    measured(measure(calls, then));
}

async fn measure(calls: u32, then: Then) {
    let limits = Limits {
        max_connections_per_peer: 64,
        ..Limits::default()
    };
    let server = Server::builder()
        .limits(limits)
        .bind("ws://127.0.0.1:0/")
        .await
        .unwrap()
        .serve(|_| remote_core::Remote::new(Arc::new(Impl) as Arc<dyn Blob>));
    let mut held = Vec::new();
    let baseline = live();
    for _ in 0..PEERS {
        let mut r = raw::ws_upgraded(&server).await;
        let mut out = raw::ws_binary(&raw::hello(vec![]));
        for id in 1..=calls {
            let mut args = vec![0x91, 0xce];
            args.extend_from_slice(&((1u32 << 20) - 64).to_be_bytes());
            out.extend(raw::ws_binary(&raw::call(id, 0, "blob", 60_000, &args)));
        }
        match then {
            Then::Nothing => {}
            Then::PartHeader => out.push(0x82),
            Then::PartPayload => out.extend_from_slice(&[0x82, 0x8a, 0, 0, 0, 0, 1, 2, 3]),
        }
        r.get_mut().write_all(&out).await.unwrap();
        let mut returns = 0;
        while returns < calls {
            let (_, p) = raw::bounded(raw::ws_frame(&mut r)).await.expect("a frame");
            if raw::kind(&p[4..]) == raw::RETURN {
                assert!(p.len() > (1 << 20) - 64, "a whole reply");
                returns += 1;
            }
        }
        held.push(r);
    }
    // Idle now: what each connection still holds, once the server is done
    // with the replies.
    let per_connection = || (live() - baseline) / PEERS as isize;
    let settled = raw::eventually(|| per_connection() < 192 << 10).await;
    println!(
        "idle ws connection after {calls} ~1 MiB replies, then {then:?}: {} KiB",
        per_connection() >> 10
    );
    assert!(
        settled,
        "{then:?}: {} KiB per idle connection",
        per_connection() >> 10
    );
    assert_eq!(server.connections(), PEERS);
    drop(held);
}

#[test]
fn two_large_replies() {
    idle_after_large_replies(2, Then::Nothing);
}

#[test]
fn one_large_reply() {
    idle_after_large_replies(1, Then::Nothing);
}

#[test]
fn one_large_reply_then_part_of_a_header() {
    idle_after_large_replies(1, Then::PartHeader);
}

#[test]
fn one_large_reply_then_part_of_a_frame() {
    idle_after_large_replies(1, Then::PartPayload);
}
