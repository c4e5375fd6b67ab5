//! A WebSocket peer's Close is answered with a Close (RFC 6455 §5.5.1),
//! also when calls of its own come just before it: their replies are
//! dropped (no data frame may follow the Close in answer), and the
//! connection ends cleanly. (Red-team pass 24: such a peer got nothing
//! back, as tungstenite refused the first reply and the writer's error
//! ended the connection before the answer went out.)

#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use remote_core::collections::SharedMap;
use remote_core::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A masked client Close frame carrying `payload`.
fn close(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x88, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_after_calls_is_answered_with_a_close() {
    raw::bounded(async {
        let map = SharedMap::<u32, String>::new();
        let server = Server::builder()
            .bind("ws://127.0.0.1:0/")
            .await
            .unwrap()
            .serve(move |_| map.remote());
        let call = |id| raw::ws_binary(&raw::call(id, 0, "len", 60_000, &[0x90]));
        let reason = [&[0x03, 0xe8][..], &[b'r'; 40]].concat();
        for payload in [&[0x03, 0xe8][..], &[], &reason] {
            for _ in 0..3 {
                let mut s = raw::ws_opened(&server).await;
                let all = [call(10), call(11), close(payload)].concat();
                s.get_mut().write_all(&all).await.unwrap();
                // Everything back, to the end of the stream.
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.unwrap();
                let mut cur = std::io::Cursor::new(back);
                let mut frames = Vec::new();
                while let Some(f) = raw::ws_frame(&mut cur).await {
                    frames.push(f);
                }
                let (op, echoed) = frames.pop().expect("a close frame in answer");
                assert_eq!(op, 8, "the last frame back is a close");
                assert_eq!(echoed, payload, "the close echoes the peer's");
                // Replies read before the close may come before it.
                assert!(frames
                    .iter()
                    .all(|(op, m)| *op == 2 && raw::kind(&m[4..]) == raw::RETURN));
            }
        }
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
