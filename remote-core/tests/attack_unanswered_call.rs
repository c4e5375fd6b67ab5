//! A connection slot is not held for ever by never answering one call
//! the server makes to the peer.
//!
//! PROTOCOL.md §9: an unauthenticated server connection that holds nothing
//! and is quiet for `unauthenticated_idle_timeout` is closed, and one that
//! holds references is closed after `idle_timeout` without traffic. The
//! idle check used to count a connection as busy while any of the
//! server's own calls waited for a reply, the cancelled ones included
//! (their ids stay reserved until the peer's reply, §3.6). A peer that
//! never replied to one server-to-client call (here a `SharedVec`
//! subscription notification, cancelled by the server at its deadline)
//! kept its connection open for ever, with no traffic, no references and
//! no calls of its own (found by a red-team pass).
//!
//! Two raw peers do the same thing (subscribe, push, get the `pushed`
//! notification); the control answers it with an error, the attacker
//! never answers. Both are closed for idleness.

#[path = "support/raw.rs"]
mod raw;

use std::time::Duration;

use remote_core::collections::SharedVec;
use remote_core::proto::{encode, Reader};
use remote_core::{Limits, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CANCEL: u64 = 5;
const RELEASE: u64 = 4;

fn limits() -> Limits {
    Limits {
        unauthenticated_idle_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        // The server's notification call gives up (and is cancelled) fast.
        default_deadline: Duration::from_millis(300),
        keepalive_interval: None,
        ..Limits::default()
    }
}

/// Subscribes our object 1, pushes, and returns the id of the server's
/// `pushed` call to our listener.
async fn subscribe_and_push(s: &mut TcpStream) -> u64 {
    let listener = [0x91, 0xd6, 0x01, 0, 0, 0, 1];
    s.write_all(&raw::call(0, 0, "subscribe", 10_000, &listener))
        .await
        .unwrap();
    s.write_all(&raw::call(1, 0, "push", 10_000, &[0x91, 0x07]))
        .await
        .unwrap();
    loop {
        let f = raw::frame(s).await.expect("closed");
        if raw::kind(&f) == raw::CALL {
            return raw::id_of(&f);
        }
    }
}

/// Reads until the end of the stream; whether a goodbye came first, and
/// the kinds seen.
async fn until_closed(s: &mut TcpStream, seen: &mut Vec<u64>) -> Option<String> {
    while let Some(f) = raw::frame(s).await {
        let k = raw::kind(&f);
        seen.push(k);
        if k == raw::GOODBYE {
            let mut r = Reader::new(&f[2..]);
            return Some(r.str().unwrap().to_owned());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answering_a_call_of_the_server_does_not_hold_a_connection_open() {
    let list = SharedVec::<u64>::new();
    let server = Server::builder()
        .limits(limits())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| list.remote());

    // Control: answers the notification with an error (the subscription
    // ends), then stays silent.
    let mut control = raw::opened(&server).await;
    let call = subscribe_and_push(&mut control).await;
    // [3, call, ["application", "x", "no", [], nil, nil]]
    let mut err = encode::begin(64);
    err.extend_from_slice(&[0x93, 0x03, 0xce]);
    err.extend_from_slice(&(call as u32).to_be_bytes());
    err.extend_from_slice(&[0x96, 0xab]);
    err.extend_from_slice(b"application");
    err.extend_from_slice(&[0xa1, b'x', 0xa2, b'n', b'o', 0x90, 0xc0, 0xc0]);
    encode::finish(&mut err);
    control.write_all(&err).await.unwrap();

    // Attacker: the same, but never answers.
    let mut attacker = raw::opened(&server).await;
    let _call = subscribe_and_push(&mut attacker).await;

    let mut seen = Vec::new();
    let why = raw::bounded(until_closed(&mut control, &mut seen)).await;
    assert!(why.unwrap().contains("no traffic"));

    // The attacker sees the cancel of the notification and the release of
    // its listener, then the goodbye of an idle connection (bounded at 10
    // idle periods, so a loaded machine does not fail it).
    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        until_closed(&mut attacker, &mut seen),
    )
    .await;
    assert!(seen.contains(&CANCEL), "the notification was cancelled");
    assert!(seen.contains(&RELEASE), "the listener was released");
    let why = outcome.unwrap_or_else(|_| {
        panic!(
            "an unauthenticated connection holding nothing, silent for 20 s \
             (unauthenticated_idle_timeout 1 s, idle_timeout 2 s), is still open \
             (saw message kinds {seen:?})"
        )
    });
    assert!(
        why.is_some_and(|w| w.contains("no traffic")),
        "closed without an idle goodbye"
    );
}
