//! A random peer, many times over: connections each send a seeded random
//! mix of calls (kinds 1 and 12, object and promise targets, references of
//! both types in the arguments, methods that return objects, panic, sleep,
//! block, are memoised or invalidate), releases of what they received,
//! cancels, finishes and pings, and read whatever comes back. Checked:
//! no panic in the server but the one a method makes on purpose, every
//! call answered exactly once (unless the server closed the connection),
//! every object made dropped once every connection is gone, and a fresh
//! connection served after. Written by a red-team pass, which found
//! nothing with it; kept as a regression net. `RANDOM_PEERS_SEED`,
//! `RANDOM_PEERS_CONNS` (a multiple of 6) and `RANDOM_PEERS_MSGS` size a
//! longer run.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use raw::{frame, kind, raw_with};
use remote_core::proto::{
    encode, encode_finish, encode_pipelined_call_head, CallId, CallTarget, ObjectId,
    FEATURE_PIPELINE,
};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[remote]
pub trait Fz {
    async fn nop(&self) -> Result<(), Error>;
    async fn make(&self) -> Result<Remote<dyn Fz>, Error>;
    async fn hang(&self, ms: u64) -> Result<Remote<dyn Fz>, Error>;
    async fn boom(&self) -> Result<Remote<dyn Fz>, Error>;
    async fn take(&self, other: Remote<dyn Fz>) -> Result<(), Error>;
    async fn same(&self, other: Remote<dyn Fz>) -> Result<Remote<dyn Fz>, Error>;
    async fn keep(&self, other: Remote<dyn Fz>) -> Result<(), Error>;
    fn blk(&self, ms: u64) -> Result<Remote<dyn Fz>, Error>;
    #[remote(memoize(ttl = "1h"))]
    async fn quote(&self, item: String) -> Result<u64, Error>;
    #[remote(invalidates(quote))]
    async fn set(&self, item: String) -> Result<(), Error>;
    async fn shared(&self) -> Result<Remote<dyn Fz>, Error>;
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Fz>>, Error>;
}

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PANICS: AtomicUsize = AtomicUsize::new(0);
static BAD: AtomicUsize = AtomicUsize::new(0);
static SHARED: OnceLock<Arc<dyn Fz>> = OnceLock::new();

struct Item;
impl Drop for Item {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
    }
}

struct Obj {
    _item: Option<Item>,
    kept: std::sync::Mutex<Vec<Remote<dyn Fz>>>,
}

fn fresh() -> Remote<dyn Fz> {
    LIVE.fetch_add(1, SeqCst);
    Remote::new(Arc::new(Obj {
        _item: Some(Item),
        kept: Default::default(),
    }) as Arc<dyn Fz>)
}

#[remote]
impl Fz for Obj {
    async fn nop(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn make(&self) -> Result<Remote<dyn Fz>, Error> {
        Ok(fresh())
    }
    async fn hang(&self, ms: u64) -> Result<Remote<dyn Fz>, Error> {
        tokio::time::sleep(Duration::from_millis(ms.min(3000))).await;
        Ok(fresh())
    }
    async fn boom(&self) -> Result<Remote<dyn Fz>, Error> {
        let nothing = std::hint::black_box(None::<Remote<dyn Fz>>);
        Ok(nothing.expect("random-peers-boom"))
    }
    async fn take(&self, other: Remote<dyn Fz>) -> Result<(), Error> {
        drop(other);
        Ok(())
    }
    async fn same(&self, other: Remote<dyn Fz>) -> Result<Remote<dyn Fz>, Error> {
        Ok(other)
    }
    async fn keep(&self, other: Remote<dyn Fz>) -> Result<(), Error> {
        let mut k = self.kept.lock().unwrap();
        if k.len() < 4 {
            k.push(other);
        }
        Ok(())
    }
    fn blk(&self, ms: u64) -> Result<Remote<dyn Fz>, Error> {
        std::thread::sleep(Duration::from_millis(ms.min(200)));
        Ok(fresh())
    }
    async fn quote(&self, item: String) -> Result<u64, Error> {
        Ok(item.len() as u64)
    }
    async fn set(&self, _item: String) -> Result<(), Error> {
        Ok(())
    }
    async fn shared(&self) -> Result<Remote<dyn Fz>, Error> {
        Ok(Remote::new(SHARED.get().unwrap().clone()))
    }
    async fn many(&self, n: u32) -> Result<Vec<Remote<dyn Fz>>, Error> {
        Ok((0..n.min(50)).map(|_| fresh()).collect())
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const METHODS: &[&str] = &[
    "nop", "make", "hang", "boom", "take", "same", "blk", "quote", "set", "shared", "many",
];

fn args(r: &mut Rng, method: &str) -> Vec<u8> {
    let refr = |r: &mut Rng| {
        let t = if r.below(3) == 0 { 1u8 } else { 2u8 };
        let id = if t == 1 {
            r.below(8) as u32 + 1
        } else {
            r.below(8) as u32
        };
        let mut v = vec![0x91, 0xd6, t];
        v.extend_from_slice(&id.to_be_bytes());
        v
    };
    match (method, r.below(10)) {
        (_, 0) => vec![0x90],
        (_, 1) => refr(r),
        ("hang", _) | ("blk", _) => vec![0x91, 0xcd, 0x00, (r.below(200) + 1) as u8],
        ("take", _) | ("same", _) | ("keep", _) => refr(r),
        ("quote", _) | ("set", _) => {
            let n = r.below(3) as u8;
            vec![0x91, 0xa1, b'a' + n]
        }
        ("many", _) => vec![0x91, (r.below(50)) as u8],
        _ => vec![0x90],
    }
}

type Got = Arc<std::sync::Mutex<std::collections::HashMap<u32, u32>>>;

fn message(r: &mut Rng, next_id: &mut u32, got: &Got) -> Vec<u8> {
    match r.below(20) {
        0..=11 => {
            let keep = r.below(2) == 0;
            *next_id += 1;
            let id = *next_id;
            let target = if r.below(3) == 0 {
                CallTarget::Promise(CallId(id.saturating_sub(r.below(6) as u32 + 1).max(1)))
            } else {
                CallTarget::Object(ObjectId(r.below(8) as u32))
            };
            let m = METHODS[r.below(METHODS.len() as u64) as usize];
            let timeout = (r.below(3000) + 1) as u32;
            let mut b = encode::begin(64);
            encode_pipelined_call_head(&mut b, keep, CallId(id), target, m, timeout);
            b.extend_from_slice(&args(r, m));
            encode::finish(&mut b);
            b
        }
        12..=13 => {
            let mut g = got.lock().unwrap();
            let pick = g.iter().map(|(k, v)| (*k, *v)).find(|&(_, v)| v > 0);
            match pick {
                Some((oid, n)) => {
                    let c = if r.below(2) == 0 { n } else { 1 };
                    *g.get_mut(&oid).unwrap() -= c;
                    encode::release(ObjectId(oid), c)
                }
                None => encode::cancel(CallId(next_id.saturating_sub(r.below(4) as u32))),
            }
        }
        14..=15 => encode::cancel(CallId(next_id.saturating_sub(r.below(4) as u32))),
        16..=18 => encode_finish(CallId(next_id.saturating_sub(r.below(6) as u32))),
        _ => {
            // ping [7, token]
            let mut b = encode::begin(8);
            b.extend_from_slice(&[0x92, 0x07, r.below(100) as u8]);
            encode::finish(&mut b);
            b
        }
    }
}

async fn serve() -> ServerHandle {
    let limits = Limits {
        max_calls_in_flight: 16,
        ..Limits::default()
    };
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| {
            Remote::new(Arc::new(Obj {
                _item: None,
                kept: Default::default(),
            }) as Arc<dyn Fz>)
        })
}

async fn one_conn(addr: String, seed: u64, msgs: usize) -> (usize, Option<String>) {
    let mut r = Rng(seed | 1);
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(&raw::hello(vec![FEATURE_PIPELINE, "keepalive"]))
        .await
        .unwrap();
    assert_eq!(kind(&frame(&mut s).await.unwrap()), 0);
    let (mut rd, mut wr) = s.into_split();
    let got: Got = Default::default();
    let got2 = got.clone();
    let replies: Arc<std::sync::Mutex<std::collections::HashMap<u32, u32>>> = Default::default();
    let replies2 = replies.clone();
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        let mut last_goodbye = None;
        loop {
            let mut len = [0u8; 4];
            if rd.read_exact(&mut len).await.is_err() {
                break;
            }
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            if rd.read_exact(&mut f).await.is_err() {
                break;
            }
            if kind(&f) == 2 || kind(&f) == 3 {
                *replies2
                    .lock()
                    .unwrap()
                    .entry(raw::id_of(&f) as u32)
                    .or_insert(0) += 1;
            }
            if kind(&f) == 2 {
                // count type-1 references received (rough scan)
                let mut g = got2.lock().unwrap();
                let mut i = 0;
                while i + 6 <= f.len() {
                    if f[i] == 0xd6 && f[i + 1] == 1 {
                        let oid = u32::from_be_bytes([f[i + 2], f[i + 3], f[i + 4], f[i + 5]]);
                        *g.entry(oid).or_default() += 1;
                        i += 6;
                    } else {
                        i += 1;
                    }
                }
            }
            if kind(&f) == 6 {
                let mut rr = remote_core::proto::Reader::new(&f[2..]);
                last_goodbye = Some(rr.str().unwrap_or("?").to_owned());
            }
            got += 1;
        }
        (got, last_goodbye)
    });
    let mut next_id = 0u32;
    for _ in 0..msgs {
        let m = message(&mut r, &mut next_id, &got);
        if wr.write_all(&m).await.is_err() {
            break;
        }
        if r.below(8) == 0 {
            tokio::time::sleep(Duration::from_millis(r.below(30))).await;
        }
    }
    // Every call is answered by its deadline (at most 3 s; the server
    // enforces it), unless the server closed the connection.
    let sent = next_id;
    let answered =
        |rep: &std::collections::HashMap<u32, u32>| (1..=sent).all(|id| rep.contains_key(&id));
    raw::eventually(|| answered(&replies.lock().unwrap()) || reader.is_finished()).await;
    let closed_by_server = reader.is_finished();
    drop(wr);
    let (n, goodbye) = raw::bounded(reader).await.unwrap();
    let rep = replies.lock().unwrap();
    let missing = (1..=sent).filter(|id| !rep.contains_key(id)).count();
    let doubled = rep.values().filter(|&&n| n > 1).count();
    if doubled > 0 || (missing > 0 && !closed_by_server) {
        eprintln!(
            "seed {seed}: {sent} calls, {missing} without a reply, {doubled} with more than one"
        );
        BAD.fetch_add(1, SeqCst);
    }
    (n, goodbye)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_peers_leave_nothing_behind() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.to_string();
        if !msg.contains("random-peers-boom") {
            PANICS.fetch_add(1, SeqCst);
            prev(info);
        }
    }));
    let _ = SHARED.set(Arc::new(Obj {
        _item: None,
        kept: Default::default(),
    }));
    let seed: u64 = std::env::var("RANDOM_PEERS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd);
    let conns: u64 = std::env::var("RANDOM_PEERS_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let msgs: usize = std::env::var("RANDOM_PEERS_MSGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let server = serve().await;
    let started = Instant::now();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for batch in 0..(conns / 6) {
        let mut tasks = Vec::new();
        for k in 0..6 {
            let sv = raw::tcp_addr(&server);
            let s = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(batch * 6 + k);
            tasks.push(tokio::spawn(async move { one_conn(sv, s, msgs).await }));
        }
        for t in tasks {
            let (_, why) = t.await.unwrap();
            let why = why.unwrap_or_else(|| "eof".into());
            let short: String = why.chars().take(60).collect();
            *reasons.entry(short).or_default() += 1;
        }
    }
    eprintln!(
        "ran {} conns in {:?}; closing reasons: {reasons:#?}",
        conns,
        started.elapsed()
    );
    // Every connection is gone: every object made must be dropped.
    raw::eventually(|| LIVE.load(SeqCst) == 0).await;
    eprintln!("live objects after close: {}", LIVE.load(SeqCst));
    // A fresh connection is served promptly.
    let t = Instant::now();
    let mut s = raw_with(&server, vec![]).await;
    assert_eq!(kind(&frame(&mut s).await.unwrap()), 0);
    s.write_all(&raw::call(1, 0, "nop", 5000, &[0x90]))
        .await
        .unwrap();
    let f = frame(&mut s).await.unwrap();
    eprintln!(
        "fresh call answered in {:?} (kind {})",
        t.elapsed(),
        kind(&f)
    );
    assert_eq!(PANICS.load(SeqCst), 0, "unexpected panics");
    assert_eq!(
        BAD.load(SeqCst),
        0,
        "connections where a call got no reply or two"
    );
    assert_eq!(
        LIVE.load(SeqCst),
        0,
        "objects kept alive after their connections closed"
    );
}
