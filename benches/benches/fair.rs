//! Fairness under load (issue 9): a victim client's call latency while
//! another connection floods the server with CPU-bound calls, next to its
//! idle baseline.
//!
//! One server (multi-thread runtime, 2 workers) over TCP loopback; each
//! client runs on its own current-thread runtime and thread. Each flooder
//! keeps 64 calls in flight, each spinning ~20 µs in its handler.
//! The victim makes one small call at a time. Cases (criterion's time is
//! the victim's mean call; p50 and p99 of single calls are printed after
//! each case):
//!
//! - `idle`: no flood.
//! - `floodN/untuned`: N flooding connections, `max_running_handlers =
//!   1024` (handlers never wait for a turn: as before run turns existed).
//! - `floodN/turns2`: two run turns (as many as the server's workers).
//! - `floodN/turns1`: one run turn (the default on 2 cores): one worker
//!   stays free to read, the victim's calls take turns with the flood's.
//! - `floodN/turns1+high`: as `turns1`, the victim's connection given
//!   `Priority::High` by the server's root factory.
//!
//! ```text
//! cargo bench -p remote-benches --bench fair
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use remote_core::{
    remote, Connection, Error, Limits, Peer, Priority, Remote, Server, ServerHandle,
};

/// The served interface.
#[remote]
pub trait Svc {
    /// Spins for about `micros` µs of CPU (the flood).
    async fn spin(&self, micros: u64) -> Result<u64, Error>;
    /// Answers at once (the victim).
    async fn ping(&self) -> Result<u64, Error>;
}

struct Impl;

#[remote]
impl Svc for Impl {
    async fn spin(&self, micros: u64) -> Result<u64, Error> {
        let end = Instant::now() + Duration::from_micros(micros);
        let mut n = 0u64;
        while Instant::now() < end {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        Ok(n)
    }
    async fn ping(&self) -> Result<u64, Error> {
        Ok(1)
    }
}

const FLOOD_IN_FLIGHT: usize = 64;
const FLOOD_SPIN_MICROS: u64 = 20;

/// A server for one case, on its own runtime.
struct Case {
    rt: tokio::runtime::Runtime,
    handle: Option<ServerHandle>,
}

fn start(turns: usize, flooders: usize, victim_high: bool) -> (Case, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let handle = rt.block_on(async move {
        Server::builder()
            .limits(Limits {
                max_running_handlers: turns,
                ..Limits::default()
            })
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(move |peer: &Peer| {
                // The flooders connect first, then the victim.
                if accepted.fetch_add(1, Ordering::SeqCst) == flooders && victim_high {
                    peer.set_priority(Priority::High);
                }
                Remote::new(Arc::new(Impl) as Arc<dyn Svc>)
            })
    });
    let addr = handle.local_addr().to_owned();
    (
        Case {
            rt,
            handle: Some(handle),
        },
        addr,
    )
}

/// Keeps `FLOOD_IN_FLIGHT` spin calls in flight until `stop`.
async fn flood(svc: Remote<dyn Svc>, stop: Arc<AtomicBool>) {
    let mut tasks = Vec::new();
    for _ in 0..FLOOD_IN_FLIGHT {
        let svc = svc.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = svc.spin(FLOOD_SPIN_MICROS).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn case(c: &mut Criterion, name: &str, flooders: usize, turns: usize, victim_high: bool) {
    let (server, addr) = start(turns, flooders, victim_high);
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Each flooder on its own thread and runtime, connected first.
    let flooders: Vec<_> = (0..flooders)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let conn = Connection::connect(&addr).await.unwrap();
                    ready_tx.send(()).unwrap();
                    flood(conn.root::<dyn Svc>(), stop).await;
                });
            });
            ready_rx.recv().unwrap();
            t
        })
        .collect();
    let (_conn, victim) = client_rt.block_on(async {
        let conn = Connection::connect(&addr).await.unwrap();
        let root = conn.root::<dyn Svc>();
        (conn, root)
    });
    let samples = Arc::new(Mutex::new(Vec::new()));
    c.bench_function(name, |b| {
        b.to_async(&client_rt).iter_custom(|iters| {
            let victim = victim.clone();
            let samples = samples.clone();
            async move {
                let mut total = Duration::ZERO;
                let mut mine = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    let t = Instant::now();
                    victim.ping().await.unwrap();
                    let d = t.elapsed();
                    total += d;
                    mine.push(d);
                }
                samples.lock().unwrap().extend(mine);
                total
            }
        })
    });
    stop.store(true, Ordering::Relaxed);
    for t in flooders {
        t.join().unwrap();
    }
    let mut s = std::mem::take(&mut *samples.lock().unwrap());
    s.sort();
    println!(
        "{name}: victim calls {}  p50 {:?}  p99 {:?}  max {:?}",
        s.len(),
        percentile(&s, 0.50),
        percentile(&s, 0.99),
        s.last().copied().unwrap_or_default()
    );
    let mut server = server;
    if let Some(h) = server.handle.take() {
        server.rt.block_on(h.shutdown(Duration::from_secs(1)));
    }
}

fn fair(c: &mut Criterion) {
    case(c, "fair/idle", 0, 1, false);
    for flooders in [1, 3] {
        let name = |what: &str| format!("fair/flood{flooders}/{what}");
        case(c, &name("untuned"), flooders, 1024, false);
        case(c, &name("turns2"), flooders, 2, false);
        case(c, &name("turns1"), flooders, 1, false);
        case(c, &name("turns1+high"), flooders, 1, true);
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = fair
}
criterion_main!(benches);
