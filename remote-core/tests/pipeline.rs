//! Promise pipelining (PROTOCOL.md §3.10) through the typed API: a call on
//! the object a call in flight will return goes out at once, the first
//! call's error is every pipelined call's error, and references are
//! counted as for any returned object.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Promise, Remote};

use tokio::sync::Notify;

use raw::{bounded, eventually};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum FsError {
    #[error("no file named {0}")]
    NotFound(String),
    #[error("{0}")]
    Remote(String),
}
impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Remote(e.to_string())
    }
}
impl remote_core::Wire for FsError {}

#[remote]
pub trait Files {
    /// A file; `"missing"` fails. Returns only once the server connection
    /// has received `wait_calls` incoming calls in all (else fails after
    /// 20 s).
    async fn open(&self, name: String, wait_calls: u64) -> Result<Remote<dyn File>, FsError>;
    /// Waits for the test's gate, then opens.
    async fn open_gated(&self, name: String) -> Result<Remote<dyn File>, Error>;
}

#[remote]
pub trait File {
    async fn read(&self) -> Result<String, Error>;
    async fn child(&self, name: String) -> Result<Remote<dyn File>, Error>;
    /// `other`'s contents.
    async fn take(&self, other: Remote<dyn File>) -> Result<String, Error>;
}

/// Files alive now (made by the server, not yet dropped).
struct Live(Arc<AtomicIsize>);

struct Disk {
    conn: Arc<OnceLock<Connection>>,
    gate: Arc<Notify>,
    live: Arc<AtomicIsize>,
}

struct Text {
    body: String,
    live: Live,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn text(body: String, live: &Arc<AtomicIsize>) -> Remote<dyn File> {
    live.fetch_add(1, SeqCst);
    Remote::new(Arc::new(Text {
        body,
        live: Live(live.clone()),
    }))
}

#[remote]
impl Files for Disk {
    async fn open(&self, name: String, wait_calls: u64) -> Result<Remote<dyn File>, FsError> {
        let conn = self.conn.get().expect("set before any call").clone();
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while conn.stats().calls_started < wait_calls && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if conn.stats().calls_started < wait_calls {
            // Without pipelining the other calls wait for this reply.
            return Err(FsError::Remote(format!(
                "only {} of {wait_calls} calls arrived before the reply",
                conn.stats().calls_started
            )));
        }
        if name == "missing" {
            return Err(FsError::NotFound(name));
        }
        Ok(text(format!("contents of {name}"), &self.live))
    }
    async fn open_gated(&self, name: String) -> Result<Remote<dyn File>, Error> {
        self.gate.notified().await;
        Ok(text(format!("contents of {name}"), &self.live))
    }
}

#[remote]
impl File for Text {
    async fn read(&self) -> Result<String, Error> {
        Ok(self.body.clone())
    }
    async fn child(&self, name: String) -> Result<Remote<dyn File>, Error> {
        Ok(text(format!("{}/{name}", self.body), &self.live.0))
    }
    async fn take(&self, other: Remote<dyn File>) -> Result<String, Error> {
        other.read().await
    }
}

struct Setup {
    client: Connection,
    server: Connection,
    api: Remote<dyn Files>,
    gate: Arc<Notify>,
    live: Arc<AtomicIsize>,
}

async fn setup() -> Setup {
    let conn = Arc::new(OnceLock::new());
    let gate = Arc::new(Notify::new());
    let live = Arc::new(AtomicIsize::new(0));
    let disk: Remote<dyn Files> = Remote::new(Arc::new(Disk {
        conn: conn.clone(),
        gate: gate.clone(),
        live: live.clone(),
    }));
    let (client, server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(disk),
    )
    .await
    .unwrap();
    conn.set(server.clone()).unwrap();
    let api = client.root::<dyn Files>();
    Setup {
        client,
        server,
        api,
        gate,
        live,
    }
}

fn open(api: &Remote<dyn Files>, name: &str, wait_calls: u64) -> Promise<dyn File, FsError> {
    api.handle()
        .unwrap()
        .pipeline("open", (name.to_owned(), wait_calls))
}

/// `open` returns only once the server has received both calls: `read`
/// was sent before `open`'s reply (one round trip), and still read the
/// object `open` returned.
#[tokio::test]
async fn a_call_on_a_promise_is_sent_before_the_first_reply() {
    let s = setup().await;
    // The generated variant (`FilesPipeline`), as users write it.
    let file = s.api.open_pipelined("x".into(), 2);
    assert_eq!(bounded(file.read()).await.unwrap(), "contents of x");
    assert_eq!(s.server.stats().calls_started, 2);
    // The promise's own result is the same object.
    let opened = bounded(file.resolved()).await.unwrap();
    assert!(opened.same_object(&file));
    assert_eq!(bounded(opened.read()).await.unwrap(), "contents of x");
    drop((file, opened));
    assert!(eventually(|| s.server.exported_objects() == 0).await);
    assert!(eventually(|| s.live.load(SeqCst) == 0).await);
}

/// The first call fails: the pipelined call, which reached the server
/// before that failure, fails with the same error (kind, message, data),
/// and so does every later call on the promise.
#[tokio::test]
async fn a_failed_first_call_is_the_pipelined_calls_error() {
    let s = setup().await;
    let file = open(&s.api, "missing", 2);
    let err = bounded(file.read()).await.unwrap_err();
    let Error::Remote(re) = &err else {
        panic!("a remote error: {err:?}")
    };
    assert_eq!(re.kind, "application");
    assert_eq!(re.message, "no file named missing");
    assert_eq!(
        bounded(file.resolved()).await.unwrap_err(),
        FsError::NotFound("missing".into())
    );
    // After the reply: failed locally with that error, nothing sent.
    let later = bounded(file.read()).await.unwrap_err();
    let Error::Remote(later) = &later else {
        panic!("{later:?}")
    };
    assert_eq!(
        (later.kind.as_str(), later.message.as_str()),
        ("application", "no file named missing")
    );
    assert_eq!(s.server.stats().calls_started, 2);
}

/// `open(..).child("a").child("b").read()`: four calls, one round trip
/// (the server's `open` waits until all four arrived).
#[tokio::test]
async fn a_chain_of_three_pipelined_calls() {
    let s = setup().await;
    let root = open(&s.api, "d", 4);
    let a: Promise<dyn File> = root.handle().unwrap().pipeline("child", ("a".to_owned(),));
    let b: Promise<dyn File> = a.handle().unwrap().pipeline("child", ("b".to_owned(),));
    assert_eq!(bounded(b.read()).await.unwrap(), "contents of d/a/b");
    assert_eq!(s.server.stats().calls_started, 4);
    assert_eq!(
        bounded(a.resolved()).await.unwrap().read().await.unwrap(),
        "contents of d/a"
    );
    drop((root, a, b));
    assert!(eventually(|| s.server.exported_objects() == 0).await);
    assert!(eventually(|| s.live.load(SeqCst) == 0).await);
    // No double release: the connection is still fine.
    assert_eq!(
        bounded(open(&s.api, "y", 0).read()).await.unwrap(),
        "contents of y"
    );
}

/// The promise proxy dropped right after a call was made on it: the call
/// still runs on the object, and the object is released afterwards.
#[tokio::test]
async fn dropping_the_promise_at_once_keeps_the_object_for_its_calls() {
    let s = setup().await;
    let file = open(&s.api, "z", 2);
    let read = file.handle().unwrap().call::<_, String, Error>("read", ());
    drop(file);
    assert_eq!(bounded(read).await.unwrap(), "contents of z");
    assert!(eventually(|| s.server.exported_objects() == 0).await);
    assert!(eventually(|| s.live.load(SeqCst) == 0).await);
    // A promise nobody uses at all: answered, finished and released.
    drop(open(&s.api, "w", 0));
    assert!(eventually(|| s.server.stats().calls_finished == 2).await);
    assert!(eventually(|| s.server.exported_objects() == 0).await);
    assert!(eventually(|| s.live.load(SeqCst) == 0).await);
}

/// A pipelined call waiting for its answer ends at its own deadline; a
/// cancelled one is answered `cancelled`; the first call then completes.
#[tokio::test]
async fn a_queued_pipelined_call_ends_at_its_deadline_or_cancel() {
    let s = setup().await;
    let file: Promise<dyn File> = s
        .api
        .handle()
        .unwrap()
        .pipeline("open_gated", ("g".to_owned(),));
    let r = remote_core::with_timeout(Duration::from_millis(300), file.read()).await;
    assert!(matches!(r, Err(Error::DeadlineExceeded(_))), "{r:?}");
    // Cancelled by dropping its future once the server has it queued.
    let started = s.server.stats().calls_started;
    let mut cancelled = Box::pin(file.read());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut cancelled)
            .await
            .is_err()
    );
    assert!(eventually(|| s.server.stats().calls_started == started + 1).await);
    drop(cancelled);
    assert!(eventually(|| s.server.stats().errors["cancelled"] == 1).await);
    s.gate.notify_one();
    assert_eq!(bounded(file.read()).await.unwrap(), "contents of g");
}

/// The connection closes while the first call runs: the pipelined call
/// fails with the connection's error, and nothing is left alive.
#[tokio::test]
async fn connection_loss_fails_pipelined_calls_and_frees_everything() {
    let s = setup().await;
    let file: Promise<dyn File> = s
        .api
        .handle()
        .unwrap()
        .pipeline("open_gated", ("g".to_owned(),));
    let read = tokio::spawn({
        let file = file.clone();
        async move { file.read().await }
    });
    assert!(eventually(|| s.server.stats().calls_started == 2).await);
    s.client.close();
    let r = bounded(read).await.unwrap();
    assert!(matches!(r, Err(Error::ConnectionLost(_))), "{r:?}");
    assert!(matches!(
        bounded(file.resolved()).await,
        Err(Error::ConnectionLost(_))
    ));
    bounded(s.server.closed()).await;
    s.gate.notify_one();
    assert!(eventually(|| s.live.load(SeqCst) == 0).await);
}

/// On a local object the pipelined variant simply calls the method.
#[tokio::test]
async fn the_pipelined_variant_of_a_local_object_calls_it() {
    let live = Arc::new(AtomicIsize::new(0));
    let dir: Remote<dyn File> = text("d".into(), &live);
    let child = dir.child_pipelined("a".into());
    assert!(!child.is_remote());
    assert_eq!(child.read().await.unwrap(), "d/a");
    assert_eq!(child.resolved().await.unwrap().read().await.unwrap(), "d/a");
}

/// A peer without the `pipeline` feature (the Python runtime, say): the
/// same API makes ordinary calls in two round trips. Played by hand: the
/// first call is a plain kind-1 call, the call on its object goes out only
/// after the reply, to the object's id, and no finish is ever sent.
#[tokio::test]
async fn without_the_feature_the_same_calls_take_two_round_trips() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let client = tokio::spawn(async move {
        let conn = Connection::connect(&addr).await.unwrap();
        let api = conn.root::<dyn Files>();
        let file = api.open_pipelined("x".into(), 0);
        let body = file.read().await;
        drop((file, api));
        (conn, body)
    });
    let (mut s, _) = bounded(listener.accept()).await.unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
    s.write_all(&raw::hello(vec![])).await.unwrap();
    // [1, id, 0, "open", timeout, ["x", 0]]: an ordinary call to the root.
    let open = raw::frame(&mut s).await.unwrap();
    assert_eq!(&open[..2], &[0x96, 0x01], "kind 1");
    let id = open[2];
    assert_eq!(open[3], 0x00, "target 0, not a promise");
    let mut reply = vec![0, 0, 0, 0, 0x93, 0x02, id, 0xd6, 0x01, 0, 0, 0, 1];
    remote_core::proto::encode::finish(&mut reply);
    s.write_all(&reply).await.unwrap();
    // Only now the call on the object: to its id, 1.
    let read = raw::frame(&mut s).await.unwrap();
    assert_eq!(&read[..2], &[0x96, 0x01], "kind 1");
    let id = read[2];
    assert_eq!(read[3], 0x01, "target 1 (the returned object)");
    let mut reply = vec![0, 0, 0, 0, 0x93, 0x02, id, 0xa2, b'o', b'k'];
    remote_core::proto::encode::finish(&mut reply);
    s.write_all(&reply).await.unwrap();
    let (_conn, body) = bounded(client).await.unwrap();
    assert_eq!(body.unwrap(), "ok");
    // The object is released (once), and no finish (kind 13) was sent.
    let release = raw::frame(&mut s).await.unwrap();
    assert_eq!(release, [0x93, 0x04, 0x01, 0x01]);
}

/// A root taken for the wrong interface: its pipelined variants fail with
/// `WrongInterface` at once, calls on the promise (and on promises chained
/// on it) too, and nothing is sent.
#[tokio::test]
async fn pipelining_on_a_wrong_interface_root_sends_nothing() {
    let s = setup().await;
    let wrong = s.client.root::<dyn File>();
    let p = wrong.child_pipelined("a".into());
    assert!(matches!(p.read().await, Err(Error::WrongInterface(_))));
    assert!(matches!(p.resolved().await, Err(Error::WrongInterface(_))));
    let chained = p.child_pipelined("b".into());
    assert!(matches!(
        chained.read().await,
        Err(Error::WrongInterface(_))
    ));
    // A real call afterwards is the first the server sees.
    let file = bounded(open(&s.api, "x", 0).resolved()).await.unwrap();
    assert_eq!(file.read().await.unwrap(), "contents of x");
    assert_eq!(s.server.stats().calls_started, 2);
}

/// Pipelining on a closed connection: the promise and its calls fail with
/// the connection's error.
#[tokio::test]
async fn pipelining_on_a_closed_connection_fails_with_its_error() {
    let s = setup().await;
    s.client.close();
    bounded(s.client.closed()).await;
    let p = open(&s.api, "x", 0);
    assert!(matches!(
        bounded(p.read()).await,
        Err(Error::ConnectionLost(_))
    ));
    assert!(matches!(
        bounded(p.resolved()).await,
        Err(FsError::Remote(_))
    ));
}

/// A promise passed as an argument of a call on itself or on another
/// promise: refused while its call runs (the peer cannot be handed its own
/// answer), without deadlocking on the promise's lock; sent as the object
/// once resolved.
#[tokio::test]
async fn a_promise_as_an_argument_of_a_call_on_itself_or_another() {
    let s = setup().await;
    let p: Promise<dyn File> = s
        .api
        .handle()
        .unwrap()
        .pipeline("open_gated", ("g".to_owned(),));
    let q = open(&s.api, "y", 0);
    let r = bounded(p.take(p.remote())).await;
    assert!(matches!(r, Err(Error::Encode { .. })), "{r:?}");
    let r = bounded(q.take(p.remote())).await;
    assert!(matches!(r, Err(Error::Encode { .. })), "{r:?}");
    s.gate.notify_one();
    bounded(p.resolved()).await.unwrap();
    assert_eq!(bounded(p.take(p.remote())).await.unwrap(), "contents of g");
    assert_eq!(bounded(q.take(p.remote())).await.unwrap(), "contents of g");
    assert_eq!(bounded(p.take(q.remote())).await.unwrap(), "contents of y");
    drop((p, q));
    assert!(eventually(|| s.live.load(SeqCst) == 0).await);
}

/// Without the feature the first call is made later, from a task: it still
/// carries the caller's deadline (here `with_timeout`'s 5 s, not the 10 s
/// default), as the pipelined call does.
#[tokio::test]
async fn without_the_feature_the_first_call_keeps_the_callers_deadline() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let client = tokio::spawn(async move {
        let conn = Connection::connect(&addr).await.unwrap();
        let api = conn.root::<dyn Files>();
        let opened = remote_core::with_timeout(Duration::from_secs(5), async {
            api.open_pipelined("x".into(), 0).resolved().await.map(drop)
        })
        .await;
        (conn, opened)
    });
    let (mut s, _) = bounded(listener.accept()).await.unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
    s.write_all(&raw::hello(vec![])).await.unwrap();
    // [1, id, 0, "open", timeout_ms, ["x", 0]]
    let open = raw::frame(&mut s).await.unwrap();
    let mut r = remote_core::proto::Reader::new(&open);
    r.array_len().unwrap();
    assert_eq!(r.uint().unwrap(), 1, "kind 1");
    let id = r.uint().unwrap();
    assert_eq!(r.uint().unwrap(), 0, "to the root");
    assert_eq!(r.str().unwrap(), "open");
    let timeout_ms = r.uint().unwrap();
    assert!(
        (1..=5_000).contains(&timeout_ms),
        "the caller's 5 s deadline, got {timeout_ms} ms"
    );
    let mut reply = vec![0, 0, 0, 0, 0x93, 0x02, u8::try_from(id).unwrap()];
    reply.extend_from_slice(&[0xd6, 0x01, 0, 0, 0, 1]);
    remote_core::proto::encode::finish(&mut reply);
    s.write_all(&reply).await.unwrap();
    let (_conn, opened) = bounded(client).await.unwrap();
    opened.unwrap();
}

/// No task waits for a pipelined call's reply: the promise is the call's
/// waiter, settled where the reply arrives. Its own deadline still ends
/// it, with the caller's budget.
#[tokio::test]
async fn a_pending_promise_holds_no_task_and_ends_at_its_deadline() {
    let s = setup().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let file: Promise<dyn File> = s
        .api
        .handle()
        .unwrap()
        .pipeline("open_gated", ("g".to_owned(),));
    assert!(eventually(|| s.server.stats().calls_started == 1).await);
    // The server's handler (waiting at the gate) is the only new task.
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    s.gate.notify_one();
    assert!(bounded(file.resolved()).await.is_ok());
    assert_eq!(bounded(file.read()).await.unwrap(), "contents of g");

    let file: Promise<dyn File> = remote_core::with_timeout(Duration::from_millis(200), async {
        s.api
            .handle()
            .unwrap()
            .pipeline("open_gated", ("h".to_owned(),))
    })
    .await;
    match bounded(file.resolved()).await {
        Err(Error::DeadlineExceeded(budget)) => {
            assert!(budget > Duration::ZERO && budget <= Duration::from_millis(200));
        }
        Err(e) => panic!("expected the call's deadline, got {e:?}"),
        Ok(_) => panic!("expected the call's deadline, got an object"),
    }
    assert!(matches!(
        bounded(file.read()).await,
        Err(Error::DeadlineExceeded(_))
    ));
}
