//! Large calls over WebSocket on a small memory budget: a protocol frame
//! over 64 KiB crosses as a message in fragments, and the server reserves
//! the whole message when its first fragment comes, so clients never each
//! hold part of a message while waiting for room the others hold.

#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use remote_core::collections::{RemoteMap, SharedMap};
use remote_core::{Connection, Limits, Server};

/// Eight clients insert 900 KiB values over `ws://` into a server whose
/// budget holds about two such messages: every call completes within its
/// default deadline, round after round. (A red-team pass: counted as its
/// fragments came, each client held half a message and waited for room
/// the others held, and all of them waited until their idle timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sending_large_messages_in_fragments_take_turns_for_a_small_budget() {
    raw::bounded(async {
        let map = SharedMap::<u32, String>::new();
        let m = map.clone();
        let server = Server::builder()
            .limits(Limits {
                memory_budget: 4 << 20,
                ..Limits::default()
            })
            .bind("ws://127.0.0.1:0/")
            .await
            .unwrap()
            .serve(move |_| m.remote());
        let mut clients = Vec::new();
        for i in 0..8u32 {
            let addr = server.local_addr().to_string();
            clients.push(tokio::spawn(async move {
                let conn = Connection::connect(&addr).await.unwrap();
                let root = conn.root::<dyn RemoteMap<u32, String>>();
                for round in 0..4u32 {
                    let value = char::from(b'a' + (round as u8))
                        .to_string()
                        .repeat(900 << 10);
                    root.insert(i, value).await.unwrap();
                }
                conn.close();
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        assert_eq!(map.remote().len().await.unwrap(), 8);
        let last = map.remote().get(3).await.unwrap().unwrap();
        assert_eq!(last.len(), 900 << 10);
        assert!(last.bytes().all(|b| b == b'd'));
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
