//! Arguments are weighed by their Rust types as they decode. The budget
//! counted a call's items at 48 bytes each, and an item of one byte on the
//! wire can take far more: a `nil` as an `Option<[u64; 32]>` is 264 bytes
//! in a `Vec`, a unit variant the size of its whole enum. One call of
//! 160 KB held 63 MiB against a 16 MiB budget, and eight connections 513
//! MiB against the default 64 MiB (red-team pass 35). Now what the items
//! take beyond what was counted comes from the budget as they decode, and
//! a decode the budget has no room for is refused before it allocates.

#[path = "support/gate.rs"]
mod gate;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use gate::Gate;
use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An ordinary application enum: a unit variant beside a larger one.
#[derive(Debug, Clone, remote_core::Wire)]
pub enum Change {
    Unchanged,
    Set {
        key: String,
        value: String,
        tags: Vec<String>,
        version: u64,
    },
}

#[remote]
pub trait Big {
    async fn hold_opt(&self, v: Vec<Option<[u64; 32]>>) -> Result<u32, Error>;
    async fn hold_changes(&self, v: Vec<Change>) -> Result<u32, Error>;
}

struct Impl(Arc<Gate>);

/// Gives its `Big` once a permit comes: calls pipelined on it wait for it,
/// decoded only then.
#[remote]
pub trait Opener {
    async fn open(&self) -> Result<Remote<dyn Big>, Error>;
}

struct Opens(Arc<Gate>, Arc<tokio::sync::Semaphore>);

#[remote]
impl Opener for Opens {
    async fn open(&self) -> Result<Remote<dyn Big>, Error> {
        self.1.acquire().await.unwrap().forget();
        Ok(Remote::new(Arc::new(Impl(self.0.clone())) as Arc<dyn Big>))
    }
}

#[remote]
impl Big for Impl {
    async fn hold_opt(&self, v: Vec<Option<[u64; 32]>>) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(v.len() as u32)
    }
    async fn hold_changes(&self, v: Vec<Change>) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(v.len() as u32)
    }
}

const BUDGET: usize = 16 << 20;

async fn server(gate: &Arc<Gate>) -> ServerHandle {
    let g = gate.clone();
    Server::builder()
        .limits(Limits {
            memory_budget: BUDGET,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(Impl(g.clone())) as Arc<dyn Big>))
}

/// A call of `method` on the root with one array of `n` copies of `item`.
async fn send(s: &mut TcpStream, method: &str, n: usize, item: &[u8]) {
    let mut f = encode::begin(n * item.len() + 64);
    encode::call_head(&mut f, CallId(1), ObjectId(0), method, 600_000);
    f.push(0x91);
    f.push(0xdd);
    f.extend_from_slice(&(n as u32).to_be_bytes());
    for _ in 0..n {
        f.extend_from_slice(item);
    }
    encode::finish(&mut f);
    s.write_all(&f).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_larger_decoded_than_counted_take_room_from_the_budget() {
    let gate = Arc::new(Gate::default());
    let server = server(&gate).await;
    let mut s = raw::opened(&server).await;
    // 10,000 nils: 10 KB on the wire, counted 490 KB; they take 5.3 MB in
    // the handler's `Vec` (twice 264 bytes each, growth included).
    let n = 10_000;
    send(&mut s, "hold_opt", n, &[0xc0]).await;
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    let weighed = n * 2 * std::mem::size_of::<Option<[u64; 32]>>();
    assert!(
        server.buffered_bytes() >= weighed,
        "{} bytes counted while the handler holds {n} items of {} bytes",
        server.buffered_bytes(),
        std::mem::size_of::<Option<[u64; 32]>>()
    );
    gate.open.add_permits(1);
    let r = raw::frame(&mut s).await.unwrap();
    assert_eq!(raw::kind(&r), raw::RETURN, "{:?}", raw::error_of(&r));
    // Given back with the handler.
    assert!(raw::eventually(|| server.buffered_bytes() < weighed / 4).await);

    // The same for an enum's unit variants (one byte each on the wire).
    let unit = rmp_serde::to_vec(&Change::Unchanged).unwrap();
    send(&mut s, "hold_changes", n, &unit).await;
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    let weighed = n * 2 * std::mem::size_of::<Change>();
    assert!(
        server.buffered_bytes() >= weighed,
        "{} bytes counted while the handler holds {n} enums of {} bytes",
        server.buffered_bytes(),
        std::mem::size_of::<Change>()
    );
    gate.open.add_permits(1);
    let r = raw::frame(&mut s).await.unwrap();
    assert_eq!(raw::kind(&r), raw::RETURN, "{:?}", raw::error_of(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_decoding_past_the_budget_is_refused_before_it_runs() {
    let gate = Arc::new(Gate::default());
    let server = server(&gate).await;
    let mut s = raw::opened(&server).await;
    // 160,000 nils: 160 KB on the wire, counted 7.8 MB, 84 MB decoded.
    send(&mut s, "hold_opt", 160_000, &[0xc0]).await;
    let r = raw::frame(&mut s).await.unwrap();
    let (id, kind, message) = raw::error_of(&r).expect("an error reply");
    assert_eq!((id, kind.as_str()), (1, "limit_exceeded"), "{message}");
    assert!(message.contains("memory_budget"), "{message}");
    assert_eq!(gate.done.load(SeqCst) + gate.running.load(SeqCst), 0);
    // The connection serves on...
    send(&mut s, "hold_opt", 100, &[0xc0]).await;
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    // ...and what the refused decode took (up to the whole budget, 16 KiB
    // at a time) was given back: only the running call and buffers count.
    assert!(
        server.buffered_bytes() < 1 << 20,
        "{} bytes still counted",
        server.buffered_bytes()
    );
    gate.open.add_permits(1);
    let r = raw::frame(&mut s).await.unwrap();
    assert_eq!(raw::kind(&r), raw::RETURN, "{:?}", raw::error_of(&r));
}

/// Calls on a promise not yet resolved are decoded once it is, weighed the
/// same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_a_promise_are_weighed_when_they_decode() {
    let gate = Arc::new(Gate::default());
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let (g, o) = (gate.clone(), open.clone());
    let server = Server::builder()
        .limits(Limits {
            memory_budget: BUDGET,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(Opens(g.clone(), o.clone())) as Arc<dyn Opener>));
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let opener = client.root::<dyn Opener>();
    let started = |n| {
        let server = &server;
        move || server.stats().calls.calls_started >= n
    };
    // Past the budget: refused when it decodes, the object opened.
    let big = opener.open_pipelined();
    let refused = tokio::spawn(async move { big.hold_opt(vec![None; 160_000]).await });
    assert!(raw::eventually(started(2)).await);
    open.add_permits(1);
    let e = raw::bounded(refused).await.unwrap().unwrap_err();
    let remote = e.remote().expect("a remote error");
    assert_eq!(remote.kind, "limit_exceeded", "{e}");
    assert!(remote.message.contains("memory_budget"), "{e}");
    assert_eq!(gate.done.load(SeqCst) + gate.running.load(SeqCst), 0);
    // Within it: counted at its weight while it runs.
    let big = opener.open_pipelined();
    let n = 10_000;
    let held = tokio::spawn(async move { big.hold_opt(vec![None; n]).await });
    assert!(raw::eventually(started(4)).await);
    open.add_permits(1);
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    let weighed = n * 2 * std::mem::size_of::<Option<[u64; 32]>>();
    assert!(
        server.buffered_bytes() >= weighed,
        "{} bytes counted while the handler holds {n} items",
        server.buffered_bytes()
    );
    gate.open.add_permits(1);
    assert_eq!(raw::bounded(held).await.unwrap().unwrap(), n as u32);
    assert!(raw::eventually(|| server.buffered_bytes() < weighed / 4).await);
}
