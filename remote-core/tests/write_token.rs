//! The write token under pressure (`driver/direct.rs`): many callers on a
//! multi-thread runtime over a tiny pipe, where nearly every direct write
//! is cut short and handed to the writer task, must all get their replies
//! (a lost wake-up would leave a call hanging) with every reference given
//! back; and a transport that buffers (TLS, WebSocket: `poll_write` takes
//! the bytes, `poll_flush` waits on the socket) to a peer that never reads
//! still ends at `write_stall_timeout`.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use raw::{bounded, eventually};
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Cell {
    /// `a + b + self's id`.
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error>;
    /// A fresh object with id `id`.
    async fn make(&self, id: u64) -> Result<Remote<dyn Cell>, Error>;
    /// `obj.add(0, 0)`, called from here (a callback if `obj` is the
    /// caller's).
    async fn read(&self, obj: Remote<dyn Cell>) -> Result<u64, Error>;
    /// Echoes `data`.
    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, Error>;
}

struct C {
    id: u64,
    live: Arc<AtomicUsize>,
}

impl C {
    fn remote(id: u64, live: &Arc<AtomicUsize>) -> Remote<dyn Cell> {
        live.fetch_add(1, SeqCst);
        Remote::new(Arc::new(C {
            id,
            live: live.clone(),
        }) as Arc<dyn Cell>)
    }
}

impl Drop for C {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

#[remote]
impl Cell for C {
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error> {
        Ok(a + b + self.id)
    }
    async fn make(&self, id: u64) -> Result<Remote<dyn Cell>, Error> {
        Ok(C::remote(id, &self.live))
    }
    async fn read(&self, obj: Remote<dyn Cell>) -> Result<u64, Error> {
        obj.add(0, 0).await
    }
    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        Ok(data)
    }
}

/// Two connections joined by an in-memory pipe of 512 bytes each way, so
/// almost every write (direct or not) is partial and the write token moves
/// between the reader tasks and the writer tasks all the time. 24 tasks
/// on four workers call concurrently: plain calls, large echoes, objects
/// passed both ways and dropped at once, callbacks, calls given up before
/// their reply. Every call must end (within a generous bound: a lost
/// wake-up leaves one hanging for ever) with the right answer, and every
/// reference must be given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_over_a_tiny_pipe_all_get_their_replies_and_release_everything() {
    let server_live = Arc::new(AtomicUsize::new(0));
    let client_live = Arc::new(AtomicUsize::new(0));
    let (a, b) = tokio::io::duplex(512);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let serving = ConnectionBuilder::new()
        .serve(C::remote(0, &server_live))
        .over(ar, aw, "server end");
    let calling = ConnectionBuilder::new().over(br, bw, "client end");
    let (server, client) = tokio::join!(serving, calling);
    let (server, client) = (server.unwrap(), client.unwrap());
    let root = client.root::<dyn Cell>();
    const TASKS: u64 = 24;
    const ROUNDS: u64 = 25;
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (root, client_live, done) = (root.clone(), client_live.clone(), done.clone());
            tokio::spawn(async move {
                for r in 0..ROUNDS {
                    let id = 1 + t * ROUNDS + r;
                    assert_eq!(root.add(r, t).await.unwrap(), r + t);
                    // Sizes around the pipe's: whole, split, many pieces.
                    let data = vec![(id % 251) as u8; ((id * 397) % 6000) as usize];
                    assert_eq!(root.echo(data.clone()).await.unwrap(), data);
                    let obj = root.make(id).await.unwrap();
                    let back = root.read(obj.clone());
                    drop(obj);
                    assert_eq!(back.await.unwrap(), id);
                    let mine = C::remote(id, &client_live);
                    assert_eq!(root.read(mine).await.unwrap(), id);
                    let _ = tokio::time::timeout(Duration::from_micros(1), root.add(r, t)).await;
                    done.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        bounded(task).await.unwrap();
    }
    assert_eq!(done.load(SeqCst) as u64, TASKS * ROUNDS);
    assert!(
        eventually(|| server.exported_objects() == 0 && server_live.load(SeqCst) == 1).await,
        "server exports {} objects, {} alive",
        server.exported_objects(),
        server_live.load(SeqCst)
    );
    assert!(
        eventually(|| client.exported_objects() == 0 && client_live.load(SeqCst) == 0).await,
        "client exports {} objects, {} alive",
        client.exported_objects(),
        client_live.load(SeqCst)
    );
    assert_eq!(bounded(root.add(2, 3)).await.unwrap(), 5);
    assert!(eventually(|| client.queued_output_bytes() == 0).await);
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
    let (ours, theirs) = tokio::io::duplex(4096);
    let (r, w) = tokio::io::split(ours);
    // Takes up to 64 KiB before it needs the pipe.
    let w = tokio::io::BufWriter::with_capacity(64 << 10, w);
    let (_their_r, mut their_w) = tokio::io::split(theirs);
    their_w.write_all(&raw::hello(vec![])).await.unwrap();
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .over(r, w, "buffers, never read")
        .await
        .unwrap();
    let cell = conn.root::<dyn Cell>();
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
