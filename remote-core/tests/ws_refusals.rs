//! What a `ws://` server refuses once a connection is open (a WebSocket
//! message against the protocol, or counting more than the memory budget)
//! is told to the peer: a goodbye naming it, the rest of what the peer
//! sends read and dropped (neither scanned nor counted) so the goodbye is
//! not lost to a reset, and nothing of the budget held meanwhile but what
//! the WebSocket layer can hold. (Red-team passes: the peer saw only a
//! broken pipe; refused peers' messages, still counted, held the budget
//! through the drain; a new message inside one in fragments waited for
//! room its first fragment held, until the peer's pace closed it.)

#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use remote_core::collections::{RemoteMap, SharedMap};
use remote_core::proto::Reader;
use remote_core::{Limits, Server, ServerHandle};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A `ws://` server of a map on a 4 MiB budget, taking frames of up to
/// 4 MiB.
async fn server() -> ServerHandle {
    let map = SharedMap::<u32, String>::new();
    Server::builder()
        .limits(Limits {
            memory_budget: 4 << 20,
            max_frame_len: 4 << 20,
            ..Limits::default()
        })
        .bind("ws://127.0.0.1:0/")
        .await
        .unwrap()
        .serve(move |_| map.remote())
}

/// The reason of the goodbye `s` gets next (messages before it skipped),
/// or `None` if the stream ends first.
async fn goodbye(s: &mut BufReader<TcpStream>) -> Option<String> {
    while let Some((_, m)) = raw::ws_frame(s).await {
        if m.len() > 4 && raw::kind(&m[4..]) == raw::GOODBYE {
            let mut r = Reader::new(&m[6..]);
            return Some(r.str().unwrap().to_owned());
        }
    }
    None
}

/// The first fragment of a message holding a frame of 1 MiB less 4: its
/// length prefix only. Counted twice from it: 2 MiB.
fn first_of_a_large_message() -> Vec<u8> {
    raw::ws_fragment(true, false, &((1u32 << 20) - 4).to_be_bytes())
}

/// Each violation, sent on an open connection behind a message in
/// fragments under way (counted 2 MiB) where that is allowed, gets a
/// goodbye naming it, and the count goes back by then; the peer then
/// writes 8 MiB more without a reset (read and dropped), and another
/// client is served on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_violations_get_a_goodbye_naming_them_and_hold_nothing() {
    raw::bounded(async {
        let server = server().await;
        let text = {
            let mut f = raw::ws_binary(b"hello");
            f[0] = 0x81;
            f
        };
        let bad_close = {
            // A close whose reason is not UTF-8 (code 1000).
            let mut f = raw::ws_binary(&[0x03, 0xe8, 0xff, 0xfe]);
            f[0] = 0x88;
            f
        };
        let cases: [(&str, Vec<Vec<u8>>, &str); 6] = [
            (
                "a close reason not in UTF-8",
                vec![bad_close],
                "text that is not UTF-8",
            ),
            ("text", vec![text], "a text websocket message"),
            (
                "two frames in one message",
                vec![raw::ws_binary(&[0, 0, 0, 9, 1, 2])],
                "must hold exactly one frame",
            ),
            (
                "a new message inside one",
                vec![first_of_a_large_message(), raw::ws_binary(&[0; 8])],
                "a new websocket message inside one in fragments",
            ),
            (
                "a continuation outside a message",
                vec![raw::ws_fragment(false, true, &[0; 8])],
                "a websocket continuation frame outside a message",
            ),
            (
                "a message counting more than the budget",
                vec![raw::ws_fragment(
                    true,
                    false,
                    &((3u32 << 20) - 4).to_be_bytes(),
                )],
                "limit exceeded: memory_budget",
            ),
        ];
        for (name, frames, reason) in cases {
            let mut s = raw::ws_opened(&server).await;
            for f in &frames {
                s.get_mut().write_all(f).await.unwrap();
            }
            let said = goodbye(&mut s).await;
            assert!(
                said.as_deref().is_some_and(|r| r.contains(reason)),
                "{name}: {said:?}"
            );
            // Refused before the goodbye: nothing of the message counted.
            assert!(
                server.buffered_bytes() < 64 << 10,
                "{name}: {} bytes counted",
                server.buffered_bytes()
            );
            // Read and dropped: no reset while the peer still writes.
            let junk = raw::ws_binary(&vec![7; 64 << 10]);
            for _ in 0..128 {
                s.get_mut().write_all(&junk).await.unwrap();
            }
            drop(s);
        }
        let c = remote_core::Connection::connect(server.local_addr())
            .await
            .unwrap();
        let root = c.root::<dyn RemoteMap<u32, String>>();
        assert_eq!(root.insert(1, "v".repeat(900 << 10)).await.unwrap(), None);
        c.close();
        assert!(raw::eventually(|| server.connections() == 0).await);
        assert_eq!(server.buffered_bytes(), 0);
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
