//! The chat server's list filled with the largest messages it accepts, read
//! back page by page: every page fits in a frame, and the pages add up to
//! the whole list.

use futures_util::future::join_all;
use remote_core::collections::MAX_PAGE;
use remote_core::Connection;
use remote_examples::chat::{Chat, Message, MAX_TEXT, MAX_USER};

#[allow(dead_code)]
#[path = "../chat.rs"]
pub mod chat;

/// Message `i`, as large as the chat server accepts.
fn largest(i: usize) -> Message {
    let user = format!("{i:u>width$}", width = MAX_USER);
    let text = format!("{i:t>width$}", width = MAX_TEXT);
    let m = Message::new(user, text);
    assert_eq!((m.user.len(), m.text.len()), (MAX_USER, MAX_TEXT));
    m
}

/// Reads the whole list by pages; returns it and the number of pages.
async fn read_all(chat: &remote_core::Remote<Chat>) -> (Vec<Message>, usize) {
    let len = chat.len().await.unwrap();
    let (mut all, mut pages) = (Vec::new(), 0);
    while (all.len() as u64) < len {
        let page = chat.range(all.len() as u64, len).await.unwrap();
        assert!(!page.is_empty(), "a page holds at least one message");
        all.extend(page);
        pages += 1;
    }
    (all, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_list_of_the_largest_messages_reads_back_in_pages() {
    let server = chat::serve("tcp://127.0.0.1:0").await.unwrap();
    let connect = || async {
        Connection::connect(server.local_addr())
            .await
            .unwrap()
            .root::<Chat>()
    };
    let writer = connect().await;
    let n = MAX_PAGE as usize;
    let expected: Vec<Message> = (0..n).map(largest).collect();
    for chunk in expected.chunks(64) {
        for r in join_all(chunk.iter().map(|m| writer.push(m.clone()))).await {
            r.unwrap();
        }
    }
    // One `range(0, 1024)` of these needs about 1,073,160 bytes, over the
    // 1 MiB frame limit: it is now a short page, not an error.
    let first = writer.range(0, n as u64).await.unwrap();
    assert!(!first.is_empty() && first.len() < n, "{}", first.len());

    // Two readers page through at once; the writer keeps being served.
    let (a, b) = (connect().await, connect().await);
    let (ra, rb, posted) = tokio::join!(
        read_all(&a),
        read_all(&b),
        writer.push(Message::new("w", "still here"))
    );
    assert_eq!(posted.unwrap(), n as u64);
    for (got, pages) in [ra, rb] {
        assert!(pages > 1, "{pages} page(s)");
        // Read while the last post was landing: at least the full list.
        assert_eq!(got[..n], expected[..]);
    }
}
