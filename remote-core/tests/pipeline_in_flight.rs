//! A pipelined (kept-answer) call counts once in `max_calls_in_flight`: as
//! a call while it runs, as an answer once it has replied. It counted
//! twice while it ran, and an honest client with fewer calls unanswered
//! than the limit was refused (red-team pass 46: 16 of 80 pipelined calls
//! at a limit of 128, and 18 of 50 pairs of a call and a call on its
//! promise).

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use remote_core::{remote, Connection, Error, Limits, Promise, Remote, Server, ServerHandle};
use tokio::sync::watch;

#[remote]
pub trait Gated {
    /// A fresh object, once the gate opens.
    async fn make(&self) -> Result<Remote<dyn Gated>, Error>;
    /// 7.
    async fn tag(&self) -> Result<u32, Error>;
}

struct Impl {
    arrived: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
}

#[remote]
impl Gated for Impl {
    async fn make(&self) -> Result<Remote<dyn Gated>, Error> {
        self.arrived.fetch_add(1, SeqCst);
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        Ok(Remote::new(Arc::new(Impl {
            arrived: self.arrived.clone(),
            gate: self.gate.clone(),
        }) as Arc<dyn Gated>))
    }
    async fn tag(&self) -> Result<u32, Error> {
        Ok(7)
    }
}

const LIMIT: usize = 16;

struct Served {
    server: ServerHandle,
    arrived: Arc<AtomicUsize>,
    open: watch::Sender<bool>,
}

async fn serve() -> Served {
    let arrived = Arc::new(AtomicUsize::new(0));
    let (open, gate) = watch::channel(false);
    let root_arrived = arrived.clone();
    let server = Server::builder()
        .limits(Limits {
            max_calls_in_flight: LIMIT,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| {
            Remote::new(Arc::new(Impl {
                arrived: root_arrived.clone(),
                gate: gate.clone(),
            }) as Arc<dyn Gated>)
        });
    Served {
        server,
        arrived,
        open,
    }
}

/// Waits until `n` handlers hold their calls open, or a call has ended
/// (refused), then opens the gate; returns whether all `n` arrived.
async fn all_arrived<T>(s: &Served, n: usize, calls: &[tokio::task::JoinHandle<T>]) -> bool {
    raw::eventually(|| s.arrived.load(SeqCst) >= n || calls.iter().any(|c| c.is_finished())).await;
    let all = s.arrived.load(SeqCst) == n;
    s.open.send_replace(true);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_under_the_limit_are_never_refused() {
    let s = serve().await;
    let c = Connection::connect(s.server.local_addr()).await.unwrap();
    let root: Remote<dyn Gated> = c.root();
    // A first reply: until one, a connection starts only the handlers
    // whose replies fit its share whatever they return (8 here).
    assert_eq!(root.tag().await.unwrap(), 7);
    let n = LIMIT - 4;
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let p: Promise<dyn Gated> = root.handle().unwrap().pipeline("make", ());
            tokio::spawn(async move { p.resolved().await.map(|_| ()) })
        })
        .collect();
    let all = all_arrived(&s, n, &calls).await;
    for call in calls {
        call.await.unwrap().expect("never refused");
    }
    assert!(all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_of_a_call_and_a_call_on_its_promise_under_the_limit_are_never_refused() {
    let s = serve().await;
    let c = Connection::connect(s.server.local_addr()).await.unwrap();
    let root: Remote<dyn Gated> = c.root();
    // A first reply: until one, a connection starts only the handlers
    // whose replies fit its share whatever they return (8 here).
    assert_eq!(root.tag().await.unwrap(), 7);
    // 7 pairs: 14 calls unanswered at once, under 16.
    let n = LIMIT / 2 - 1;
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let p: Promise<dyn Gated> = root.handle().unwrap().pipeline("make", ());
            let on = p.remote();
            tokio::spawn(async move { on.tag().await })
        })
        .collect();
    let all = all_arrived(&s, n, &calls).await;
    for call in calls {
        assert_eq!(call.await.unwrap().expect("never refused"), 7);
    }
    assert!(all);
}

/// A kept-answer call the peer cancels leaves its answer kept until the
/// peer's finish, and that answer counts: a peer that cancels each of its
/// pipelined calls and never finishes them is refused at the limit (the
/// cancel left the answer marked as its running call's, and 200 answers
/// were kept at a limit of 4: a review of the change above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_pipelined_calls_keep_counting_until_finished() {
    use remote_core::proto::{
        encode, encode_pipelined_call_head, CallId, CallTarget, ObjectId, FEATURE_PIPELINE,
    };
    use tokio::io::AsyncWriteExt;
    let s = serve().await;
    let mut peer = raw::raw_with(&s.server, vec![FEATURE_PIPELINE]).await;
    assert_eq!(raw::kind(&raw::frame(&mut peer).await.unwrap()), raw::HELLO);
    let (mut cancelled, mut refused) = (0, 0);
    for id in 1..=3 * LIMIT as u32 {
        let mut b = encode::begin(32);
        let target = CallTarget::Object(ObjectId(0));
        encode_pipelined_call_head(&mut b, true, CallId(id), target, "make", 600_000);
        b.push(0x90);
        encode::finish(&mut b);
        b.extend(encode::cancel(CallId(id)));
        peer.write_all(&b).await.unwrap();
        let f = raw::frame(&mut peer).await.unwrap();
        let (_, kind, _) = raw::error_of(&f).expect("an error reply");
        match kind.as_str() {
            "cancelled" => cancelled += 1,
            "limit_exceeded" => refused += 1,
            other => panic!("{other}"),
        }
    }
    assert!(
        cancelled <= LIMIT,
        "{cancelled} answers kept at a limit of {LIMIT}"
    );
    assert_eq!(cancelled + refused, 3 * LIMIT);
}
