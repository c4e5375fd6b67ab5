//! Timed drivers over TCP loopback (not criterion): throughput with 64 calls
//! in flight on both runtimes, large values against a raw socket echo, and
//! 1,000 connections at once. Throughput and latency are measured and
//! printed, never asserted. See `benches/README.md`.
//!
//! ```text
//! cargo bench -p remote-benches --bench load                    # everything (~1 min)
//! cargo bench -p remote-benches --bench load -- inflight [SECS] # 64 in flight, both runtimes
//! LOAD_SYSTEMS=ours,raw cargo bench ... -- inflight             # only those systems
//! LOAD_FLAVOR=current-thread cargo bench ... -- inflight        # one runtime only (e.g. under `perf stat`)
//! cargo bench -p remote-benches --bench load -- large [SECS]    # 64 KiB and 1 MiB echo
//! cargo bench -p remote-benches --bench load -- cap [SECS]      # get-capability → call, pipelined or not
//! cargo bench -p remote-benches --bench load -- conns [N]       # N connections at once
//! ```

mod common;
mod load_conns;

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{capnp_sys, ours, raw, remoc_sys, tarpc_sys};
use tokio::runtime::Runtime;

/// Calls in flight on the one connection.
const IN_FLIGHT: usize = 64;
/// Calls made before the measured window.
const WARM_UP: Duration = Duration::from_millis(300);
/// Repetitions of each measurement; the median is printed with the range.
const RUNS: usize = 3;

/// The two runtimes every throughput figure is taken on.
#[derive(Clone, Copy, Debug)]
enum Flavor {
    Current,
    Multi,
}

impl Flavor {
    fn runtime(self) -> Runtime {
        match self {
            Flavor::Current => tokio::runtime::Builder::new_current_thread(),
            Flavor::Multi => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
        }
        .enable_all()
        .build()
        .expect("tokio runtime")
    }

    fn name(self) -> &'static str {
        match self {
            Flavor::Current => "current-thread",
            Flavor::Multi => "multi-thread (2 workers)",
        }
    }
}

/// `IN_FLIGHT` caller tasks (spawned with `$spawn`), each making calls one
/// after another on a clone of `$client` until told to stop; returns calls
/// per second over `$secs` after `WARM_UP`.
macro_rules! drive {
    ($spawn:path, $client:expr, $secs:expr, |$c:ident, $i:ident| $call:expr) => {{
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(IN_FLIGHT);
        for t in 0..IN_FLIGHT {
            let $c = $client.clone();
            let (stop, count) = (stop.clone(), count.clone());
            tasks.push($spawn(async move {
                let mut $i = t as u64 * 1_000_000_000;
                while !stop.load(Relaxed) {
                    $call.await;
                    $i += 1;
                    count.fetch_add(1, Relaxed);
                }
            }));
        }
        window(&stop, &count, $secs, tasks).await
    }};
}

/// Waits out the warm-up, counts calls over `secs`, stops the callers.
async fn window<T>(
    stop: &AtomicBool,
    count: &AtomicU64,
    secs: f64,
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> f64 {
    tokio::time::sleep(WARM_UP).await;
    let (c0, t0) = (count.load(Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (c1, elapsed) = (count.load(Relaxed), t0.elapsed());
    stop.store(true, Relaxed);
    for t in tasks {
        t.await.expect("caller task");
    }
    (c1 - c0) as f64 / elapsed.as_secs_f64()
}

/// Calls per second with `IN_FLIGHT` calls in flight on one TCP connection.
async fn in_flight_tcp(system: &str, secs: f64) -> f64 {
    match system {
        "raw" => {
            // One task keeps 64 frames in flight: it writes 64, reads 64.
            let mut client = raw::tcp().await;
            let stop = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicU64::new(0));
            let (s, c) = (stop.clone(), count.clone());
            let task = tokio::spawn(async move {
                let mut i = 0;
                while !s.load(Relaxed) {
                    client.ping_many(i, IN_FLIGHT as u64).await;
                    i += IN_FLIGHT as u64;
                    c.fetch_add(IN_FLIGHT as u64, Relaxed);
                }
            });
            window(&stop, &count, secs, vec![task]).await
        }
        "ours" => {
            let (_server, _conn, proxy) = ours::tcp().await;
            drive!(tokio::spawn, proxy, secs, |p, i| ours::call(&p, i))
        }
        "tarpc-bincode" => {
            let client = tarpc_sys::bincode_tcp().await;
            drive!(tokio::spawn, client, secs, |c, i| tarpc_sys::call(&c, i))
        }
        "capnp" => {
            let client = capnp_sys::tcp().await;
            drive!(tokio::task::spawn_local, client, secs, |c, i| {
                capnp_sys::call(&c, i)
            })
        }
        "remoc" => {
            let client = remoc_sys::tcp().await;
            drive!(tokio::spawn, client, secs, |c, i| remoc_sys::call(&c, i))
        }
        other => panic!("unknown system {other}"),
    }
}

/// Runs `f` on `rt` inside a `LocalSet` (capnp-rpc's tasks are `!Send`;
/// on the multi-thread runtime they all run on the thread that blocks here,
/// the runtime's workers drive the sockets and everyone else's tasks).
fn block_on<F: Future>(rt: &Runtime, f: F) -> F::Output {
    tokio::task::LocalSet::new().block_on(rt, f)
}

/// The median and range of `RUNS` runs of `f`.
fn median(mut f: impl FnMut() -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = (0..RUNS).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    (v[RUNS / 2], v[0], v[RUNS - 1])
}

fn inflight(secs: f64) {
    println!("## TCP loopback, {IN_FLIGHT} calls in flight on one connection (calls/s, median of {RUNS} runs of {secs} s, [min–max])\n");
    println!("| system | runtime | calls/s | range |");
    println!("|---|---|---:|---|");
    for flavor in [Flavor::Current, Flavor::Multi] {
        // `LOAD_FLAVOR` names one runtime to measure (as printed).
        if std::env::var("LOAD_FLAVOR").is_ok_and(|f| f != flavor.name()) {
            continue;
        }
        for system in ["raw", "ours", "tarpc-bincode", "capnp", "remoc"] {
            if !selected(system) {
                continue;
            }
            let (m, lo, hi) = median(|| {
                let rt = flavor.runtime();
                block_on(&rt, in_flight_tcp(system, secs))
            });
            println!(
                "| {system} | {} | {m:.0} | {lo:.0}–{hi:.0} |",
                flavor.name()
            );
        }
    }
    println!();
}

/// Whether `system` is measured: all of them, or those named (comma
/// separated) in `LOAD_SYSTEMS` (e.g. `LOAD_SYSTEMS=ours,tarpc-bincode` to
/// profile one against another).
fn selected(system: &str) -> bool {
    std::env::var("LOAD_SYSTEMS").map_or(true, |v| v.split(',').any(|s| s == system))
}

/// Mean time of one echo of `size` bytes over TCP, over `secs` after a few
/// warm-up echoes.
async fn echo_tcp(system: &str, size: usize, secs: f64) -> Duration {
    let data = Bytes::from(vec![0xa5u8; size]);
    macro_rules! time {
        ($e:expr) => {{
            for _ in 0..4 {
                $e;
            }
            let (start, mut n) = (Instant::now(), 0u32);
            while start.elapsed().as_secs_f64() < secs {
                $e;
                n += 1;
            }
            start.elapsed() / n
        }};
    }
    match system {
        "raw" => {
            let mut c = raw::tcp().await;
            time!(c.echo(&data).await)
        }
        "ours" => {
            // The default frame limit is 1 MiB: raised on both ends so the
            // 1 MiB value (plus its header) fits.
            let limits = remote_core::Limits {
                max_frame_len: 4 << 20,
                ..Default::default()
            };
            let (_s, _c, p) = ours::tcp_with(limits).await;
            time!(ours::echo(&p, &data).await)
        }
        "tarpc-bincode" => {
            let c = tarpc_sys::bincode_tcp().await;
            time!(tarpc_sys::echo(&c, &data).await)
        }
        "capnp" => {
            let c = capnp_sys::tcp().await;
            time!(capnp_sys::echo(&c, &data).await)
        }
        other => panic!("unknown system {other}"),
    }
}

fn large(secs: f64) {
    println!("## Large values: `Bytes` echo over TCP loopback, current-thread runtime (mean time per echo, median of {RUNS} runs of {secs} s)\n");
    println!("| size | system | time per echo | vs raw |");
    println!("|---:|---|---:|---:|");
    for size in [64 << 10, 1 << 20] {
        let mut raw_t = 0.0;
        for system in ["raw", "ours", "tarpc-bincode", "capnp"] {
            if !selected(system) {
                continue;
            }
            let (m, _, _) = median(|| {
                let rt = Flavor::Current.runtime();
                block_on(&rt, echo_tcp(system, size, secs)).as_secs_f64()
            });
            if system == "raw" {
                raw_t = m;
            }
            println!(
                "| {} KiB | {system} | {:.1} µs | {:.2}× |",
                size >> 10,
                m * 1e6,
                m / raw_t
            );
        }
    }
    println!();
}

/// A server of ours on its own thread and current-thread runtime, so a
/// round trip crosses threads as it crosses a network: its address, and
/// the sender whose drop stops it.
fn server_thread() -> (String, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = Flavor::Current.runtime();
        rt.block_on(async move {
            let server = ours::tcp_server().await;
            addr_tx
                .send(server.local_addr().to_owned())
                .expect("address");
            let _ = stop_rx.await;
        });
    });
    (addr_rx.recv().expect("server address"), stop_tx)
}

/// Mean time of one get-capability → call → drop over TCP, one at a time,
/// over `secs` after a few warm-up rounds: `ours`/`capnp` wait for the
/// capability before calling it (two round trips), `-pipe` pipeline the
/// call on it (one). `-same` runs the server on the client's thread (CPU
/// cost, not latency); otherwise ours has its server on another thread.
async fn cap_tcp(system: &str, secs: f64) -> Duration {
    macro_rules! time {
        (|$i:ident| $e:expr) => {{
            let mut $i = 0u64;
            for _ in 0..16 {
                $e;
                $i += 1;
            }
            let (start, mut n) = (Instant::now(), 0u32);
            while start.elapsed().as_secs_f64() < secs {
                $e;
                $i += 1;
                n += 1;
            }
            start.elapsed() / n
        }};
    }
    match system {
        "ours" | "ours-pipe" => {
            let (addr, _stop) = server_thread();
            let (_c, p) = ours::connect(&addr).await;
            if system == "ours" {
                time!(|i| ours::obtain_call_drop(&p, i).await)
            } else {
                time!(|i| ours::pipelined_call_drop(&p, i).await)
            }
        }
        "ours-same" => {
            let (_s, _c, p) = ours::tcp().await;
            time!(|i| ours::obtain_call_drop(&p, i).await)
        }
        "ours-pipe-same" => {
            let (_s, _c, p) = ours::tcp().await;
            time!(|i| ours::pipelined_call_drop(&p, i).await)
        }
        "capnp-same" => {
            let c = capnp_sys::tcp().await;
            time!(|i| capnp_sys::obtain_call_drop(&c, i).await)
        }
        "capnp-pipe-same" => {
            let c = capnp_sys::tcp().await;
            time!(|i| capnp_sys::pipelined_call_drop(&c, i).await)
        }
        other => panic!("unknown system {other}"),
    }
}

fn cap(secs: f64) {
    println!("## Get a capability, call it, drop it: TCP loopback, one at a time, current-thread runtimes (mean latency, median of {RUNS} runs of {secs} s)\n");
    println!("`-same`: server on the client's thread (so this is CPU cost, not latency); otherwise the server has its own thread and runtime.\n");
    println!("| system | latency | vs the same system unpipelined |");
    println!("|---|---:|---:|");
    for (plain, piped) in [
        ("ours", "ours-pipe"),
        ("ours-same", "ours-pipe-same"),
        ("capnp-same", "capnp-pipe-same"),
    ] {
        let mut base = 0.0;
        for system in [plain, piped] {
            let (m, _, _) = median(|| {
                let rt = Flavor::Current.runtime();
                block_on(&rt, cap_tcp(system, secs)).as_secs_f64()
            });
            if system == plain {
                base = m;
            }
            println!("| {system} | {:.1} µs | {:.2}× |", m * 1e6, m / base);
        }
    }
    println!();
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: load [inflight [SECS] | large [SECS] | cap [SECS] | conns [N] | serve SYSTEM]"
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let secs = |s: Option<&&str>, d: f64| s.map_or(Some(d), |s| s.parse().ok());
    match args.as_slice() {
        [] => {
            inflight(1.0);
            large(0.5);
            cap(0.5);
            load_conns::conns(1000);
        }
        ["inflight", rest @ ..] => match secs(rest.first(), 1.0) {
            Some(s) => inflight(s),
            None => return usage(),
        },
        ["large", rest @ ..] => match secs(rest.first(), 0.5) {
            Some(s) => large(s),
            None => return usage(),
        },
        ["cap", rest @ ..] => match secs(rest.first(), 0.5) {
            Some(s) => cap(s),
            None => return usage(),
        },
        ["conns", rest @ ..] => match rest.first().map_or(Some(1000), |s| s.parse().ok()) {
            Some(n) => load_conns::conns(n),
            None => return usage(),
        },
        ["serve", system] => return load_conns::serve(system),
        _ => return usage(),
    }
    ExitCode::SUCCESS
}
