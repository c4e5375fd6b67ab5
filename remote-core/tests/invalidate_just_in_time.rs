//! How late a holder of a shared object may acknowledge pushed
//! invalidations (PROTOCOL.md §3.9) before writes stop waiting for it.
//!
//! An acknowledgement within an eighth of `invalidation_ack_timeout` is
//! prompt and costs the holder nothing; whatever a write waits beyond
//! that is paid from the holder's allowance (`src/driver/lateness.rs`:
//! `invalidation_max_missed_acks` timeouts' worth, less the eighth each,
//! refilling at an eighth of wall time), and once a wait found it short
//! writes do not wait for the holder (it still gets every push) until a
//! timeout's worth is back. So one holder holds writes up over a span T
//! by at most that many timeouts plus T/8 in total beyond a prompt
//! acknowledgement each, however it times its acknowledgements. Before (red-team pass 47) only timeouts counted: a
//! holder acknowledging each push 10 ms *before* the timeout never missed
//! one and held every write up by 1.99 s for as long as it stayed
//! connected (10 writes: 19.9 s; over TCP each honest chat post took
//! 1.9 s instead of under a millisecond).
//!
//! The paused-clock tests run on tokio's paused clock (as
//! `attack_invalidate.rs` does): a wait takes exactly what the holder's
//! timing makes it, one that is skipped takes no time.

#[path = "support/late_holder.rs"]
mod late_holder;
#[path = "support/pipe.rs"]
mod pipe;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use late_holder::acknowledge_after;
use pipe::{frame, head, raw_peer};
use remote_core::cache::InvalidationReport;
use remote_core::proto::encode_invalidated;
use remote_core::{remote, Error, Limits, Remote, Server};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Doc {
    #[remote(cache(ttl = "1h"))]
    async fn text(&self) -> Result<String, Error>;
}

struct Page;

#[remote]
impl Doc for Page {
    async fn text(&self) -> Result<String, Error> {
        Ok("hello".into())
    }
}

const TIMEOUT: Duration = Duration::from_secs(2);
const MAX_MISSED: u32 = 3;
/// The prompt part of `TIMEOUT`: an eighth.
const PROMPT: Duration = Duration::from_millis(250);

/// A raw holder of `root` (on a pipe, paused clock) that acknowledges each
/// push `delay` after it arrives; the tokens it was sent come out of the
/// returned receiver.
async fn holder_acknowledging_after(
    root: &Arc<dyn Doc>,
    delay: Duration,
) -> (
    remote_core::Connection,
    tokio::sync::mpsc::UnboundedReceiver<u64>,
) {
    let limits = Limits {
        invalidation_ack_timeout: TIMEOUT,
        invalidation_max_missed_acks: MAX_MISSED,
        ..Limits::default()
    };
    let (server_end, mut pr, pw) =
        raw_peer(Remote::new(root.clone()), limits, vec!["invalidate"]).await;
    assert_eq!(head(&frame(&mut pr).await.unwrap()).0, 0, "hello");
    let pw = Arc::new(tokio::sync::Mutex::new(pw));
    let (seen, tokens) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(f) = frame(&mut pr).await {
            if let (10, Some(token)) = head(&f) {
                let _ = seen.send(token);
                let pw = pw.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = pw.lock().await.write_all(&encode_invalidated(token)).await;
                });
            }
        }
    });
    (server_end, tokens)
}

/// Each write's report and how long it took.
async fn writes(root: &Arc<dyn Doc>, n: usize) -> Vec<(InvalidationReport, Duration)> {
    let mut done = Vec::new();
    for _ in 0..n {
        let started = tokio::time::Instant::now();
        let report = remote_core::cache::invalidate(root, &["text"]).await;
        done.push((report, started.elapsed()));
        assert_eq!(report.notified, 1, "the peer holds the object");
    }
    done
}

/// Whether the write waited for the holder (it acknowledged, or the wait
/// stopped without it), rather than sending without waiting.
fn waited(r: &InvalidationReport) -> bool {
    r.unacknowledged == 0 || r.timed_out == 1
}

#[tokio::test(start_paused = true)]
async fn a_peer_acknowledging_each_push_just_in_time_stalls_writes_a_bounded_total() {
    let root: Arc<dyn Doc> = Arc::new(Page);
    // Hostile: acknowledges each push 10 ms before the write would stop
    // waiting, so it never misses a timeout.
    let (server_end, _tokens) =
        holder_acknowledging_after(&root, TIMEOUT - Duration::from_millis(10)).await;
    const WRITES: usize = 10;
    let done = writes(&root, WRITES).await;
    let stalled: Duration = done.iter().map(|d| d.1).sum();
    let each: Vec<_> = done.iter().map(|d| d.1).collect();
    println!("{WRITES} writes stalled {stalled:?} in total: {each:?}");
    // The allowance holds 3 × 1.75 s and refills at an eighth of the
    // time (a few hundred ms over these waits): three waits took 1.74 s
    // of it each, the fourth found less than the rest of the timeout
    // left, stopped at its end (about 1 s) and drained it; the rest sent
    // without waiting. Before: 1.99 s each, 19.9 s in total.
    let bound = 4 * PROMPT + MAX_MISSED * (TIMEOUT - PROMPT) + stalled / 8;
    assert!(
        stalled <= bound && stalled < 4 * TIMEOUT,
        "one hostile holder stalled {WRITES} writes by {stalled:?} in total: {each:?}"
    );
    assert_eq!(done.iter().filter(|d| waited(&d.0)).count(), 4);
    for (report, took) in &done[4..] {
        assert_eq!((report.unacknowledged, report.timed_out), (1, 0));
        assert_eq!(*took, Duration::ZERO, "not waited for");
    }
    assert!(!server_end.is_closed(), "a slow peer is never disconnected");
}

/// A holder that acknowledges within the prompt part of the timeout (an
/// honest one 240 ms away, or a hostile one at the edge) is waited for on
/// every write, however many there are, each for under the prompt part.
#[tokio::test(start_paused = true)]
async fn a_prompt_holder_is_waited_for_on_every_write() {
    let root: Arc<dyn Doc> = Arc::new(Page);
    let delay = PROMPT - Duration::from_millis(10);
    let (server_end, _tokens) = holder_acknowledging_after(&root, delay).await;
    for (report, took) in writes(&root, 200).await {
        assert_eq!(
            report.unacknowledged, 0,
            "the write had its acknowledgement"
        );
        assert!(took >= delay && took < PROMPT, "{took:?}");
    }
    assert!(!server_end.is_closed());
}

/// A slow but honest holder (a throttled browser tab answering after 1 s)
/// pays what its acknowledgements take beyond the prompt part, is
/// lagging once the allowance is drained, as one missing the timeouts
/// would be, still gets every push, in order, and is waited for again
/// once the allowance refilled a timeout's worth (never lagging for good).
#[tokio::test(start_paused = true)]
async fn a_slow_holder_is_lagging_once_its_allowance_is_used_and_still_gets_every_push() {
    let root: Arc<dyn Doc> = Arc::new(Page);
    let (server_end, mut tokens) = holder_acknowledging_after(&root, TIMEOUT / 2).await;
    const WRITES: usize = 12;
    let done = writes(&root, WRITES).await;
    // 750 ms paid per write, 125 ms refilled over each: six find the rest
    // of the timeout (1.75 s) left, reserve a slice of it at a time as
    // they go and give back what they did not use; the seventh finds less
    // than the rest left, still has its acknowledgement in time, and
    // drains the allowance.
    let waits = done.iter().filter(|d| waited(&d.0)).count();
    assert_eq!(waits, 7, "{done:?}");
    for (report, took) in &done[..6] {
        assert_eq!(report.unacknowledged, 0);
        assert!(*took >= TIMEOUT / 2 && *took < TIMEOUT / 2 + PROMPT / 8);
    }
    assert!(done[7..].iter().all(|d| d.1 == Duration::ZERO));
    for want in 1..=WRITES as u64 {
        assert_eq!(
            tokens.recv().await,
            Some(want),
            "every push arrives, in order"
        );
    }
    // Refilled at an eighth of the time: one timeout's worth (1.75 s) is
    // back within 14 s, and writes wait for it again.
    tokio::time::sleep(8 * (TIMEOUT - PROMPT)).await;
    for (report, took) in writes(&root, 2).await {
        assert_eq!(report.unacknowledged, 0, "waited for again");
        assert!(took >= TIMEOUT / 2 && took < TIMEOUT / 2 + PROMPT / 8);
    }
    assert!(!server_end.is_closed());
}

/// Finishes opening a raw TCP holder: a hello listing `invalidate`, a call
/// answered (open, and registered as a holder).
async fn open_holder(s: &mut tokio::net::TcpStream) {
    s.write_all(&raw::hello(vec!["invalidate"])).await.unwrap();
    s.write_all(&raw::call(1, 0, "len", 60_000, &[0x90]))
        .await
        .unwrap();
    raw::next_of_kind(s, raw::RETURN).await;
}

/// The same on a chat-like server over TCP (the shape of the chat example:
/// one `SharedVec` served as every connection's root), default limits: one
/// hostile connection that acknowledges each pushed invalidation 1.9 s
/// late (inside the 2 s timeout) made every honest client's `push` take
/// about 1.9 s, for as long as it stayed connected. Now it pays 1.65 s
/// a post from its allowance (5.25 s, refilling at an eighth of the
/// time): the fourth post waits only for what is left, and the posts
/// after it not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_acknowledger_holds_chat_posts_up_a_bounded_total() {
    use remote_core::collections::{RemoteList, SharedVec};
    use remote_core::Connection;
    let list = SharedVec::<String>::new();
    let root = list.remote();
    let server = Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| root.clone());
    let mut s = raw::connect(&server).await;
    open_holder(&mut s).await;
    let (r, w) = s.into_split();
    let acker = acknowledge_after(r, w, Arc::new(|_| Duration::from_millis(1900)));

    let honest = Connection::connect(server.local_addr()).await.unwrap();
    let chat = honest.root::<dyn RemoteList<String>>();
    chat.len().await.unwrap();
    const POSTS: usize = 10;
    let mut took = Vec::new();
    for i in 0..POSTS {
        let started = std::time::Instant::now();
        chat.push(format!("message {i}")).await.unwrap();
        took.push(started.elapsed());
    }
    let total: Duration = took.iter().sum();
    println!("{POSTS} posts by an honest client: {total:?} in total, {took:?}");
    acker.abort();
    // At most three timeouts' worth, and an eighth of the time refilled,
    // beyond a prompt acknowledgement for each of the four waits (about
    // 7.1 s), with room for a loaded machine; before, 19 s.
    assert!(
        total < Duration::from_millis(8500),
        "one hostile connection held {POSTS} honest posts up by {total:?}: {took:?}"
    );
    // Once its allowance is used, a post does not wait for it at all.
    for t in &took[4..] {
        assert!(*t < Duration::from_millis(500), "{took:?}");
    }
}

/// A holder that acknowledges each push just in time *and* reconnects
/// before each write: lateness is paid from its peer address's allowance
/// too, across the server's connections, so a fresh connection does not
/// start with a fresh allowance (the address's refills at an eighth of the
/// time: 175 ms, a timeout's worth here, takes 1.4 s, longer than this
/// test's writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_just_in_time_holder_that_reconnects_before_each_write_is_waited_for_a_bounded_number_of_times(
) {
    const WRITES: usize = 6;
    let root: Arc<dyn Doc> = Arc::new(Page);
    let limits = Limits {
        invalidation_ack_timeout: Duration::from_millis(200),
        invalidation_max_missed_acks: 2,
        ..Limits::default()
    };
    let served = root.clone();
    let server = Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(served.clone()));
    let mut holder: Option<tokio::task::JoinHandle<()>> = None;
    let mut reports = Vec::new();
    for _ in 0..WRITES {
        if let Some(acker) = holder.take() {
            acker.abort();
        }
        assert!(raw::eventually(|| server.connections() == 0).await);
        let mut s = raw::connect(&server).await;
        s.write_all(&raw::hello(vec!["invalidate"])).await.unwrap();
        s.write_all(&raw::call(1, 0, "text", 60_000, &[0x90]))
            .await
            .unwrap();
        raw::next_of_kind(&mut s, raw::RETURN).await;
        let (r, w) = s.into_split();
        // Each wait is charged at least 180 ms less the prompt 25 ms.
        holder = Some(acknowledge_after(
            r,
            w,
            Arc::new(|_| Duration::from_millis(180)),
        ));
        let report = remote_core::cache::invalidate(&root, &["text"]).await;
        assert_eq!(report.notified, 1, "the fresh connection holds the root");
        reports.push(report);
    }
    // 2 × 175 ms of allowance: two waits of 155 ms, then one stopped at
    // what is left, draining it; then not waited for on any of its
    // connections until it refilled.
    let waits = reports.iter().filter(|r| waited(r)).count();
    assert!(waits <= 3, "{waits} writes waited: {reports:?}");
    for r in &reports[3..] {
        assert_eq!((r.unacknowledged, r.timed_out), (1, 0), "{reports:?}");
    }
}
