//! Independent attack review (issue 8 follow-up): cancel floods and
//! reference-counting games from a raw peer. These attacks held; the tests
//! keep them holding.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use raw::{frame, raw};
use remote_core::proto::{encode, CallId, ObjectId, Reader};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Nap {
    /// Sleeps `ms` (async); counts the handlers running.
    async fn nap(&self, ms: u64) -> Result<(), Error>;
    /// A fresh object.
    async fn make(&self) -> Result<Remote<dyn Nap>, Error>;
    /// Accepts an object and drops it.
    async fn take(&self, obj: Remote<dyn Nap>) -> Result<u32, Error>;
}

#[derive(Default)]
struct Stats {
    running: AtomicUsize,
    max_running: AtomicUsize,
}

struct Impl(Arc<Stats>);

struct Running<'a>(&'a Stats);
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

#[remote]
impl Nap for Impl {
    async fn nap(&self, ms: u64) -> Result<(), Error> {
        let now = self.0.running.fetch_add(1, SeqCst) + 1;
        self.0.max_running.fetch_max(now, SeqCst);
        let _r = Running(&self.0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
    async fn make(&self) -> Result<Remote<dyn Nap>, Error> {
        Ok(Remote::new(Arc::new(Impl(self.0.clone())) as Arc<dyn Nap>))
    }
    async fn take(&self, _obj: Remote<dyn Nap>) -> Result<u32, Error> {
        Ok(1)
    }
}

async fn serve(limits: Limits, stats: &Arc<Stats>) -> ServerHandle {
    let s2 = stats.clone();
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(Impl(s2.clone())) as Arc<dyn Nap>))
}

/// A call frame with raw argument bytes (a long deadline).
fn call(id: u32, target: u32, method: &str, args: &[u8]) -> Vec<u8> {
    raw::call(id, target, method, 600_000, args)
}

/// `(kind, call id or 0, error kind if an error, goodbye reason if one)`.
fn parse(f: &[u8]) -> (u64, u64, Option<String>) {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    let k = r.uint().unwrap();
    match k {
        3 => {
            let id = r.uint().unwrap();
            r.array_len().unwrap();
            (k, id, Some(r.str().unwrap().to_owned()))
        }
        6 => (k, 0, Some(r.str().unwrap().to_owned())),
        _ => (k, r.uint().unwrap_or(0), None),
    }
}

/// `call n, cancel n` for four ids a thousand times, reusing each id as
/// soon as its reply arrives: never more handlers at once than
/// `max_calls_in_flight`, exactly one reply per call, and the slots come
/// back. (A call cancelled before its handler's task first ran used to
/// count forever: after the first four, every call was refused.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_cancel_reuse_floods_stay_within_max_calls_in_flight() {
    let stats = Arc::new(Stats::default());
    let limits = Limits {
        max_calls_in_flight: 4,
        ..Limits::default()
    };
    let server = serve(limits, &stats).await;
    let mut s = raw(&server).await;
    assert_eq!(parse(&frame(&mut s).await.unwrap()).0, 0, "hello");
    let nap = |id: u32, ms: u16| {
        let mut args = vec![0x91, 0xcd];
        args.extend_from_slice(&ms.to_be_bytes());
        call(id, 0, "nap", &args)
    };
    let (mut cancelled, mut refused) = (0, 0);
    for _ in 0..1000 {
        let mut batch = Vec::new();
        for id in 0..4u32 {
            batch.extend_from_slice(&nap(id, 10_000));
            batch.extend_from_slice(&encode::cancel(CallId(id)));
        }
        s.write_all(&batch).await.unwrap();
        for _ in 0..4 {
            match parse(&frame(&mut s).await.expect("a reply")) {
                (3, _, Some(kind)) if kind == "cancelled" => cancelled += 1,
                // Allowed: a cancelled call counts until its handler has
                // stopped, which may be just after its reply was sent.
                (3, _, Some(kind)) if kind == "limit_exceeded" => refused += 1,
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }
    println!(
        "4000 calls cancelled: {cancelled} cancelled replies, {refused} refused, max {} handlers at once",
        stats.max_running.load(SeqCst)
    );
    assert!(stats.max_running.load(SeqCst) <= 4);
    assert!(cancelled >= 2000, "only {cancelled} of 4000 calls ran");
    // The slots come back: four calls at once all run to the end.
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut batch = Vec::new();
        for id in 0..4u32 {
            batch.extend_from_slice(&nap(id, 1));
        }
        s.write_all(&batch).await.unwrap();
        let mut ok = 0;
        for _ in 0..4 {
            let (k, _, _) = parse(&frame(&mut s).await.expect("a reply"));
            ok += usize::from(k == 2);
        }
        if ok == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the call slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.connections(), 1);
}

/// Releases and references the peer has no right to: each is a violation
/// closing only that connection (before anything is counted), or for a
/// hand-back of an object that is gone, an `unknown_object` call error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_releases_and_references_get_a_goodbye_or_unknown_object() {
    let stats = Arc::new(Stats::default());
    let server = serve(Limits::default(), &stats).await;

    async fn goodbye_after(server: &ServerHandle, frames: &[Vec<u8>]) -> String {
        let mut s = raw(server).await;
        for f in frames {
            s.write_all(f).await.unwrap();
        }
        loop {
            match frame(&mut s).await.map(|f| parse(&f)) {
                Some((6, _, Some(reason))) => return reason,
                Some(_) => {}
                None => panic!("closed without a goodbye"),
            }
        }
    }
    let make = call(0, 0, "make", &[0x90]);
    // A release of an id never sent, of id 0, and u32::MAX of a real one.
    let never = goodbye_after(&server, &[encode::release(ObjectId(7), 1)]).await;
    assert!(never.contains("protocol violation"), "{never}");
    let root = goodbye_after(&server, &[encode::release(ObjectId(0), 1)]).await;
    assert!(root.contains("protocol violation"), "{root}");
    let over = goodbye_after(
        &server,
        &[make.clone(), encode::release(ObjectId(1), u32::MAX)],
    )
    .await;
    assert!(over.contains("protocol violation"), "{over}");
    // A counted reference (type 1) to object 0, as an argument.
    let zero = goodbye_after(&server, &[call(1, 0, "take", &[0x91, 0xd6, 1, 0, 0, 0, 0])]).await;
    assert!(zero.contains("protocol violation"), "{zero}");

    // Hand-back (type 2) of an object after releasing it, and a call to it.
    let mut s = raw(&server).await;
    assert_eq!(parse(&frame(&mut s).await.unwrap()).0, 0, "hello");
    s.write_all(&make).await.unwrap();
    assert_eq!(parse(&frame(&mut s).await.unwrap()).0, 2, "made object 1");
    s.write_all(&encode::release(ObjectId(1), 1)).await.unwrap();
    s.write_all(&call(1, 0, "take", &[0x91, 0xd6, 2, 0, 0, 0, 1]))
        .await
        .unwrap();
    s.write_all(&call(2, 1, "nap", &[0x91, 0])).await.unwrap();
    for want in [1, 2] {
        let (k, id, err) = parse(&frame(&mut s).await.unwrap());
        assert_eq!((k, id), (3, want));
        assert_eq!(err.as_deref(), Some("unknown_object"));
    }
    // The connection is still served.
    s.write_all(&call(3, 0, "nap", &[0x91, 0])).await.unwrap();
    assert_eq!(parse(&frame(&mut s).await.unwrap()), (2, 3, None));
    assert!(server.connections() >= 1);
}

/// The same through the Rust client: a busy, well-behaved client whose
/// calls time out at once (their cancel follows the call in the same
/// write) must not lose its call slots one by one until every call is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_dropped_right_after_they_are_sent_give_their_slots_back() {
    let stats = Arc::new(Stats::default());
    let limits = Limits {
        max_calls_in_flight: 4,
        ..Limits::default()
    };
    let server = serve(limits, &stats).await;
    let conn = remote_core::Connection::connect(server.local_addr())
        .await
        .unwrap();
    let nap = conn.root::<dyn Nap>();
    for _ in 0..200 {
        // Polled once (the call is queued), then dropped (a cancel follows).
        let _ = tokio::time::timeout(Duration::from_micros(1), nap.nap(10_000)).await;
    }
    // Every slot comes back: four calls at once succeed.
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let calls = (0..4).map(|_| nap.nap(1));
        let results = futures_util::future::join_all(calls).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        if ok == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "call slots lost: {:?}",
            results.iter().find(|r| r.is_err())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
