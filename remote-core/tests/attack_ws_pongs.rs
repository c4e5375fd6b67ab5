//! Over `ws://`, the WebSocket layer answers each ping itself, queuing the
//! pong in its write buffer while it reads, up to that buffer's bound. A
//! peer that flooded pings and read nothing filled it, and the next reply
//! did not fit: the send failed (`WriteBufferFull`) and the connection
//! died without its reply or a goodbye (found by a red-team pass). The
//! queued pongs now go out before a message, so a peer that stops reading
//! only waits (backpressure), and gets its reply once it reads again.

#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use remote_core::{remote, Error, Limits, Remote, Server};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

#[remote]
pub trait Mark {
    /// Says it was called, and returns 1,000 bytes (more than the room
    /// a pong that does not fit leaves).
    async fn mark(&self) -> Result<Bytes, Error>;
}

struct Impl(Arc<Notify>);

#[remote]
impl Mark for Impl {
    async fn mark(&self) -> Result<Bytes, Error> {
        self.0.notify_one();
        Ok(Bytes::from(vec![5; 1000]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_a_peer_did_not_read_do_not_fail_its_next_reply() {
    let called = Arc::new(Notify::new());
    let handler = called.clone();
    // The peer reads nothing while it writes 50 MB of pings: on a loaded
    // machine that takes longer than the default `write_stall_timeout`
    // (30 s), which would close it for the stall it is (a run of the
    // suite beside two builds took 35 s). What is tried here is the
    // pongs' room, not that bound.
    let limits = Limits {
        write_stall_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let server = Server::builder()
        .limits(limits)
        .bind("ws://127.0.0.1:0/")
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(Impl(handler.clone())) as Arc<dyn Mark>));
    let mut s = raw::ws_upgraded(&server).await;
    s.get_mut()
        .write_all(&raw::ws_binary(&raw::hello(vec![])))
        .await
        .unwrap();
    // 393,216 masked pings of 125 bytes (50 MB of pongs to send back),
    // none of it read: the sockets fill (loopback buffers take megabytes),
    // then the WebSocket layer's buffer.
    let batch = raw::ws_pings(1024);
    for _ in 0..384 {
        raw::bounded(s.get_mut().write_all(&batch)).await.unwrap();
    }
    let wrote = server.stats().calls.bytes_out;
    let call = raw::call(1, 0, "mark", 60_000, &[0x90]);
    raw::bounded(s.get_mut().write_all(&raw::ws_binary(&call)))
        .await
        .unwrap();
    // Still reading nothing while the reply is written (or fails): the
    // handler has run, and the reply follows it at once. (Reading sooner
    // would only let the test pass without the fix; it cannot fail it.)
    raw::bounded(called.notified()).await;
    // The reply's 1,000 bytes were written (to the WebSocket layer,
    // counted out), or its write failed and ended the connection.
    assert!(
        raw::eventually(|| {
            server.stats().calls.bytes_out >= wrote + 1000 || server.connections() == 0
        })
        .await
    );
    // Reading again: the pongs, then the reply.
    let mut pongs = 0;
    loop {
        let (op, p) = raw::bounded(raw::ws_frame(&mut s))
            .await
            .unwrap_or_else(|| panic!("the connection ended after {pongs} pongs, no reply"));
        match op {
            0xA => pongs += 1,
            2 if raw::kind(&p[4..]) == raw::RETURN => break,
            2 if raw::kind(&p[4..]) == 0 => {} // the server's hello
            2 => panic!("kind {}: {:?}", raw::kind(&p[4..]), raw::error_of(&p[4..])),
            other => panic!("websocket opcode {other} after {pongs} pongs"),
        }
    }
    assert!(pongs > 0);
    assert_eq!(server.connections(), 1);
}
