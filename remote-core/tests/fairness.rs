//! Fair scheduling of handlers between connections (issue 9): with one
//! run turn (`Limits::max_running_handlers = 1`), the order in which queued
//! handlers start is round-robin between connections, highest
//! `Priority` first. Deterministic: a holder handler keeps the only turn
//! while every call is queued (observed through
//! `ServerHandle::calls_waiting`), then the order is recorded.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use remote_core::auth::Key;
use remote_core::{
    remote, Connection, ConnectionBuilder, Error, Limits, Peer, Priority, Remote, Server,
    ServerHandle,
};
use tokio::sync::Notify;

const PATIENCE: Duration = Duration::from_secs(60);

#[remote]
pub trait Work {
    /// Blocks its thread, in the server's only run turn, until released.
    async fn hold(&self) -> Result<(), Error>;
    /// Records `who` as started.
    async fn work(&self, who: String) -> Result<(), Error>;
    /// Like `work`, in the high class whatever the connection's.
    #[remote(priority = high)]
    async fn urgent(&self, who: String) -> Result<(), Error>;
}

#[derive(Default)]
struct Recorder {
    order: Mutex<Vec<String>>,
    holding: Notify,
    released: Mutex<bool>,
    release: Condvar,
}

#[remote]
impl Work for Recorder {
    async fn hold(&self) -> Result<(), Error> {
        self.holding.notify_one();
        // Blocks in this poll on purpose: it holds the turn meanwhile.
        // `block_in_place` hands the worker's other tasks to another
        // thread, so nothing else waits for this one.
        tokio::task::block_in_place(|| {
            let released = self.released.lock().unwrap();
            let (_released, timeout) = self
                .release
                .wait_timeout_while(released, PATIENCE, |r| !*r)
                .unwrap();
            assert!(!timeout.timed_out(), "the test never released the holder");
        });
        Ok(())
    }
    async fn work(&self, who: String) -> Result<(), Error> {
        self.order.lock().unwrap().push(who);
        Ok(())
    }
    async fn urgent(&self, who: String) -> Result<(), Error> {
        self.order.lock().unwrap().push(who);
        Ok(())
    }
}

impl Recorder {
    fn open(&self) {
        *self.released.lock().unwrap() = true;
        self.release.notify_all();
    }
}

struct Setup {
    rec: Arc<Recorder>,
    handle: ServerHandle,
    key: Key,
}

/// A server with one run turn whose user `admin` gets `Priority::High`.
async fn server() -> Setup {
    let rec = Arc::new(Recorder::default());
    let key = Key::random().unwrap();
    let k = key.clone();
    let served = rec.clone();
    let handle = Server::builder()
        .limits(Limits {
            max_running_handlers: 1,
            // Until a connection's first reply each call counts against
            // its output share as a full frame (driver/share.rs): small
            // frames let the floods below (100 calls) all be read while
            // the holder keeps the turn (128 at once, 8 with 1 MiB frames).
            max_frame_len: 64 << 10,
            ..Limits::default()
        })
        .authenticate(move |user: &str| Some((k.clone(), user.to_owned())))
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |peer: &Peer| {
            if peer.user() == Some("admin") {
                peer.set_priority(Priority::High);
            }
            Remote::new(served.clone() as Arc<dyn Work>)
        });
    Setup { rec, handle, key }
}

async fn connect(s: &Setup, user: &str) -> (Connection, Remote<dyn Work>) {
    let c = ConnectionBuilder::new()
        .credentials(user, s.key.clone())
        .connect(s.handle.local_addr())
        .await
        .unwrap();
    let root = c.root::<dyn Work>();
    (c, root)
}

/// Waits until `n` handlers wait for a turn.
async fn until_waiting(h: &ServerHandle, n: usize) {
    tokio::time::timeout(PATIENCE, async {
        while h.calls_waiting() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} calls waiting, not {n}", h.calls_waiting()));
}

/// Starts the holder's call and waits until it holds the only turn.
async fn hold(s: &Setup) -> (Connection, tokio::task::JoinHandle<Result<(), Error>>) {
    let (c, root) = connect(s, "holder").await;
    let holding = s.rec.holding.notified();
    let task = tokio::spawn(async move { root.hold().await });
    tokio::time::timeout(PATIENCE, holding)
        .await
        .expect("the holder's handler did not start");
    (c, task)
}

/// Sends calls to `work` (or `urgent`) named `names`, in order, and
/// returns a task awaiting them all.
fn send(
    root: &Remote<dyn Work>,
    urgent: bool,
    names: impl IntoIterator<Item = String>,
) -> tokio::task::JoinHandle<Vec<Result<(), Error>>> {
    let calls: Vec<_> = names
        .into_iter()
        .map(|n| {
            let r = root.clone();
            async move {
                if urgent {
                    r.urgent(n).await
                } else {
                    r.work(n).await
                }
            }
        })
        .collect();
    // `join_all` polls them in order, so they are sent in order.
    tokio::spawn(join_all(calls))
}

fn names(who: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{who}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_connection_does_not_starve_another() {
    let s = server().await;
    let (_holder, held) = hold(&s).await;
    let (_a, a) = connect(&s, "a").await;
    let (_b, b) = connect(&s, "b").await;
    let flood = send(&a, false, names("a", 100));
    until_waiting(&s.handle, 100).await;
    let late = send(&b, false, names("b", 3));
    until_waiting(&s.handle, 103).await;

    s.rec.open();
    held.await.unwrap().unwrap();
    assert!(flood.await.unwrap().iter().all(Result::is_ok));
    assert!(late.await.unwrap().iter().all(Result::is_ok));
    let order = s.rec.order.lock().unwrap().clone();
    assert_eq!(order.len(), 103);
    // Round-robin: b's j-th call starts within two turns of each other
    // connection's, although 100 calls of a were queued before it.
    for j in 0..3 {
        let at = order.iter().position(|w| *w == format!("b{j}")).unwrap();
        assert!(at <= 2 * j + 1, "b{j} started at turn {at}: {order:?}");
    }
    // And a's own calls keep their order.
    let a_order: Vec<_> = order.iter().filter(|w| w.starts_with('a')).collect();
    let expected: Vec<_> = (0..100).map(|i| format!("a{i}")).collect();
    assert_eq!(a_order, expected.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_high_priority_connection_is_served_first() {
    let s = server().await;
    let (_holder, held) = hold(&s).await;
    let (_a, a) = connect(&s, "a").await;
    let (_admin, admin) = connect(&s, "admin").await;
    let flood = send(&a, false, names("a", 20));
    until_waiting(&s.handle, 20).await;
    let late = send(&admin, false, names("admin", 3));
    until_waiting(&s.handle, 23).await;

    s.rec.open();
    held.await.unwrap().unwrap();
    assert!(flood.await.unwrap().iter().all(Result::is_ok));
    assert!(late.await.unwrap().iter().all(Result::is_ok));
    let order = s.rec.order.lock().unwrap().clone();
    assert_eq!(order[..3], ["admin0", "admin1", "admin2"], "{order:?}");
    assert_eq!(order.len(), 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_high_priority_method_is_served_first() {
    let s = server().await;
    let (_holder, held) = hold(&s).await;
    let (_a, a) = connect(&s, "a").await;
    let (_b, b) = connect(&s, "b").await;
    let flood = send(&a, false, names("a", 20));
    until_waiting(&s.handle, 20).await;
    let plain = send(&b, false, ["b-work".to_owned()]);
    until_waiting(&s.handle, 21).await;
    let urgent_a = send(&a, true, ["a-urgent".to_owned()]);
    until_waiting(&s.handle, 22).await;
    let urgent_b = send(&b, true, ["b-urgent".to_owned()]);
    until_waiting(&s.handle, 23).await;

    s.rec.open();
    held.await.unwrap().unwrap();
    for t in [flood, plain, urgent_a, urgent_b] {
        assert!(t.await.unwrap().iter().all(Result::is_ok));
    }
    let order = s.rec.order.lock().unwrap().clone();
    let mut first = order[..2].to_vec();
    first.sort();
    assert_eq!(first, ["a-urgent", "b-urgent"], "{order:?}");
    // Then round-robin in the normal class: a0, b-work, a1, ...
    assert_eq!(order[2..4], ["a0", "b-work"], "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_call_still_ends_at_its_deadline_or_cancel() {
    let s = server().await;
    let (_holder, held) = hold(&s).await;
    let (_a, a) = connect(&s, "a").await;

    // Deadline: the queued call fails with it and leaves the queue.
    let a2 = a.clone();
    let timed = tokio::spawn(async move {
        remote_core::with_timeout(Duration::from_millis(200), a2.work("timed".into())).await
    });
    let err = tokio::time::timeout(PATIENCE, timed)
        .await
        .expect("the queued call did not end at its deadline")
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string().contains("deadline"),
        "not a deadline error: {err}"
    );
    until_waiting(&s.handle, 0).await;

    // Cancel: dropping the call's future cancels it at the server, which
    // takes it out of the queue.
    let a3 = a.clone();
    let cancelled = tokio::spawn(async move { a3.work("cancelled".into()).await });
    until_waiting(&s.handle, 1).await;
    cancelled.abort();
    until_waiting(&s.handle, 0).await;

    s.rec.open();
    held.await.unwrap().unwrap();
    // Neither ever ran; the server still serves.
    a.work("after".into()).await.unwrap();
    assert_eq!(*s.rec.order.lock().unwrap(), ["after"]);
}
