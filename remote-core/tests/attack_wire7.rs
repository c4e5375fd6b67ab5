//! Red-team pass 7 over the whole wire surface: what a peer can make a
//! server hold beyond its bounds.
//!
//! Most tests: output a peer can make the server queue with frames that
//! are not ordinary calls (kind 1), which backpressure holds back
//! (PROTOCOL.md §9). Every other message keeps being read whatever the
//! output queue holds, so whatever output one of them causes must stay
//! bounded by itself: a peer that reads a trickle (never stalled long
//! enough for `write_stall_timeout`) must not grow the server's queue
//! beyond its budget. Each plays a raw peer over a unix socket (the kernel
//! keeps a fixed ~200 KiB of what the server writes, so what the server
//! counts is what it queued) that floods one kind of frame and reads
//! nothing, and watches the server's counted bytes. Each ends on an event:
//! the flood was read to its goodbye, or the server closed the connection
//! for `write_stall_timeout` (it held the flood back and the peer still
//! read nothing).
//!
//! Then what is held outside the output queue: the arguments of running
//! handlers, and refused connections waiting for their handshake.

#[path = "support/gate.rs"]
mod gate;
#[path = "support/raw.rs"]
mod raw;

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use gate::Gate;
use remote_core::proto::{encode, encode_invalidate, encode_pipelined_call_head, CallTarget};
use remote_core::proto::{CallId, ObjectId};
use remote_core::{remote, Connection, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

#[remote]
pub trait Adder {
    /// `a + b`.
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error>;
    /// Holds `data` until the test lets it go (one permit of the gate).
    async fn hold(&self, data: Bytes) -> Result<u32, Error>;
    /// A cached read, so a write can push its invalidation.
    #[remote(cache(ttl = "1h"))]
    async fn text(&self) -> Result<String, Error>;
}

struct Impl(Arc<Gate>);

#[remote]
impl Adder for Impl {
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error> {
        Ok(a + b)
    }
    async fn hold(&self, data: Bytes) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(u32::try_from(data.len()).unwrap())
    }
    async fn text(&self) -> Result<String, Error> {
        Ok("hello".into())
    }
}

const BUDGET: usize = 4 << 20;
/// What one connection that reads nothing may hold: half of the budget
/// and its share (an eighth) once past it, with room for the frames in
/// progress (PROTOCOL.md §9). A flood that grows the queue with no bound
/// fills the whole budget and more.
const BOUND: usize = BUDGET * 3 / 4;

fn limits() -> Limits {
    Limits {
        memory_budget: BUDGET,
        // What closes a peer that reads nothing at all; a real attacker
        // reads a trickle and is never closed. Long enough that the
        // server handles the flood before it, short enough for a test.
        write_stall_timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

async fn serve(path: &Path) -> ServerHandle {
    serve_at(
        limits(),
        &format!("unix://{}", path.display()),
        Arc::default(),
    )
    .await
}

async fn serve_at(limits: Limits, addr: &str, gate: Arc<Gate>) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind(addr)
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(Impl(gate.clone())) as Arc<dyn Adder>))
}

/// Connects to `path` as a raw peer listing `features`, writes `flood`
/// `copies` times (then a goodbye) without reading anything, and returns
/// the most bytes the server counted against its budget until the
/// connection was gone (read to the goodbye, or closed by the server).
async fn peak_of_flood(
    server: &ServerHandle,
    path: &Path,
    features: Vec<&'static str>,
    flood: Vec<u8>,
    copies: usize,
) -> usize {
    let before = server.connections();
    let mut s = UnixStream::connect(path).await.unwrap();
    s.write_all(&raw::hello(features)).await.unwrap();
    assert!(
        raw::eventually(|| server.connections() == before + 1).await,
        "the attacker is connected"
    );
    let flood = tokio::spawn(async move {
        for _ in 0..copies {
            // Fails once the server closed us for reading nothing.
            if s.write_all(&flood).await.is_err() {
                return;
            }
        }
        let _ = s.write_all(&encode::goodbye("done")).await;
        // Kept open until the server has read everything (or closed).
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(
            raw::WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink),
        )
        .await;
    });
    let end = tokio::time::Instant::now() + raw::WAIT * 2;
    let mut peak = 0;
    while tokio::time::Instant::now() < end && server.connections() > before {
        peak = peak.max(server.buffered_bytes());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        server.connections(),
        before,
        "the attacker's connection ended"
    );
    flood.abort();
    peak
}

/// A new client is served normally after the attack.
async fn still_serves(server: &ServerHandle) {
    let conn = Connection::connect(server.local_addr()).await.unwrap();
    let root = conn.root::<dyn Adder>();
    assert_eq!(raw::bounded(root.add(2, 3)).await.unwrap(), 5);
}

/// A kept-answer call frame (kind 12) `add(1, 2)` on the root as `id`.
fn kept_add(id: u32) -> Vec<u8> {
    let mut f = encode::begin(32);
    encode_pipelined_call_head(
        &mut f,
        true,
        CallId(id),
        CallTarget::Object(ObjectId(0)),
        "add",
        600_000,
    );
    f.extend_from_slice(&[0x92, 0x01, 0x02]);
    encode::finish(&mut f);
    f
}

/// Kept-answer calls (kind 12) are calls, but the reader held back only
/// kind 1 while the output was over its share: with the pipeline feature,
/// a peer that never reads leaves 128 answers unfinished and then sends
/// kind-12 calls the server refuses (`max_calls_in_flight`), each ~22
/// bytes answered by a ~110-byte `limit_exceeded` error, all queued.
/// Measured before the fix: 4.47 MB counted against the 4 MiB budget, all
/// of it one connection's (its reading stopped only when a frame split
/// across reads found no room), so every other connection's frame over
/// 64 KiB waits for as long as the attacker reads a trickle. After: 2.4 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_kept_answer_calls_is_held_back_like_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.sock");
    let server = serve(&path).await;
    let mut flood = Vec::new();
    for id in 0..128 {
        flood.extend_from_slice(&kept_add(id));
    }
    // Then 200,000 refused calls: ~22 MB of error replies without a bound.
    for _ in 0..200_000 {
        flood.extend_from_slice(&kept_add(1000));
    }
    let peak = peak_of_flood(&server, &path, vec!["pipeline"], flood, 1).await;
    println!("kept-answer call flood: peak counted {peak} bytes (budget {BUDGET}, bound {BOUND})");
    assert!(
        peak <= BOUND,
        "replies to kept-answer calls queued for a peer that never reads: {peak} bytes \
         counted, budget {BUDGET}"
    );
    still_serves(&server).await;
}

/// Every `invalidate` (kind 10) a peer sends was acknowledged with an
/// `invalidated` frame, whatever was queued for it: a peer that never
/// reads floods 13-byte invalidates of nothing and the server queues an
/// 11-byte acknowledgement for each. Measured before the fix: 13.5 MB
/// counted against the 4 MiB budget (growing with the flood). After:
/// 2.5 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidate_flood_from_a_peer_that_never_reads_stays_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inval.sock");
    let server = serve(&path).await;
    // Tokens from 2^24 on: every acknowledgement takes 9 bytes.
    let mut flood = Vec::new();
    for t in 0..(1u64 << 20) {
        flood.extend_from_slice(&encode_invalidate((1 << 24) + t, ObjectId(0), &[]));
    }
    let peak = peak_of_flood(&server, &path, vec!["invalidate"], flood, 1).await;
    println!("invalidate flood: peak counted {peak} bytes (budget {BUDGET}, bound {BOUND})");
    assert!(
        peak <= BOUND,
        "acknowledgements queued for a peer that never reads: {peak} bytes counted, \
         budget {BUDGET}"
    );
    still_serves(&server).await;
}

/// A return (kind 2) for a call the server never made was ignored, but
/// the references in it counted and released (PROTOCOL.md §4), each with
/// a release frame, and replies are read whatever the output queue holds:
/// a peer that never reads sends returns of 1,000 references to distinct
/// objects of its own (6 KB) and the server queues 1,000 releases (10 KB)
/// for each. Measured before the fix: 4.34 MB counted against the 4 MiB
/// budget, all of it one connection's (as for kept-answer calls above).
/// Now such a reply is a violation, refused before its references count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_for_calls_never_made_cannot_queue_releases_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("returns.sock");
    let server = serve(&path).await;
    let mut ret = encode::begin(6_100);
    ret.extend_from_slice(&[0x93, 0x02, 0x4d, 0xdc]);
    ret.extend_from_slice(&1000u16.to_be_bytes());
    for id in 1..=1000u32 {
        ret.extend_from_slice(&[0xd6, 0x01]);
        ret.extend_from_slice(&id.to_be_bytes());
    }
    encode::finish(&mut ret);
    let peak = peak_of_flood(&server, &path, vec![], ret.clone(), 1000).await;
    println!("unsolicited returns: peak counted {peak} bytes (budget {BUDGET}, bound {BOUND})");
    assert!(
        peak <= BOUND,
        "releases queued for a peer that never reads: {peak} bytes counted, budget {BUDGET}"
    );
    // What the peer is told: the reply names a call never made.
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(&raw::hello(vec![])).await.unwrap();
    s.write_all(&ret).await.unwrap();
    let reason = raw::goodbye(&mut s).await.expect("a goodbye");
    assert!(
        reason.contains("protocol violation: reply to call 77, which is neither waiting"),
        "{reason}"
    );
    still_serves(&server).await;
}

/// A running handler holds its arguments (the call frame, or what it
/// decoded from it) until it stops, and nothing counted them: after one
/// call with a tiny reply (the reply estimate drops to 4 KiB), 128
/// pipelined calls with 1 MiB of arguments each to a handler that awaits
/// all started at once, at the default limits. Measured before the fix:
/// two such connections grew the heap by 260 MB while the budget counted
/// 4 MB; one peer address (32 connections) could hold 4 GiB, a server
/// (1,024) 128 GiB. Now their frames count against the connection's share
/// (8 MiB at the defaults): eight start, the rest wait to be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_held_by_running_handlers_count_against_the_share() {
    const CALLS: usize = 128;
    let gate = Arc::new(Gate::default());
    let server = serve_at(Limits::default(), "tcp://127.0.0.1:0", gate.clone()).await;
    let mut s = raw::opened(&server).await;
    s.write_all(&raw::call(0, 0, "add", 60_000, &[0x92, 0x01, 0x02]))
        .await
        .unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::RETURN);
    let writer = tokio::spawn(async move {
        let len = (1usize << 20) - 64;
        for id in 1..=CALLS as u32 {
            let mut f = encode::begin(len + 64);
            encode::call_head(&mut f, CallId(id), ObjectId(0), "hold", 600_000);
            f.extend_from_slice(&[0x91, 0xc6]);
            f.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
            f.resize(f.len() + len, 7);
            encode::finish(&mut f);
            s.write_all(&f).await.unwrap();
        }
        s
    });
    // Eight start whatever the fix (8 MiB of arguments reach the share)...
    assert!(
        raw::eventually(|| gate.running.load(SeqCst) >= 8).await,
        "eight handlers run"
    );
    // ...then one is let go at a time, each once one runs: every call ends.
    for ended in 1..=CALLS {
        assert!(
            raw::eventually(|| gate.running.load(SeqCst) > 0).await,
            "a handler runs ({} ended)",
            ended - 1
        );
        gate.open.add_permits(1);
        assert!(raw::eventually(|| gate.done.load(SeqCst) == ended).await);
    }
    let _s = raw::bounded(writer).await.unwrap();
    let most = gate.most.load(SeqCst);
    println!("handlers holding 1 MiB of arguments at once: {most}");
    assert!(
        most <= 9,
        "{most} handlers held 1 MiB of arguments each at once (share 8 MiB)"
    );
}

/// A server over its connection limit tells each refused client why (a
/// goodbye instead of a hello), in a task of its own bounded by one
/// second; over `ws://` (and TLS) that task first waits for the client's
/// handshake. Nothing bounded how many ran at once: a peer opening
/// connections that send nothing made the server hold a task, a socket and
/// its handshake state for each, as many as it could open in a second
/// (measured before the fix: 300 connections, 300 tasks alive). Now at most
/// `MAX_REFUSALS` (64) are told why at once; the rest are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_in_their_handshake_are_bounded() {
    const ATTEMPTS: u64 = 300;
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let server = serve_at(limits, "ws://127.0.0.1:0/", Arc::default()).await;
    let conn = Connection::connect(server.local_addr()).await.unwrap();
    let root = conn.root::<dyn Adder>();
    assert_eq!(raw::bounded(root.add(1, 1)).await.unwrap(), 2);
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let authority = server
        .local_addr()
        .strip_prefix("ws://")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    // Connections that never send their upgrade request, kept open.
    let mut silent = Vec::new();
    for _ in 0..ATTEMPTS {
        silent.push(tokio::net::TcpStream::connect(&authority).await.unwrap());
    }
    assert!(
        raw::eventually(|| server.stats().connections_refused >= ATTEMPTS).await,
        "every attempt was refused"
    );
    let alive = metrics.num_alive_tasks().saturating_sub(baseline);
    println!("refusals in their handshake: {alive} tasks alive");
    assert!(
        alive <= 64 + 8,
        "{alive} tasks alive for {ATTEMPTS} refused connections"
    );
    drop(silent);
    assert_eq!(raw::bounded(root.add(2, 3)).await.unwrap(), 5);
}
