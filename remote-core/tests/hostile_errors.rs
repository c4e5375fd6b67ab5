//! Hostile peers on the error and encoding paths: references smuggled in
//! error data, oversized error text, peer text quoted back, many
//! references in one frame, over-deep values, limits hit while encoding,
//! and deadlines too long for the clock.

#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raw::next_of_kind;
use remote_core::proto::{encode, CallId, Reader};
use remote_core::{
    remote, Connection, ConnectionBuilder, Error, Limits, Remote, RemoteError, ServerHandle, Wire,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Arrays nested as deep as one likes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Nest(pub Vec<Nest>);
impl Wire for Nest {}

fn nest(depth: u32) -> Nest {
    (0..depth).fold(Nest(vec![]), |n, _| Nest(vec![n]))
}

#[remote]
pub trait Probe {
    /// This object's number.
    async fn id(&self) -> Result<u64, Error>;
    /// A new object.
    async fn make(&self) -> Result<Remote<dyn Probe>, Error>;
    /// Keeps a callback.
    async fn keep(&self, cb: Remote<dyn Probe>) -> Result<(), Error>;
    /// Calls the kept callback's `id`, re-raising its error as it came.
    async fn relay(&self) -> Result<u64, Error>;
    /// Returns arrays nested `depth` deep.
    async fn nest(&self, depth: u32) -> Result<Nest, Error>;
    /// Takes nested arrays.
    async fn take_nest(&self, n: Nest) -> Result<(), Error>;
    /// How many references arrived.
    async fn count(&self, objs: Vec<Remote<dyn Probe>>) -> Result<u32, Error>;
    /// `n` new objects.
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Probe>>, Error>;
    /// Fails with `n` bytes of message, `n` causes and `n` bytes of backtrace.
    async fn loud(&self, n: u32) -> Result<(), Error>;
}

struct Node {
    id: u64,
    live: Arc<AtomicUsize>,
    next: Arc<AtomicU64>,
    kept: Mutex<Option<Remote<dyn Probe>>>,
}

impl Node {
    fn remote(live: &Arc<AtomicUsize>, next: &Arc<AtomicU64>) -> Remote<dyn Probe> {
        live.fetch_add(1, SeqCst);
        Remote::new(Arc::new(Node {
            id: next.fetch_add(1, SeqCst),
            live: live.clone(),
            next: next.clone(),
            kept: Mutex::new(None),
        }) as Arc<dyn Probe>)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

#[remote]
impl Probe for Node {
    async fn id(&self) -> Result<u64, Error> {
        Ok(self.id)
    }
    async fn make(&self) -> Result<Remote<dyn Probe>, Error> {
        Ok(Node::remote(&self.live, &self.next))
    }
    async fn keep(&self, cb: Remote<dyn Probe>) -> Result<(), Error> {
        *self.kept.lock().unwrap() = Some(cb);
        Ok(())
    }
    async fn relay(&self) -> Result<u64, Error> {
        let cb = self.kept.lock().unwrap().clone();
        match cb {
            Some(cb) => cb.id().await,
            None => Ok(0),
        }
    }
    async fn nest(&self, depth: u32) -> Result<Nest, Error> {
        Ok(nest(depth))
    }
    async fn take_nest(&self, _n: Nest) -> Result<(), Error> {
        Ok(())
    }
    async fn count(&self, objs: Vec<Remote<dyn Probe>>) -> Result<u32, Error> {
        Ok(objs.len() as u32)
    }
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Probe>>, Error> {
        Ok((0..n)
            .map(|_| Node::remote(&self.live, &self.next))
            .collect())
    }
    async fn loud(&self, n: u32) -> Result<(), Error> {
        let n = n as usize;
        Err(Error::Remote(Box::new(RemoteError {
            kind: "application".into(),
            type_name: "probe::Loud".into(),
            message: "m".repeat(n),
            chain: vec!["c".into(); n],
            backtrace: Some("b".repeat(n)),
            data: None,
        })))
    }
}

/// A server whose clients all share one root object.
struct Setup {
    server: ServerHandle,
    live: Arc<AtomicUsize>,
}

async fn serve(limits: Limits) -> Setup {
    let live = Arc::new(AtomicUsize::new(0));
    let root = Node::remote(&live, &Arc::new(AtomicU64::new(0)));
    let server = serving::tcp(limits, move |_| root.clone()).await;
    Setup { server, live }
}

const WAIT: Duration = Duration::from_secs(60);

/// Polls `cond` every few ms until it holds, failing after 60 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let r = tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "timed out waiting until {what}");
}

/// A call frame with raw argument bytes.
fn call_frame(id: u32, target: u32, method: &str, args: &[u8]) -> Vec<u8> {
    raw::call(id, target, method, 30_000, args)
}

fn ext(code: u8, id: u32) -> Vec<u8> {
    let mut v = vec![0xd6, code];
    v.extend_from_slice(&id.to_be_bytes());
    v
}

/// The server's call to a raw peer's callback object: `(call id, target
/// object, method)`.
struct Called {
    id: u32,
    target: u32,
    method: String,
}

/// A raw peer C hands the shared root its object 1 as a callback (`keep`);
/// then `root.relay()` (A's call) makes the server call it. Returns C's
/// socket, A's call under way, and the server's call as C read it.
async fn relayed_to_a_raw_callback(
    s: &Setup,
    root: &Remote<dyn Probe>,
) -> (TcpStream, JoinHandle<Result<u64, Error>>, Called) {
    let mut c = raw::opened(&s.server).await;
    let mut args = vec![0x91];
    args.extend(ext(1, 1));
    c.write_all(&call_frame(1, 0, "keep", &args)).await.unwrap();
    next_of_kind(&mut c, 2).await;

    let relay = tokio::spawn({
        let root = root.clone();
        async move { root.relay().await }
    });
    let call = next_of_kind(&mut c, 1).await;
    let mut r = Reader::new(&call);
    r.array_len().unwrap();
    r.uint().unwrap();
    let called = Called {
        id: r.u32().unwrap(),
        target: r.u32().unwrap(),
        method: r.str().unwrap().to_owned(),
    };
    (c, relay, called)
}

/// Item 1: a hostile peer C answers the server's call to its callback with
/// an error whose `data` holds a reference. The server must refuse it, not
/// forward it to honest client A, where it would name one of the server's
/// objects on the A-server connection.
#[tokio::test]
async fn a_reference_in_a_callbacks_error_data_never_reaches_another_client() {
    let s = serve(Limits::default()).await;
    let a = Connection::connect(s.server.local_addr()).await.unwrap();
    let root = a.root::<dyn Probe>();
    // A holds the server's object 1 on its connection.
    let held = root.make().await.unwrap();
    let held_id = held.id().await.unwrap();
    assert_eq!(held.handle().unwrap().object_id(), 1);

    // C hands the shared root its object 1 as a callback; A's call makes
    // the server call it. C answers with an error whose data is
    // `d6 01 00000001`.
    let (mut c, relay, called) = relayed_to_a_raw_callback(&s, &root).await;
    let server_call_id = called.id;
    assert_eq!(called.target, 1, "the call targets C's object 1");
    assert_eq!(called.method, "id");
    let e = RemoteError {
        kind: "application".into(),
        type_name: "evil::E".into(),
        message: "have one of yours".into(),
        chain: vec![],
        backtrace: None,
        data: None,
    };
    let mut f = encode::begin(64);
    encode::error_head(&mut f, CallId(server_call_id), &e, &Limits::default());
    f.extend(ext(1, 1));
    encode::finish(&mut f);
    c.write_all(&f).await.unwrap();

    // C is cut off, told why.
    let reason = raw::goodbye(&mut c).await.expect("a goodbye");
    assert!(
        reason.starts_with("protocol violation") && reason.contains("error data holds a reference"),
        "{reason}"
    );
    // A's call fails (its callee is gone), and nothing else happens to A.
    let err = relay.await.unwrap().unwrap_err();
    match &err {
        Error::Remote(re) => assert_eq!(re.kind, "connection_lost", "{err}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!a.is_closed());
    assert_eq!(held.id().await.unwrap(), held_id, "still the same object");
    assert_eq!(a.imported_objects(), 1, "no receipt A was never sent");

    // Releasing A's object frees it at the server with no count mismatch,
    // and A's connection stays healthy.
    let before = s.live.load(SeqCst);
    drop(held);
    until("the server freed A's object", || {
        s.live.load(SeqCst) == before - 1
    })
    .await;
    let again = root.make().await.unwrap();
    assert!(again.id().await.unwrap() > held_id);
    assert!(!a.is_closed(), "{:?}", a.closed().await);
}

/// Item 4: an error with a million causes is kept to `max_error_chain`
/// entries by the server, which re-raises it to A within bounds; C's
/// connection is not held responsible (cutting is not a violation).
#[tokio::test]
async fn a_million_causes_reach_the_next_client_bounded() {
    let s = serve(Limits::default()).await;
    let a = Connection::connect(s.server.local_addr()).await.unwrap();
    let root = a.root::<dyn Probe>();
    let (mut c, relay, called) = relayed_to_a_raw_callback(&s, &root).await;
    let id = called.id;
    // [3, id, ["application", "t", "m", [1,000,000 × ""], nil, nil]]
    let mut f = encode::begin(1 << 20);
    f.extend_from_slice(&[0x93, 0x03]);
    f.push(0xce);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0x96, 0xab]);
    f.extend_from_slice(b"application");
    f.extend_from_slice(&[0xa1, b't', 0xa1, b'm', 0xdd]);
    f.extend_from_slice(&1_000_000u32.to_be_bytes());
    f.resize(f.len() + 1_000_000, 0xa0);
    f.extend_from_slice(&[0xc0, 0xc0]);
    encode::finish(&mut f);
    c.write_all(&f).await.unwrap();

    let err = relay.await.unwrap().unwrap_err();
    let Error::Remote(re) = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(
        (re.kind.as_str(), re.message.as_str()),
        ("application", "m")
    );
    let max = Limits::default().max_error_chain;
    assert_eq!(re.chain.len(), max, "{err}");
    assert!(re.chain[max - 1].contains("more causes omitted (max_error_chain = 32)"));
    // C may go on: its callback still answers.
    let call = tokio::spawn(async move { root.relay().await });
    next_of_kind(&mut c, 1).await;
    assert!(!a.is_closed());
    drop(call);
}

/// Item 7: a 300 KB method name (of characters Debug-escaping inflates
/// sixfold) is quoted back cut to a small bound, not amplified past the
/// frame limit.
#[tokio::test]
async fn an_unknown_methods_long_name_is_quoted_back_cut_short() {
    let s = serve(Limits::default()).await;
    let mut c = raw::opened(&s.server).await;
    let name = "\u{1}".repeat(300_000);
    c.write_all(&call_frame(7, 0, &name, &[0x90]))
        .await
        .unwrap();
    let f = next_of_kind(&mut c, 3).await;
    assert!(f.len() < 2048, "error reply of {} bytes", f.len());
    let (id, kind, msg) = raw::error_of(&f).expect("an error reply");
    assert_eq!(id, 7);
    assert_eq!(kind, "unknown_method");
    assert!(msg.contains("(300000 bytes)"), "{msg}");
    // serde quotes a mistyped argument whole: cut too.
    let mut args = vec![0x91, 0xdb];
    args.extend_from_slice(&300_000u32.to_be_bytes());
    args.resize(args.len() + 300_000, b'x');
    c.write_all(&call_frame(9, 0, "take_nest", &args))
        .await
        .unwrap();
    let f = next_of_kind(&mut c, 3).await;
    assert!(f.len() < 2048, "error reply of {} bytes", f.len());
    let (id, kind, _) = raw::error_of(&f).expect("an error reply");
    assert_eq!(id, 9);
    assert_eq!(kind, "bad_arguments");
    // The connection is fine, and so is another client's.
    c.write_all(&call_frame(8, 0, "id", &[0x90])).await.unwrap();
    next_of_kind(&mut c, 2).await;
    let good = Connection::connect(s.server.local_addr()).await.unwrap();
    assert!(good.root::<dyn Probe>().id().await.is_ok());
}

/// Item 7: an error reply too large for a frame is cut to fit (not
/// replaced), within the error bounds, for the default frame limit and a
/// small one.
#[tokio::test]
async fn an_oversized_error_reply_is_cut_to_fit() {
    for max_frame_len in [1 << 20, 8 << 10] {
        let limits = Limits {
            max_frame_len,
            ..Limits::default()
        };
        let s = serve(limits.clone()).await;
        let a = ConnectionBuilder::new()
            .limits(limits.clone())
            .connect(s.server.local_addr())
            .await
            .unwrap();
        let err = a.root::<dyn Probe>().loud(400_000).await.unwrap_err();
        let Error::Remote(re) = &err else {
            panic!("unexpected {err:?}")
        };
        assert_eq!(re.kind, "application", "{}", re.message);
        assert_eq!(re.type_name, "probe::Loud");
        assert!(re.message.starts_with("mmm") && re.message.ends_with('…'));
        assert!(re.message.len() < limits.max_error_text.min(max_frame_len));
        assert!(re.chain.len() <= limits.max_error_chain);
        assert!(!a.is_closed());
    }
}

/// Item 3: many references to a few objects in one frame decode to the
/// right number of proxies (each reference is found in the sorted holds).
#[tokio::test]
async fn many_references_to_few_objects_decode_and_are_released() {
    let s = serve(Limits::default()).await;
    let mut c = raw::opened(&s.server).await;
    // 17,000 references to 1,000 distinct objects of C's.
    let mut args = vec![0x91, 0xdc];
    args.extend_from_slice(&17_000u16.to_be_bytes());
    for i in 0..17_000u32 {
        args.extend(ext(1, 1 + i % 1000));
    }
    c.write_all(&call_frame(3, 0, "count", &args))
        .await
        .unwrap();
    // The reply, and every object released with its 17 receipts (the
    // handler drops its arguments before it replies: the releases may
    // come first).
    let (mut replied, mut released) = (false, 0);
    while !replied || released < 1000 {
        let f = raw::frame(&mut c).await.expect("connection closed");
        match raw::kind(&f) {
            2 => {
                assert_eq!(&f[..], &[0x93, 0x02, 0x03, 0xcd, 0x42, 0x68], "17,000");
                replied = true;
            }
            4 => {
                let mut r = Reader::new(&f);
                r.array_len().unwrap();
                r.uint().unwrap();
                r.u32().unwrap();
                assert_eq!(r.u32().unwrap(), 17);
                released += 1;
            }
            _ => {}
        }
    }
    let good = Connection::connect(s.server.local_addr()).await.unwrap();
    assert!(good.root::<dyn Probe>().id().await.is_ok());
}

/// Item 8: an over-deep value fails only its own call (at the sender), for
/// arguments and for replies; the connection carries on.
#[tokio::test]
async fn an_over_deep_value_fails_only_its_call() {
    let s = serve(Limits::default()).await;
    let a = Connection::connect(s.server.local_addr()).await.unwrap();
    let root = a.root::<dyn Probe>();
    root.take_nest(nest(50)).await.unwrap();
    match root.take_nest(nest(100)).await {
        Err(Error::LimitExceeded { limit, value, .. }) => {
            assert_eq!((limit, value), ("max_depth", 64));
        }
        other => panic!("expected max_depth, got {other:?}"),
    }
    match root.nest(100).await {
        Err(Error::Remote(re)) => {
            assert_eq!(re.kind, "limit_exceeded");
            assert!(re.message.contains("max_depth = 64"), "{}", re.message);
        }
        other => panic!("expected max_depth, got {other:?}"),
    }
    assert!(root.nest(50).await.is_ok());
    assert!(!a.is_closed());
}

/// Item 10: `max_exports` reached while encoding gives `limit_exceeded`
/// naming it, for a call and for a reply.
#[tokio::test]
async fn max_exports_while_encoding_is_limit_exceeded() {
    let limits = Limits {
        max_exports: 2,
        ..Limits::default()
    };
    let s = serve(limits.clone()).await;
    let a = ConnectionBuilder::new()
        .limits(limits)
        .connect(s.server.local_addr())
        .await
        .unwrap();
    let root = a.root::<dyn Probe>();
    match root.many(3).await {
        Err(Error::Remote(re)) => {
            assert_eq!(re.kind, "limit_exceeded", "{re}");
            assert!(re.message.contains("max_exports = 2"), "{}", re.message);
        }
        other => panic!("expected max_exports, got {other:?}"),
    }
    let live = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicU64::new(100));
    let mine: Vec<_> = (0..3).map(|_| Node::remote(&live, &next)).collect();
    match root.count(mine).await {
        Err(Error::LimitExceeded { limit, value, .. }) => {
            assert_eq!((limit, value), ("max_exports", 2));
        }
        other => panic!("expected max_exports, got {other:?}"),
    }
    assert_eq!(a.exported_objects(), 0, "the counted exports were undone");
    assert_eq!(root.many(2).await.unwrap().len(), 2);
}

/// Item 9: `Duration::MAX` as a timeout or as the default deadline means
/// "no deadline", not a panic.
#[tokio::test]
async fn duration_max_deadlines_saturate() {
    let forever = Limits {
        default_deadline: Duration::MAX,
        max_deadline: Duration::MAX,
        handshake_timeout: Duration::MAX,
        idle_timeout: Duration::MAX,
        ..Limits::default()
    };
    let s = serve(forever.clone()).await;
    let a = ConnectionBuilder::new()
        .limits(forever)
        .connect(s.server.local_addr())
        .await
        .unwrap();
    let root = a.root::<dyn Probe>();
    assert!(root.id().await.is_ok());
    let b = Connection::connect(s.server.local_addr()).await.unwrap();
    let root = b.root::<dyn Probe>();
    let r = remote_core::with_timeout(Duration::MAX, async {
        let left = remote_core::remaining().unwrap();
        (left, root.id().await)
    })
    .await;
    assert!(r.0 > Duration::from_secs(86_400 * 365), "{:?}", r.0);
    assert!(r.1.is_ok());
}

/// Not a test: times decoding 170,000 references to 10,000 objects in one
/// 1 MiB frame. `cargo test --release -p remote-core --test hostile_errors
/// -- --ignored --nocapture time_`.
#[tokio::test]
#[ignore]
async fn time_decoding_170000_references() {
    let s = serve(Limits::default()).await;
    let mut c = raw::opened(&s.server).await;
    let mut args = vec![0x91, 0xdd];
    args.extend_from_slice(&170_000u32.to_be_bytes());
    for i in 0..170_000u32 {
        args.extend(ext(1, 1 + i % 10_000));
    }
    let frame = call_frame(3, 0, "count", &args);
    assert!(frame.len() - 4 <= 1 << 20);
    let t = std::time::Instant::now();
    c.write_all(&frame).await.unwrap();
    let f = next_of_kind(&mut c, 2).await;
    println!("170,000 references decoded in {:?}", t.elapsed());
    assert_eq!(&f[3..], &[0xce, 0x00, 0x02, 0x98, 0x10]);
}
