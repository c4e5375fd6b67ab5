//! A WebSocket message in fragments keeps to the length prefix at its
//! start (PROTOCOL.md §1.1): a first frame too short to hold the prefix,
//! and a frame that takes the message past what its prefix said, are
//! refused from their header with a goodbye naming why. A message is so
//! counted whole on its first frame, and none of its frames waits for
//! room in the memory budget. (A red-team pass: a frame of a message that
//! announced more than was left waited for room its own message held, and
//! the wait exempted the message from `pressure_stall_timeout`; 30 peers of
//! 24 bytes each held a 16 MiB budget until their idle timeout, and an
//! honest large call waited for them.)

#[path = "support/noted.rs"]
mod noted;
#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use noted::Reasons;
use remote_core::collections::SharedMap;
use remote_core::Limits;
use tokio::io::AsyncWriteExt;

/// How many connections closed with a reason that contains `text`.
fn closed_naming(reasons: &Reasons, text: &str) -> usize {
    let reasons = reasons.lock().unwrap();
    reasons
        .iter()
        .filter(|e| e.to_string().contains(text))
        .count()
}

const PAST_PREFIX: &str = "longer than its length prefix says";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_past_its_messages_prefix_is_refused_and_the_room_goes_to_others() {
    let map = SharedMap::<u32, String>::new();
    let limits = noted::judged(16 << 20);
    let (server, reasons) = noted::serve(map.clone(), limits, "ws://127.0.0.1:0/").await;
    // 30 first frames of 4 bytes, each a prefix saying 256 KiB: 512 KiB
    // counted each (twice the message), 15 MiB of the 16.
    let mut peers = Vec::new();
    for _ in 0..30 {
        let mut s = raw::ws_opened(&server).await;
        let first = raw::ws_fragment(true, false, &(256u32 << 10).to_be_bytes());
        s.get_mut().write_all(&first).await.unwrap();
        peers.push(s);
    }
    assert!(raw::eventually(|| server.buffered_bytes() > (15 << 20)).await);
    // Each then announces a frame of 1 MiB more, past what it said.
    let next = raw::ws_fragment(false, false, &vec![0u8; 1 << 20]);
    for s in &mut peers {
        s.get_mut().write_all(&next[..14]).await.unwrap();
    }
    for s in &mut peers {
        let why = raw::bounded(raw::ws_goodbye(s)).await.expect("a goodbye");
        assert!(why.contains(PAST_PREFIX), "{why}");
    }
    assert!(raw::eventually(|| closed_naming(&reasons, PAST_PREFIX) == 30).await);
    // What they held is back: an honest call needing 1.8 MiB is answered.
    noted::honest_large_insert(&server, &map, Duration::from_secs(60)).await;
    drop(peers);
}

#[tokio::test]
async fn a_first_frame_too_short_for_the_prefix_is_refused() {
    let map = SharedMap::<u32, String>::new();
    let (server, reasons) = noted::serve(map, Limits::default(), "ws://127.0.0.1:0/").await;
    let mut s = raw::ws_opened(&server).await;
    s.get_mut()
        .write_all(&raw::ws_fragment(true, false, &[0, 0]))
        .await
        .unwrap();
    let why = raw::bounded(raw::ws_goodbye(&mut s))
        .await
        .expect("a goodbye");
    assert!(
        why.contains("less than the protocol frame's 4-byte length prefix"),
        "{why}"
    );
    assert!(raw::eventually(|| closed_naming(&reasons, "4-byte length prefix") == 1).await);
}
