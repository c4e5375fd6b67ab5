//! What the weighing of arguments by their types did not see (red-team
//! pass 36): a box's contents (a `nil` as a `Box<Option<[u64; 32]>>`
//! allocates 264 bytes; 42 MiB held against 7.5 MiB counted), and the
//! types serde builds from its own buffer (untagged and internally tagged
//! enums, flattened fields; one call held 64 MiB against a 16 MiB budget).
//! Both are weighed now, and ordinary calls of such types still pass.

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

type Heavy = Option<[u64; 32]>;

#[derive(Debug, remote_core::Wire)]
#[serde(untagged)]
pub enum Untagged {
    Many(Vec<Heavy>),
    Name(String),
}

#[derive(Debug, remote_core::Wire)]
#[serde(tag = "t")]
pub enum Tagged {
    Many { v: Vec<Heavy> },
    Other { n: u32 },
}

#[derive(Debug, remote_core::Wire)]
pub struct Inner {
    pub v: Vec<Heavy>,
}

#[derive(Debug, remote_core::Wire)]
pub struct Flat {
    pub id: u32,
    #[serde(flatten)]
    pub inner: Inner,
}

/// An ordinary untagged identifier.
#[derive(Debug, Clone, remote_core::Wire)]
#[serde(untagged)]
pub enum Id {
    Num(u64),
    Name(String),
}

/// An enum whose large variant is boxed, as clippy advises.
#[derive(Debug, Clone, remote_core::Wire)]
pub enum Msg {
    Small(u8),
    Big(Box<[[u64; 32]; 2]>),
}

#[remote]
pub trait Holder {
    async fn hold_boxed(&self, v: Vec<Box<Heavy>>) -> Result<u32, Error>;
    async fn hold_untagged(&self, v: Untagged) -> Result<u32, Error>;
    async fn hold_tagged(&self, v: Tagged) -> Result<u32, Error>;
    async fn hold_flat(&self, v: Flat) -> Result<u32, Error>;
    async fn ordinary(
        &self,
        ids: Vec<Id>,
        msgs: Vec<Msg>,
        pad: Option<Box<[[u64; 32]; 16]>>,
    ) -> Result<u64, Error>;
}

struct Impl(Arc<Gate>);

#[remote]
impl Holder for Impl {
    async fn hold_boxed(&self, v: Vec<Box<Heavy>>) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(v.len() as u32)
    }
    async fn hold_untagged(&self, v: Untagged) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(match v {
            Untagged::Many(v) => v.len() as u32,
            Untagged::Name(_) => 0,
        })
    }
    async fn hold_tagged(&self, v: Tagged) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(match v {
            Tagged::Many { v } => v.len() as u32,
            Tagged::Other { n } => n,
        })
    }
    async fn hold_flat(&self, v: Flat) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(v.inner.v.len() as u32 + v.id)
    }
    async fn ordinary(
        &self,
        ids: Vec<Id>,
        msgs: Vec<Msg>,
        pad: Option<Box<[[u64; 32]; 16]>>,
    ) -> Result<u64, Error> {
        let ids: u64 = ids
            .iter()
            .map(|id| match id {
                Id::Num(n) => *n,
                Id::Name(s) => s.len() as u64,
            })
            .sum();
        let msgs: u64 = msgs
            .iter()
            .map(|m| match m {
                Msg::Small(n) => u64::from(*n),
                Msg::Big(b) => b.iter().flatten().sum(),
            })
            .sum();
        Ok(ids + msgs + pad.map_or(0, |p| p[0][0]))
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
        .serve(move |_| Remote::new(Arc::new(Impl(g.clone())) as Arc<dyn Holder>))
}

/// A call of `method` on the root whose arguments are `head` then one
/// array of `n` nils (the argument array and what leads to the list are
/// in `head`).
async fn send(s: &mut TcpStream, method: &str, head: &[u8], n: usize) {
    let mut f = encode::begin(n + head.len() + 64);
    encode::call_head(&mut f, CallId(1), ObjectId(0), method, 600_000);
    f.extend_from_slice(head);
    f.push(0xdd);
    f.extend_from_slice(&(n as u32).to_be_bytes());
    f.resize(f.len() + n, 0xc0);
    encode::finish(&mut f);
    s.write_all(&f).await.unwrap();
}

/// A call of `n` nils through `head` is counted at least `per_nil` bytes
/// each while its handler holds it, and one of 160,000 nils (more than
/// the budget at that weight) is refused before its handler runs.
async fn weighed(method: &str, head: &[u8], per_nil: usize) {
    let gate = Arc::new(Gate::default());
    let server = server(&gate).await;
    let mut s = raw::opened(&server).await;
    let n = 10_000;
    send(&mut s, method, head, n).await;
    assert!(raw::eventually(|| gate.running.load(SeqCst) == 1).await);
    assert!(
        server.buffered_bytes() >= n * per_nil,
        "{method}: {} bytes counted while the handler holds {n} nils of {per_nil} bytes",
        server.buffered_bytes(),
    );
    gate.open.add_permits(1);
    let r = raw::frame(&mut s).await.unwrap();
    assert_eq!(
        raw::kind(&r),
        raw::RETURN,
        "{method}: {:?}",
        raw::error_of(&r)
    );
    assert!(raw::eventually(|| server.buffered_bytes() < n * per_nil / 4).await);

    send(&mut s, method, head, 160_000).await;
    let r = raw::frame(&mut s).await.unwrap();
    let (id, kind, message) = raw::error_of(&r).expect("an error reply");
    assert_eq!(
        (id, kind.as_str()),
        (1, "limit_exceeded"),
        "{method}: {message}"
    );
    assert!(message.contains("memory_budget"), "{method}: {message}");
    assert_eq!(gate.done.load(SeqCst) + gate.running.load(SeqCst), 1);
    // What the refused decode took was given back.
    assert!(raw::eventually(|| server.buffered_bytes() < 1 << 20).await);
}

const HEAVY: usize = std::mem::size_of::<Heavy>();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_is_weighed_by_what_it_holds() {
    weighed("hold_boxed", &[0x91], HEAVY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_enum_is_weighed_by_what_serde_builds_from_its_buffer() {
    weighed("hold_untagged", &[0x91], 2 * HEAVY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internally_tagged_enum_is_weighed_so() {
    // {"t": "Many", "v": [...]}
    let head = [
        0x91, 0x82, 0xa1, b't', 0xa4, b'M', b'a', b'n', b'y', 0xa1, b'v',
    ];
    weighed("hold_tagged", &head, 2 * HEAVY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flattened_field_is_weighed_so() {
    // {"id": 1, "v": [...]}
    let head = [0x91, 0x82, 0xa2, b'i', b'd', 0x01, 0xa1, b'v'];
    weighed("hold_flat", &head, 2 * HEAVY).await;
}

/// Ordinary calls of such types are weighed by their own types, not by
/// the largest type of the call: 50,000 untagged identifiers beside a
/// 4 KiB boxed argument, and 50,000 small variants of an enum with a boxed
/// large one, fit a 16 MiB budget (at the 4 KiB type's weight, the
/// identifiers alone would take 400 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_untagged_and_boxed_types_fit() {
    let gate = Arc::new(Gate::default());
    let server = server(&gate).await;
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let holder = client.root::<dyn Holder>();
    let ids: Vec<Id> = (0..50_000u64)
        .map(|i| {
            if i % 2 == 0 {
                Id::Num(i)
            } else {
                Id::Name("ab".into())
            }
        })
        .collect();
    let want_ids: u64 = (0..50_000u64).filter(|i| i % 2 == 0).sum::<u64>() + 25_000 * 2;
    let mut msgs = vec![Msg::Small(1); 50_000];
    msgs.push(Msg::Big(Box::new([[2; 32]; 2])));
    let got = raw::bounded(holder.ordinary(ids, msgs, Some(Box::new([[7; 32]; 16]))))
        .await
        .unwrap();
    assert_eq!(got, want_ids + 50_000 + 128 + 7);
}
