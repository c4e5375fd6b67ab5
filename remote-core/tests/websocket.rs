//! The WebSocket transport: the same protocol and limits as over TCP, one
//! frame per binary message. (Calls, callbacks, references and streams over
//! `ws://` also run in `rpc.rs`, which covers every transport.)

#[path = "support/raw.rs"]
mod raw;
mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use remote_core::proto::{encode, Hello};
use remote_core::{Connection, Limits, Server, ServerHandle};
use support::{eventually, Calc, Counter, Stats};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn call_callback_and_release_over_ws() {
    let stats = Arc::new(Stats::default());
    let s2 = stats.clone();
    let server = Server::bind("ws://127.0.0.1:0/calc")
        .await
        .unwrap()
        .serve(move |_| Counter::remote(0, s2.clone()));
    assert!(server.local_addr().starts_with("ws://127.0.0.1:"));
    assert!(server.local_addr().ends_with("/calc"));
    let client = Connection::connect(server.local_addr()).await.unwrap();
    let root = client.root::<dyn Calc>();
    assert_eq!(root.add(40, 2).await.unwrap(), 42);
    // A callback the server calls while our call is in flight.
    let mine = Counter::remote(10, Arc::new(Stats::default()));
    assert_eq!(root.call_back(mine, 5).await.unwrap(), 16);
    // A capability: called, then released; the server drops it.
    let made = root.make().await.unwrap();
    assert_eq!(stats.live.load(SeqCst), 2, "root and the made object");
    assert!(made.add(1, 1).await.unwrap() > 1000);
    drop(made);
    assert!(
        eventually(60, || stats.live.load(SeqCst) == 1).await,
        "the server never released the capability"
    );
    client.close();
}

#[tokio::test]
async fn a_wrong_path_is_refused() {
    let server = counter_at("ws://127.0.0.1:0/calc").await;
    let wrong = server.local_addr().replace("/calc", "/other");
    let err = Connection::connect(&wrong).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

/// A `ws://` server of a counter whose frames are at most 1 KiB.
async fn small_frames() -> ServerHandle {
    let limits = Limits {
        max_frame_len: 1024,
        ..Limits::default()
    };
    Server::builder()
        .limits(limits)
        .bind("ws://127.0.0.1:0/")
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())))
}

/// A message over `max_frame_len` is refused from its header with a goodbye
/// naming the limit, and only that client is cut off.
#[tokio::test]
async fn an_oversized_message_is_refused_naming_the_limit() {
    let server = small_frames().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.local_addr())
        .await
        .unwrap();
    let hello = raw::hello(vec![]);
    ws.send(Message::binary(hello)).await.unwrap();
    let mut big = (1_000_000u32).to_be_bytes().to_vec();
    big.resize(4 + 1_000_000, 0x90);
    // The server may close while this is still being written.
    let _ = ws.send(Message::binary(big)).await;
    let reason = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                // [6, reason] framed: prefix, 0x92, 0x06, str
                if b.len() > 6 && b[4] == 0x92 && b[5] == 0x06 {
                    let mut r = remote_core::proto::Reader::new(&b[6..]);
                    return Some(r.str().unwrap().to_owned());
                }
            }
        }
        None
    })
    .await
    .expect("the server neither said goodbye nor closed");
    let reason = reason.expect("closed without a goodbye");
    assert!(reason.contains("max_frame_len = 1024"), "{reason}");
    // Others are unaffected.
    let c = Connection::connect(server.local_addr()).await.unwrap();
    assert_eq!(c.root::<dyn Calc>().add(1, 2).await.unwrap(), 3);
}

#[tokio::test]
async fn a_message_must_hold_exactly_one_frame() {
    let server = counter_at("ws://127.0.0.1:0/").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.local_addr())
        .await
        .unwrap();
    // Two hellos in one message: refused.
    let mut two = encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features: vec![],
        auth: None,
    });
    two.extend_from_slice(&two.clone());
    ws.send(Message::binary(two)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        let mut frames = 0;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(_) = m {
                frames += 1;
            }
        }
        frames
    })
    .await
    .expect("the server did not close");
    assert!(
        closed <= 1,
        "at most the server's hello, got {closed} frames"
    );
}

/// Only the header of an oversized message is sent, never its payload: the
/// server must refuse it from the header alone (nothing buffered), with a
/// goodbye naming `max_frame_len`.
#[tokio::test]
async fn an_oversized_message_is_refused_from_its_header() {
    use tokio::io::AsyncWriteExt;
    let server = small_frames().await;
    // Upgraded, the HTTP response skipped (the server's hello may already
    // be buffered in `s`).
    let mut s = raw::ws_upgraded(&server).await;
    let hello = raw::hello(vec![]);
    s.write_all(&raw::ws_binary(&hello)).await.unwrap();
    // The header of a 1 MB binary message, and no payload.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&1_000_004u64.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    s.write_all(&header).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some((op, payload)) = raw::ws_frame(&mut s).await {
            if op == 2 && payload.len() > 6 && payload[4] == 0x92 && payload[5] == 0x06 {
                let mut r = remote_core::proto::Reader::new(&payload[6..]);
                return Some(r.str().unwrap().to_owned());
            }
        }
        None
    })
    .await
    .expect("the server waited for the payload instead of refusing the header");
    let reason = reason.expect("closed without a goodbye");
    assert!(
        reason.contains("1000000 bytes exceeds max_frame_len = 1024"),
        "{reason}"
    );
}

/// A server that accepts the TCP connection but never answers the
/// WebSocket upgrade cannot hold `connect` forever.
#[tokio::test]
async fn a_stalled_upgrade_is_bounded_by_the_handshake_timeout() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("ws://{}/", tcp.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let (s, _) = tcp.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(s);
    });
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        remote_core::ConnectionBuilder::new()
            .limits(limits)
            .connect(&addr),
    )
    .await
    .expect("connect hung on a stalled upgrade")
    .unwrap_err();
    assert!(err.to_string().contains("handshake_timeout"), "{err}");
    hold.abort();
}

/// A client may send a large call right behind its hello, before the
/// server has opened the connection. Until it opens (authentication
/// included), a server reads at most `max_handshake_frame_len` and a
/// header past what it delivered, and a read past that waits for the
/// opening (`ws_meter.rs`): the call is neither refused nor held in full
/// outside the budget before then, and it is answered once the driver
/// lifts the bound.
#[tokio::test]
async fn a_large_call_right_behind_the_hello_waits_for_the_opening_and_is_answered() {
    use tokio::io::AsyncWriteExt;
    let server = counter_at("ws://127.0.0.1:0/").await;
    let mut s = raw::ws_upgraded(&server).await;
    let hello = raw::hello(vec![]);
    // `add` with 512 KiB of bytes for its arguments: answered with an
    // error for call 1 (bad arguments), which shows it was read whole.
    let mut args = vec![0x91, 0xc6];
    args.extend_from_slice(&(512u32 << 10).to_be_bytes());
    args.resize(args.len() + (512 << 10), 7);
    let mut both = raw::ws_binary(&hello);
    both.extend(raw::ws_binary(&raw::call(1, 0, "add", 60_000, &args)));
    s.get_mut().write_all(&both).await.unwrap();
    assert_eq!(error_answer(&mut s).await, 1);
}

/// The id of the first error the server answers over `s` (past its
/// hello): the call of that id was read whole.
async fn error_answer(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> u64 {
    let answer = raw::bounded(async {
        loop {
            let (op, payload) = raw::ws_frame(s).await.expect("the server closed");
            assert_eq!(op, 2, "binary messages only");
            let frame = &payload[4..];
            if raw::kind(frame) != raw::HELLO {
                break frame.to_vec();
            }
        }
    })
    .await;
    let (id, _, _) = raw::error_of(&answer)
        .unwrap_or_else(|| panic!("an error reply: {:?}", String::from_utf8_lossy(&answer)));
    id
}

/// A call whose frame is over half the memory budget is read: the count
/// the WebSocket layer made for its message is taken over by the frame's
/// reservation, not made twice (`Input::reserve`), and once the
/// connection is gone nothing stays counted.
#[tokio::test]
async fn a_call_over_half_the_budget_is_read_whole() {
    use tokio::io::AsyncWriteExt;
    let limits = Limits {
        memory_budget: 3 << 20,
        max_frame_len: 2 << 20,
        ..Limits::default()
    };
    let server = Server::builder()
        .limits(limits)
        .bind("ws://127.0.0.1:0/")
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())));
    let mut s = raw::ws_upgraded(&server).await;
    s.get_mut()
        .write_all(&raw::ws_binary(&raw::hello(vec![])))
        .await
        .unwrap();
    // `add` with 1.75 MiB of bytes for its arguments: answered with an
    // error for call 1 (bad arguments), which shows it was read whole.
    let mut args = vec![0x91, 0xc6];
    args.extend_from_slice(&(7u32 << 18).to_be_bytes());
    args.resize(args.len() + (7 << 18), 7);
    s.get_mut()
        .write_all(&raw::ws_binary(&raw::call(1, 0, "add", 60_000, &args)))
        .await
        .unwrap();
    assert_eq!(error_answer(&mut s).await, 1);
    drop(s);
    assert!(
        eventually(60, || server.buffered_bytes() == 0
            && server.connections() == 0)
        .await,
        "{} bytes still counted",
        server.buffered_bytes()
    );
}

/// A browser sends the site's cookies with its upgrade request: a request
/// of several KiB is upgraded (one of about 4 KiB was reset with no HTTP
/// answer, the first message's bound applying to it: a red-team pass), and
/// one past 16 KiB is refused.
#[tokio::test]
async fn an_upgrade_request_with_kilobytes_of_cookies_is_served() {
    let server = counter_at("ws://127.0.0.1:0/calc").await;
    let upgrade = |cookie: usize| {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                server.local_addr(),
            )
            .unwrap();
        req.headers_mut().insert(
            "Cookie",
            format!("session={}", "a".repeat(cookie)).parse().unwrap(),
        );
        raw::bounded(tokio_tungstenite::connect_async(req))
    };
    for cookie in [3000, 6000, 12_000] {
        let upgraded = upgrade(cookie).await;
        assert!(
            upgraded.is_ok(),
            "cookie of {cookie} bytes: {:?}",
            upgraded.err()
        );
    }
    assert!(upgrade(20_000).await.is_err(), "past 16 KiB");
    // The server still serves.
    let client = Connection::connect(server.local_addr()).await.unwrap();
    assert_eq!(client.root::<dyn Calc>().add(40, 2).await.unwrap(), 42);
}

/// A `ws://` server at `addr` of a counter per connection.
async fn counter_at(addr: &str) -> ServerHandle {
    Server::bind(addr)
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())))
}
