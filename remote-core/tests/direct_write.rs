//! Frames written directly by the task that queued them (a lone caller, the
//! reader after a batch) instead of the writer task: they keep their order
//! under concurrent senders on several threads, and a peer that never
//! reads still gets closed by `write_stall_timeout` without a caller or the
//! reader ever blocking on the socket, also over a transport that buffers
//! (TLS, WebSocket), where only the flush waits for the peer.

#[path = "support/node.rs"]
mod node;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use node::{all_released, Node, N};
use raw::{bounded, eventually, NeverReads};
use remote_core::{Connection, ConnectionBuilder, Limits, Server};
use tokio::io::AsyncWriteExt;

/// Many tasks on two worker threads share one connection, each making calls
/// (alone or among others, so some frames are written directly and some
/// by the writer task), passing references both ways and dropping them at
/// once. A release that overtook the call carrying its reference, or a
/// frame lost or reordered between a direct write and the writer task,
/// shows up as a failed call or an export count that does not return to
/// zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_keep_their_order_when_callers_readers_and_the_writer_all_write() {
    let server_live = Arc::new(AtomicUsize::new(0));
    let root_live = server_live.clone();
    let server = Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| N::remote(0, &root_live));
    let client = Connection::connect(server.local_addr()).await.unwrap();
    let client_live = Arc::new(AtomicUsize::new(0));
    workload(&client, &client_live, 16, 40).await;
    // Every reference given back: the server holds only its root, the
    // client nothing.
    all_released(
        || server.stats().calls.exports,
        &server_live,
        &client,
        &client_live,
    )
    .await;
}

/// The same over a pipe that holds only 256 bytes: nearly every direct
/// write is cut short and handed to the writer task, while other tasks
/// keep queueing and writing. A direct write that went ahead of a
/// remainder left for the writer task would interleave two frames (the
/// peer would close on a malformed frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frames_keep_their_order_when_most_direct_writes_are_cut_short() {
    let (client, server, server_live) = node::pair(256).await;
    let client_live = Arc::new(AtomicUsize::new(0));
    workload(&client, &client_live, 8, 25).await;
    all_released(
        || server.exported_objects(),
        &server_live,
        &client,
        &client_live,
    )
    .await;
    assert!(eventually(|| client.queued_output_bytes() == 0).await);
}

/// `tasks` tasks making `rounds` rounds of calls on `client`'s root,
/// checking every answer; the connection is still open at the end.
async fn workload(client: &Connection, client_live: &Arc<AtomicUsize>, tasks: u64, rounds: u64) {
    let root = client.root::<dyn Node>();
    let answered = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (root, client_live, answered) =
                (root.clone(), client_live.clone(), answered.clone());
            tokio::spawn(async move {
                for r in 0..rounds {
                    let id = 1 + t * rounds + r;
                    // An object of the server's, called, passed back to it
                    // and dropped at once (its release follows the call
                    // that carried it).
                    let obj = root.make(id).await.unwrap();
                    assert_eq!(obj.add(1, 2).await.unwrap(), id + 3);
                    let back = root.read(obj.clone());
                    drop(obj);
                    assert_eq!(back.await.unwrap(), id);
                    // One of ours, called back by the server, then released.
                    let mine = N::remote(id, &client_live);
                    assert_eq!(root.read(mine).await.unwrap(), id);
                    // A larger frame each way.
                    let data = vec![(id % 251) as u8; 3000];
                    assert_eq!(root.echo(data.clone()).await.unwrap(), data);
                    // The same from a spawned handler, whose reply its own
                    // task writes when it is the only call running.
                    assert_eq!(root.echo_later(data.clone()).await.unwrap(), data);
                    // A call dropped before its reply (a cancel frame).
                    let _ = tokio::time::timeout(Duration::from_micros(1), root.add(r, t)).await;
                    answered.fetch_add(1, SeqCst);
                    if r % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        bounded(h).await.unwrap();
    }
    assert_eq!(answered.load(SeqCst) as u64, tasks * rounds);
    assert!(!client.is_closed());
    assert_eq!(root.add(2, 3).await.unwrap(), 5);
}

/// A lone call is written by its caller; when the peer never reads, the
/// socket takes only part of it. The caller must not wait on the socket
/// (its call is sent, then fails when the connection closes), and the
/// writer task, handed the rest, closes the connection at
/// `write_stall_timeout`.
#[tokio::test]
async fn a_lone_call_to_a_peer_that_never_reads_ends_at_the_write_stall_timeout() {
    let limits = Limits {
        write_stall_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let NeverReads {
        r,
        w,
        their_r: _their_r,
        their_w: _their_w,
    } = raw::never_reads().await;
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .over(r, w, "never reads")
        .await
        .unwrap();
    let node = conn.root::<dyn Node>();
    // 40 KB of arguments: far more than the pipe holds.
    let call = node.echo(vec![1u8; 40_000]);
    let err = bounded(call).await.unwrap_err();
    assert!(
        err.to_string().contains("write_stall_timeout = 200"),
        "{err}"
    );
    let reason = bounded(conn.closed()).await;
    assert!(
        reason.to_string().contains("write_stall_timeout = 200"),
        "{reason}"
    );
    assert_eq!(conn.queued_output_bytes(), 0, "nothing stays counted");
}

/// The same with the reader writing: a handler that finishes inline has
/// its large reply written by the reader task at the end of its read
/// batch. The reader must not block on the socket either: the writer
/// task, handed the rest, closes the connection at its stall timeout and
/// nothing stays counted.
#[tokio::test]
async fn a_large_reply_written_by_the_reader_to_a_non_reader_still_ends_at_the_stall_timeout() {
    large_reply_to_a_non_reader_ends_at_the_stall_timeout("echo").await;
}

/// The same with a spawned handler's reply: the only call running, it is
/// written by the handler's own task (no hop to the writer task), which
/// must not block on the socket either.
#[tokio::test]
async fn a_lone_spawned_handlers_large_reply_to_a_non_reader_still_ends_at_the_stall_timeout() {
    large_reply_to_a_non_reader_ends_at_the_stall_timeout("echo_later").await;
}

/// A peer that says hello, calls `method` (an echo) with 40 KB, and never
/// reads: the connection closes at `write_stall_timeout`, with nothing
/// left counted and the served object dropped.
async fn large_reply_to_a_non_reader_ends_at_the_stall_timeout(method: &str) {
    let limits = Limits {
        write_stall_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let live = Arc::new(AtomicUsize::new(0));
    let NeverReads {
        r,
        w,
        their_r: _their_r,
        mut their_w,
    } = raw::never_reads().await;
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .serve(N::remote(0, &live))
        .over(r, w, "never reads")
        .await
        .unwrap();
    let mut args = vec![0x91, 0xdc];
    args.extend_from_slice(&40_000u16.to_be_bytes());
    args.extend(std::iter::repeat_n(1u8, 40_000));
    their_w
        .write_all(&raw::call(1, 0, method, 10_000, &args))
        .await
        .unwrap();
    let reason = bounded(conn.closed()).await;
    assert!(
        reason.to_string().contains("write_stall_timeout = 200"),
        "{reason}"
    );
    assert_eq!(conn.queued_output_bytes(), 0, "nothing stays counted");
    assert!(eventually(|| live.load(SeqCst) == 0).await);
}

/// A transport that buffers what it is given (as TLS and WebSocket do): a
/// write is taken at once, and only the flush waits for the peer to read.
/// With a peer that never reads, the frames sit in the transport's buffer
/// and the flush never completes; the connection must still close at
/// `write_stall_timeout` (with nothing counted), not stay open for ever
/// with its queue growing behind a flush that waits without a timer.
#[tokio::test]
async fn a_buffering_transport_to_a_peer_that_never_reads_ends_at_the_write_stall_timeout() {
    let limits = Limits {
        write_stall_timeout: Duration::from_millis(200),
        // Nothing else may close it: no pings, no idle check in the test.
        keepalive_interval: None,
        idle_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let NeverReads {
        r,
        w,
        their_r: _their_r,
        their_w: _their_w,
    } = raw::never_reads().await;
    // Takes up to 64 KiB before it needs the pipe.
    let w = tokio::io::BufWriter::with_capacity(64 << 10, w);
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .over(r, w, "buffers, never read")
        .await
        .unwrap();
    let cell = conn.root::<dyn Node>();
    // 20 KB of arguments: more than the pipe holds, less than the buffer.
    let call = tokio::spawn(async move { cell.echo(vec![7u8; 20_000]).await });
    let reason = bounded(conn.closed()).await;
    assert!(
        reason.to_string().contains("write_stall_timeout = 200"),
        "{reason}"
    );
    let err = bounded(call).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("write_stall_timeout"), "{err}");
    assert_eq!(conn.queued_output_bytes(), 0, "nothing stays counted");
}
