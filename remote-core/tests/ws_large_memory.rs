//! What a WebSocket connection keeps, outside the memory budget, after it
//! carried large replies: the buffer a large frame was gathered in is not
//! kept for the connection's life (a red-team pass measured 2,146 KiB per
//! idle connection after two ~1 MiB replies), nor tungstenite's write
//! buffer, which kept the capacity of the largest message written (1,058
//! KiB per connection once the first was fixed): the server replaces
//! tungstenite's buffers after a message over 64 KiB (`transport/ws.rs`,
//! `shed`); about 35 KiB now. Measured with a counting allocator (one
//! test per binary).

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use bytes::Bytes;
use counting::live;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_connection_does_not_keep_the_buffers_of_large_replies() {
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
        // Two calls for replies of about 1 MiB each, read whole.
        let mut out = raw::ws_binary(&raw::hello(vec![]));
        for id in 1..=2u32 {
            let mut args = vec![0x91, 0xce];
            args.extend_from_slice(&((1u32 << 20) - 64).to_be_bytes());
            out.extend(raw::ws_binary(&raw::call(id, 0, "blob", 60_000, &args)));
        }
        r.get_mut().write_all(&out).await.unwrap();
        let mut returns = 0;
        while returns < 2 {
            let (_, p) = raw::bounded(raw::ws_frame(&mut r)).await.expect("a frame");
            if raw::kind(&p[4..]) == raw::RETURN {
                returns += 1;
            }
        }
        held.push(r);
    }
    // Idle now: what each connection still holds, once the server is done
    // with the replies (under 128 KiB; 2,146 KiB when the gathering buffer
    // was kept, 1,058 KiB when tungstenite's write buffer was).
    let per_connection = || (live() - baseline) / PEERS as isize;
    let settled = raw::eventually(|| per_connection() < 128 << 10).await;
    println!(
        "idle ws connection after two ~1 MiB replies: {} KiB",
        per_connection() >> 10
    );
    assert!(
        settled,
        "{} KiB per idle connection",
        per_connection() >> 10
    );
    drop(held);
}
