//! A misbehaving peer gets a clear error and a closed connection; other
//! clients of the same server never notice.

#[path = "support/raw.rs"]
mod raw;
mod support;

use std::sync::Arc;
use std::time::Duration;

use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{Connection, ConnectionBuilder, Error, Limits, Server, ServerHandle};
use support::{eventually, Calc, Counter, Stats};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn serve(limits: Limits) -> ServerHandle {
    let stats = Arc::new(Stats::default());
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Counter::remote(0, stats.clone()))
}

/// Asserts the server still serves a well-behaved client.
async fn still_serves(server: &ServerHandle) {
    let c = Connection::connect(server.local_addr()).await.unwrap();
    assert_eq!(c.root::<dyn Calc>().add(20, 22).await.unwrap(), 42);
}

#[tokio::test]
async fn oversized_length_prefix_is_refused_without_allocating() {
    let server = serve(Limits::default()).await;
    let good = Connection::connect(server.local_addr()).await.unwrap();
    // Before the handshake: the pre-auth limit applies.
    let mut s = raw::connect(&server).await;
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let reason = raw::goodbye(&mut s).await.unwrap();
    assert_eq!(
        reason,
        "handshake frame of 4294967295 bytes exceeds max_handshake_frame_len = 4096"
    );
    // After the handshake: the frame limit applies.
    let mut s = raw::raw(&server).await;
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let reason = raw::goodbye(&mut s).await.unwrap();
    assert_eq!(
        reason,
        "frame of 4294967295 bytes exceeds max_frame_len = 1048576"
    );
    assert_eq!(
        good.root::<dyn Calc>().add(1, 1).await.unwrap(),
        2,
        "an existing client is unaffected"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn truncated_frame_then_eof_only_closes_that_connection() {
    let server = serve(Limits::default()).await;
    let mut s = raw::raw(&server).await;
    s.write_all(&[0, 0, 0, 50, 0x96, 0x01]).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(raw::goodbye(&mut s).await, None);
    still_serves(&server).await;
}

#[tokio::test]
async fn incomplete_frame_must_finish_within_the_idle_timeout() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = serve(limits).await;
    let mut s = raw::raw(&server).await;
    s.write_all(&[0, 0, 0, 50, 0x96]).await.unwrap();
    let reason = raw::goodbye(&mut s).await.unwrap();
    assert!(reason.contains("idle_timeout"), "{reason}");
    still_serves(&server).await;
}

#[tokio::test]
async fn garbage_and_unknown_kinds_get_a_clear_goodbye() {
    let server = serve(Limits::default()).await;
    for (bytes, want) in [
        (vec![0xc1, 0xc1], "expected an array, found marker 0xc1"),
        (vec![0x92, 0x2a, 0x00], "unknown message kind 42"),
        (vec![0x91, 0xa3, b'a', b'b', b'c'], "expected an integer"),
        (
            vec![0x93, 0x04, 0x05, 0x01],
            "release of unknown object id 5",
        ),
    ] {
        let mut s = raw::raw(&server).await;
        let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        s.write_all(&frame).await.unwrap();
        let reason = raw::goodbye(&mut s).await.unwrap();
        assert!(
            reason.starts_with("protocol violation:") && reason.contains(want),
            "{reason:?} vs {want:?}"
        );
    }
    still_serves(&server).await;
}

#[tokio::test]
async fn wrong_protocol_version_is_refused_in_the_handshake() {
    let server = serve(Limits::default()).await;
    let mut s = raw::connect(&server).await;
    let bad = encode::hello(&remote_core::proto::Hello {
        min_version: 7,
        max_version: 9,
        features: vec![],
        auth: None,
    });
    s.write_all(&bad).await.unwrap();
    let reason = raw::goodbye(&mut s).await.unwrap();
    assert!(
        reason.contains("no common protocol version: peer speaks 7..=9, we speak 1..=1"),
        "{reason}"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn silent_peer_times_out_in_the_handshake() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = serve(limits).await;
    let mut s = raw::connect(&server).await;
    let reason = raw::goodbye(&mut s).await.unwrap();
    assert_eq!(reason, "no handshake within handshake_timeout = 200ms");
    still_serves(&server).await;
}

#[tokio::test]
async fn unknown_method_and_bad_arguments_are_call_errors_not_disconnects() {
    let server = serve(Limits::default()).await;
    let mut s = raw::raw(&server).await;
    for (id, method, args) in [
        (1u32, "nope", vec![0x90]),
        (2, "add", vec![0x91, 0xa1, b'x']),
    ] {
        let mut f = encode::begin(32);
        encode::call_head(&mut f, CallId(id), ObjectId(0), method, 1000);
        f.extend_from_slice(&args);
        encode::finish(&mut f);
        s.write_all(&f).await.unwrap();
    }
    let mut kinds = [raw::next_error(&mut s).await, raw::next_error(&mut s).await];
    kinds.sort();
    assert_eq!(kinds[0].1, "unknown_method");
    assert!(
        kinds[0].2.contains("interface Calc has no method \"nope\""),
        "{:?}",
        kinds[0]
    );
    assert_eq!(kinds[1].1, "bad_arguments");
    assert!(
        kinds[1].2.contains("cannot decode arguments"),
        "{:?}",
        kinds[1]
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn connections_over_the_server_limit_are_told_which_limit() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let server = serve(limits).await;
    let first = Connection::connect(server.local_addr()).await.unwrap();
    let err = Connection::connect(server.local_addr()).await.unwrap_err();
    match err {
        Error::Handshake(m) => assert!(m.contains("max_connections = 1"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(first.root::<dyn Calc>().add(1, 2).await.unwrap(), 3);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn frame_over_the_servers_limit_closes_only_that_client_with_the_limit_named() {
    let limits = Limits {
        max_frame_len: 64 << 10,
        ..Limits::default()
    };
    let server = serve(limits).await;
    let big = Connection::connect(server.local_addr()).await.unwrap();
    let err = big
        .root::<dyn Calc>()
        .echo(vec![1u8; 100 << 10])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_frame_len = 65536"), "{err}");
    still_serves(&server).await;
}

#[tokio::test]
async fn authentication_refuses_a_wrong_key_and_accepts_the_right_one() {
    use remote_core::auth::Key;
    let stats = Arc::new(Stats::default());
    let server = Server::builder()
        .shared_secret(Key::new(b"open sesame, a key of 32 bytes!!"))
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Counter::remote(0, stats.clone()));
    let err = remote_core::ConnectionBuilder::new()
        .credentials("guest", Key::new(b"a guess"))
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    let ok = remote_core::ConnectionBuilder::new()
        .credentials("guest", Key::new(b"open sesame, a key of 32 bytes!!"))
        .connect(server.local_addr())
        .await
        .unwrap();
    assert_eq!(ok.root::<dyn Calc>().add(1, 1).await.unwrap(), 2);
}

#[tokio::test]
async fn a_peer_cannot_name_another_connections_objects() {
    let server = serve(Limits::default()).await;
    // Connection A gets object 1 exported to it.
    let a = Connection::connect(server.local_addr()).await.unwrap();
    let made = a.root::<dyn Calc>().make().await.unwrap();
    assert_eq!(made.handle().unwrap().object_id(), 1);
    // Connection B names object 1: it does not exist in B's table.
    let mut s = raw::raw(&server).await;
    let mut f = encode::begin(32);
    encode::call_head(&mut f, CallId(0), ObjectId(1), "add", 1000);
    f.extend_from_slice(&[0x92, 0x01, 0x01]);
    encode::finish(&mut f);
    s.write_all(&f).await.unwrap();
    let (id, kind, _) = raw::next_error(&mut s).await;
    assert_eq!((id, kind.as_str()), (0, "unknown_object"));
    assert!(made.add(1, 1).await.unwrap() >= 1000);
}

#[tokio::test]
async fn idle_connections_close_unless_they_hold_references() {
    let limits = Limits {
        // Wide enough that `subscribed` sends its call before its first
        // idle check even on a loaded machine.
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    // Authenticated connections: on an unauthenticated one references keep
    // it open only while it has traffic (PROTOCOL.md §9; attack_slots.rs).
    let stats = Arc::new(Stats::default());
    let key = remote_core::auth::Key::random().unwrap();
    let server = Server::builder()
        .limits(limits)
        .shared_secret(key.clone())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Counter::remote(0, stats.clone()));
    let login = || ConnectionBuilder::new().credentials("tester", key.clone());
    let quiet = login().connect(server.local_addr()).await.unwrap();
    let subscribed = login().connect(server.local_addr()).await.unwrap();
    // The server holds a reference into `subscribed` (like a subscription).
    subscribed
        .root::<dyn Calc>()
        .keep(Counter::remote(1, Arc::new(Stats::default())))
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(60), quiet.closed())
        .await
        .expect("idle connection closed");
    assert!(reason.to_string().contains("idle_timeout = 1s"), "{reason}");
    // Over two more idle periods: `subscribed` would have been closed.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        !subscribed.is_closed(),
        "a connection whose objects are in use stays open"
    );
    assert_eq!(subscribed.root::<dyn Calc>().call_kept(1).await.unwrap(), 2);
}

#[tokio::test]
async fn a_peer_that_never_reads_is_held_back_then_told_the_write_stall_timeout() {
    let limits = Limits {
        max_write_queue: 256 << 10,
        write_stall_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = serve(limits).await;
    let mut s = raw::raw(&server).await;
    // 400 echo calls of 40 KB each: 16 MB of replies that we never read.
    let mut args = vec![0x91, 0xdc];
    args.extend_from_slice(&40_000u16.to_be_bytes());
    args.extend(std::iter::repeat_n(0x01, 40_000));
    let mut sent = 0;
    for id in 0..400u32 {
        let mut f = encode::begin(args.len() + 32);
        encode::call_head(&mut f, CallId(id), ObjectId(0), "echo", 10_000);
        f.extend_from_slice(&args);
        encode::finish(&mut f);
        match tokio::time::timeout(Duration::from_secs(30), s.write_all(&f)).await {
            Ok(Ok(())) => sent += 1,
            _ => break, // the server stopped reading us (backpressure)
        }
        // Held back at max_write_queue (plus the reply under way and the
        // frame being read), not buffering 16 MB.
        let held = server.buffered_bytes();
        assert!(held <= 1 << 20, "{held} bytes held for a non-reader");
    }
    assert!(sent > 0);
    let other = Connection::connect(server.local_addr()).await.unwrap();
    assert_eq!(other.root::<dyn Calc>().add(20, 22).await.unwrap(), 42);
    other.close();
    // Held back, not buffered: then closed for reading nothing.
    assert!(
        support::eventually(60, || server.connections() == 0).await,
        "the stalled connection was closed"
    );
    // What the server had queued ends the stream (the goodbye naming the
    // limit is sent last, if the kernel buffers had room for it).
    if let Some(reason) = raw::goodbye(&mut s).await {
        assert!(reason.contains("write_stall_timeout = 300ms"), "{reason}");
    }
}

#[tokio::test]
async fn a_stalled_peer_is_closed_with_the_write_stall_timeout_named() {
    let limits = Limits {
        write_stall_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let raw::NeverReads {
        r,
        w,
        their_r: _their_r,
        mut their_w,
    } = raw::never_reads().await;
    let conn = remote_core::ConnectionBuilder::new()
        .limits(limits)
        .serve(Counter::remote(0, Arc::new(Stats::default())))
        .over(r, w, "stalled")
        .await
        .unwrap();
    // Echo 40 KB: the reply cannot fit the pipe, and nobody reads it.
    let mut f = encode::begin(40_100);
    encode::call_head(&mut f, CallId(1), ObjectId(0), "echo", 10_000);
    f.extend_from_slice(&[0x91, 0xdc]);
    f.extend_from_slice(&40_000u16.to_be_bytes());
    f.extend_from_slice(&[0x01; 40_000]);
    encode::finish(&mut f);
    their_w.write_all(&f).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(60), conn.closed())
        .await
        .expect("closed");
    assert!(
        reason.to_string().contains("write_stall_timeout = 200"),
        "{reason}"
    );
    assert_eq!(conn.queued_output_bytes(), 0, "nothing stays counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_frees_its_tasks_even_if_the_peer_never_reads() {
    let limits = Limits {
        max_write_queue: 256 << 10,
        write_stall_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = serve(limits).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let mut s = raw::raw(&server).await;
    let mut args = vec![0x91, 0xdc];
    args.extend_from_slice(&40_000u16.to_be_bytes());
    args.extend(std::iter::repeat_n(0x01, 40_000));
    for id in 0..400u32 {
        let mut f = encode::begin(args.len() + 32);
        encode::call_head(&mut f, CallId(id), ObjectId(0), "echo", 10_000);
        f.extend_from_slice(&args);
        encode::finish(&mut f);
        if tokio::time::timeout(Duration::from_secs(30), s.write_all(&f))
            .await
            .is_err()
        {
            break;
        }
    }
    // The server cut us off; while we still never read, its reader and
    // writer tasks must end (the writer gives up on the blocked write).
    // Bounded by write_stall_timeout and the close sequence's 5 s drain.
    let freed = eventually(120, || {
        server.connections() == 0 && metrics.num_alive_tasks() <= baseline
    })
    .await;
    assert!(
        freed,
        "tasks still alive: {} (baseline {baseline})",
        metrics.num_alive_tasks()
    );
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoning_a_connect_mid_handshake_leaves_no_task_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    // A peer that accepts the bytes but never says hello.
    let (ours, _silent) = tokio::io::duplex(1024);
    let (r, w) = tokio::io::split(ours);
    let attempt = tokio::time::timeout(
        Duration::from_millis(100),
        remote_core::ConnectionBuilder::new().over(r, w, "silent"),
    )
    .await;
    assert!(attempt.is_err(), "the handshake cannot complete");
    let freed = eventually(60, || metrics.num_alive_tasks() <= baseline).await;
    assert!(
        freed,
        "writer task still alive: {} (baseline {baseline})",
        metrics.num_alive_tasks()
    );
}

/// Reads the next frame that is not the server's hello.
async fn next_reply(s: &mut TcpStream) -> Vec<u8> {
    loop {
        let f = raw::frame(s).await.expect("no reply from the server");
        if raw::kind(&f) != raw::HELLO {
            return f;
        }
    }
}
/// PROTOCOL.md §3.6/§8: a cancelled call gets exactly one reply, the
/// `cancelled` error; after it the id is reused and the new call's reply is
/// the only other frame with that id.
#[tokio::test]
async fn a_cancelled_call_is_answered_once_then_its_id_is_reusable() {
    let server = serve(Limits::default()).await;
    let mut s = raw::raw(&server).await;
    let call = |id: u32, method: &str, args: &[u8]| {
        let mut f = encode::begin(32);
        encode::call_head(&mut f, CallId(id), ObjectId(0), method, 10_000);
        f.extend_from_slice(args);
        encode::finish(&mut f);
        f
    };
    let mut bytes = call(7, "sleep", &[0x91, 0xcd, 0x13, 0x88]); // sleep(5000)
    bytes.extend_from_slice(&encode::cancel(CallId(7)));
    s.write_all(&bytes).await.unwrap();
    let frame = next_reply(&mut s).await;
    let mut r = remote_core::proto::Reader::new(&frame);
    assert_eq!(r.array_len().unwrap(), 3);
    assert_eq!(r.uint().unwrap(), 3, "an error reply, not {frame:02x?}");
    assert_eq!(r.uint().unwrap(), 7);
    r.array_len().unwrap();
    assert_eq!(r.str().unwrap(), "cancelled");
    // Now the id is free: the same id again, answered once with its value.
    s.write_all(&call(7, "add", &[0x92, 0x01, 0x02]))
        .await
        .unwrap(); // add(1, 2)
    assert_eq!(
        next_reply(&mut s).await,
        [0x93, 0x02, 0x07, 0x03],
        "return(7, 3), not a second reply to the old call nor a goodbye"
    );
    still_serves(&server).await;
}
