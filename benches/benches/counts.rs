//! Deterministic counts (not criterion): heap allocations and bytes per
//! call, heap held per idle connection, and a fixed-count mode to run under
//! callgrind. See `benches/README.md`.
//!
//! ```text
//! cargo bench -p remote-benches --bench counts                 # allocations + idle heap
//! cargo bench -p remote-benches --bench counts -- allocs 10000 # allocations only
//! cargo bench -p remote-benches --bench counts -- idle 100     # idle heap only
//! counts callgrind SYSTEM CALLS   # under valgrind; see benches/callgrind.sh
//! ```
//!
//! Client and server run in this process on one current-thread runtime, so
//! every count covers both ends of a call.

mod common;

use std::alloc::System;
use std::process::ExitCode;

use bytes::Bytes;
use common::{capnp_sys, concurrent, ours, raw, remoc_sys, runtime, settle, tarpc_sys};
use remote_core::{Connection, Remote};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Every system and operation this binary can run. A name ending in `-64`
/// makes the same call with 64 calls in flight on the one connection.
const SYSTEMS: &[(&str, &str)] = &[
    (
        "raw",
        "length-prefixed 8-byte echo over the duplex (physical floor)",
    ),
    ("raw-64", "raw, 64 frames written at once, then read back"),
    ("ours", "remote-core trivial call over Connection::pair"),
    ("ours-64", "remote-core trivial call, 64 in flight"),
    ("ours-callback", "remote-core callback round trip"),
    (
        "ours-cap",
        "remote-core obtain capability, call it once, drop it",
    ),
    (
        "ours-pipe",
        "remote-core obtain capability and call it pipelined (one round trip), drop it",
    ),
    ("ours-echo-1k", "remote-core echo of 1 KiB Bytes"),
    (
        "ours-sum-4k",
        "remote-core call with 4,096 f64 in a Vec (36 KiB of arguments)",
    ),
    (
        "tarpc-bincode",
        "tarpc 0.38, serde_transport bincode over the duplex (its usual set-up)",
    ),
    ("tarpc-bincode-64", "tarpc bincode, 64 in flight"),
    (
        "tarpc",
        "tarpc 0.38, serde_transport msgpack over the duplex",
    ),
    (
        "tarpc-channel",
        "tarpc 0.38, in-memory channel transport (unencoded)",
    ),
    ("capnp", "capnp-rpc 0.27 twoparty over the duplex"),
    ("capnp-64", "capnp-rpc, 64 in flight"),
    ("capnp-callback", "capnp-rpc callback round trip"),
    (
        "capnp-cap",
        "capnp-rpc obtain capability, call it once, drop it",
    ),
    (
        "capnp-pipe",
        "capnp-rpc obtain capability and call it pipelined, drop it",
    ),
    ("remoc", "remoc 0.20 rtc over chmux over the duplex"),
    ("remoc-callback", "remoc callback round trip"),
    (
        "remoc-cap",
        "remoc obtain capability, call it once, drop it",
    ),
];

/// Calls in flight for a system name (`NAME-64` → 64).
fn in_flight(system: &str) -> usize {
    if system.ends_with("-64") {
        64
    } else {
        1
    }
}

type RawMem = raw::RawClient<
    tokio::io::ReadHalf<tokio::io::DuplexStream>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
>;

/// A set-up system, ready to make calls.
enum Client {
    Raw(RawMem),
    Ours(Connection, Connection, Remote<dyn ours::Bench>, Mode),
    Tarpc(tarpc_sys::TBenchClient),
    Capnp(capnp_sys::Client, Mode),
    Remoc(remoc_sys::RBenchClient, Mode),
}

enum Mode {
    Call,
    Callback(CbKind),
    Cap,
    /// Obtain a capability and call it pipelined.
    Pipe,
    Echo(Bytes),
    /// Bulk arguments: the values and their sum.
    Sum(Vec<f64>, f64),
}

enum CbKind {
    Ours(Remote<dyn ours::Cb>),
    Capnp(capnp_sys::cb::Client),
    Remoc(remoc_sys::RCbClient),
}

impl Client {
    /// Sets up `system` (inside a `LocalSet` for the capnp ones).
    async fn new(system: &str) -> Option<Client> {
        let ours = |mode| async move {
            let (s, c, p) = ours::pair().await;
            Client::Ours(s, c, p, mode)
        };
        Some(match system.strip_suffix("-64").unwrap_or(system) {
            "raw" => Client::Raw(raw::memory()),
            "ours" => ours(Mode::Call).await,
            "ours-callback" => ours(Mode::Callback(CbKind::Ours(ours::CbImpl::remote()))).await,
            "ours-cap" => ours(Mode::Cap).await,
            "ours-pipe" => ours(Mode::Pipe).await,
            "ours-echo-1k" => ours(Mode::Echo(Bytes::from(vec![0xa5; 1024]))).await,
            "ours-sum-4k" => {
                // 9 bytes each encoded; halves, so every sum is exact. (Not
                // u64: serializing u64 from one more place changes how rmp's
                // code for it inlines, and with it the trivial call's count.)
                let v: Vec<f64> = (1..=4096u32).map(|i| f64::from(i) / 2.0).collect();
                let want = v.iter().sum();
                ours(Mode::Sum(v, want)).await
            }
            "tarpc-bincode" => Client::Tarpc(tarpc_sys::bincode_memory()),
            "tarpc" => Client::Tarpc(tarpc_sys::msgpack_memory()),
            "tarpc-channel" => Client::Tarpc(tarpc_sys::channel()),
            "capnp" => Client::Capnp(capnp_sys::memory(), Mode::Call),
            "capnp-callback" => Client::Capnp(
                capnp_sys::memory(),
                Mode::Callback(CbKind::Capnp(capnp_sys::new_cb())),
            ),
            "capnp-cap" => Client::Capnp(capnp_sys::memory(), Mode::Cap),
            "capnp-pipe" => Client::Capnp(capnp_sys::memory(), Mode::Pipe),
            "remoc" => Client::Remoc(remoc_sys::memory().await, Mode::Call),
            "remoc-callback" => Client::Remoc(
                remoc_sys::memory().await,
                Mode::Callback(CbKind::Remoc(remoc_sys::new_cb())),
            ),
            "remoc-cap" => Client::Remoc(remoc_sys::memory().await, Mode::Cap),
            _ => return None,
        })
    }

    /// `n` operations (call, callback round trip, ...; operation `i` with
    /// argument `i`), `in_flight` outstanding at a time. Each system's own
    /// future goes into the `FuturesUnordered`, not one future of every
    /// system's size (an enum over them all was copied, at its largest
    /// system's size, into each new entry: about 900 instructions per call
    /// charged to every system alike).
    async fn run(&mut self, n: u64, in_flight: usize) {
        macro_rules! drive {
            (|$i:ident| $op:expr) => {
                if in_flight == 1 {
                    for $i in 0..n {
                        $op.await;
                    }
                } else {
                    concurrent(n, in_flight, |$i| $op).await;
                }
            };
        }
        match self {
            Client::Raw(r) => {
                let mut done = 0;
                while done < n {
                    let k = (n - done).min(in_flight as u64);
                    if k == 1 {
                        r.ping(done).await;
                    } else {
                        r.ping_many(done, k).await;
                    }
                    done += k;
                }
            }
            Client::Ours(_, _, p, mode) => match mode {
                Mode::Call => drive!(|i| ours::call(p, i)),
                Mode::Callback(CbKind::Ours(cb)) => drive!(|i| ours::callback(p, cb, i)),
                Mode::Cap => drive!(|i| ours::obtain_call_drop(p, i)),
                Mode::Pipe => drive!(|i| ours::pipelined_call_drop(p, i)),
                Mode::Echo(d) => drive!(|_i| ours::echo(p, d)),
                Mode::Sum(v, want) => drive!(|_i| ours::sum(p, v, *want)),
                Mode::Callback(_) => unreachable!(),
            },
            Client::Tarpc(c) => drive!(|i| tarpc_sys::call(c, i)),
            Client::Capnp(c, mode) => match mode {
                Mode::Call => drive!(|i| capnp_sys::call(c, i)),
                Mode::Callback(CbKind::Capnp(cb)) => drive!(|i| capnp_sys::callback(c, cb, i)),
                Mode::Cap => drive!(|i| capnp_sys::obtain_call_drop(c, i)),
                Mode::Pipe => drive!(|i| capnp_sys::pipelined_call_drop(c, i)),
                Mode::Echo(d) => drive!(|_i| capnp_sys::echo(c, d)),
                Mode::Callback(_) | Mode::Sum(..) => unreachable!(),
            },
            Client::Remoc(c, mode) => match mode {
                Mode::Call => drive!(|i| remoc_sys::call(c, i)),
                Mode::Callback(CbKind::Remoc(cb)) => drive!(|i| remoc_sys::callback(c, cb, i)),
                Mode::Cap => drive!(|i| remoc_sys::obtain_call_drop(c, i)),
                Mode::Pipe => unreachable!("remoc has no pipelining"),
                Mode::Echo(d) => drive!(|_i| remoc_sys::echo(c, d)),
                Mode::Callback(_) | Mode::Sum(..) => unreachable!(),
            },
        }
    }

    async fn close(self) {
        if let Client::Ours(s, c, _, _) = self {
            s.close();
            c.close();
        }
    }
}

/// Runs `f` on `rt`; for capnp-rpc (which spawns `!Send` tasks) inside a
/// `LocalSet`, for the other systems directly, so they pay nothing for it.
fn block_on<F: std::future::Future>(rt: &tokio::runtime::Runtime, system: &str, f: F) -> F::Output {
    if system.starts_with("capnp") {
        tokio::task::LocalSet::new().block_on(rt, f)
    } else {
        rt.block_on(f)
    }
}

/// Allocations and bytes per call after `warm` calls, over `calls` calls.
fn allocs(calls: u64) {
    println!("## Heap allocations per call (client + server, after 1,000 warm-up calls, mean over {calls} calls)\n");
    println!("| system | allocs/call | reallocs/call | bytes allocated/call | net bytes retained over the run |");
    println!("|---|---:|---:|---:|---:|");
    let rt = runtime();
    let _cx = rt.enter();
    for (name, _) in SYSTEMS {
        block_on(&rt, name, async {
            let mut c = Client::new(name).await.expect("known system");
            c.run(1000, in_flight(name)).await;
            settle().await;
            let region = Region::new(GLOBAL);
            c.run(calls, in_flight(name)).await;
            let d = region.change();
            let n = calls as f64;
            println!(
                "| {name} | {:.2} | {:.2} | {:.0} | {} |",
                d.allocations as f64 / n,
                d.reallocations as f64 / n,
                d.bytes_allocated as f64 / n,
                d.bytes_allocated as i64 - d.bytes_deallocated as i64,
            );
            c.close().await;
            settle().await;
        });
    }
    println!();
}

/// Heap held per idle connection: open `n`, measure, call once on each, measure.
fn idle(n: usize) {
    println!("## Heap held per idle connection (both ends in this process, N = {n})\n");
    println!("| system | per connection, fresh (both ends) | after one call each (both ends) |");
    println!("|---|---:|---:|");
    let rt = runtime();
    let _cx = rt.enter();
    for name in [
        "raw",
        "ours",
        "tarpc-bincode",
        "tarpc",
        "tarpc-channel",
        "capnp",
        "remoc",
    ] {
        block_on(&rt, name, async {
            // One connection first, so the runtime's own lazily built
            // structures (timer wheel, task slabs) are not counted.
            let mut warm = Client::new(name).await.expect("known system");
            warm.run(1, 1).await;
            settle().await;
            let region = Region::new(GLOBAL);
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                conns.push(Client::new(name).await.expect("known system"));
            }
            settle().await;
            let fresh = region.change();
            for c in conns.iter_mut() {
                c.run(1, 1).await;
            }
            settle().await;
            let used = region.change();
            let per = |s: stats_alloc::Stats| {
                (s.bytes_allocated as f64 - s.bytes_deallocated as f64) / n as f64 / 1024.0
            };
            println!("| {name} | {:.1} KiB | {:.1} KiB |", per(fresh), per(used));
            for c in conns {
                c.close().await;
            }
            warm.close().await;
            settle().await;
        });
    }
    println!();
}

/// Set up `system`, make 128 warm-up calls, then `calls` calls, and exit.
/// Run under callgrind twice with different `calls`; the difference of the
/// two totals divided by the difference of `calls` is the cost of one call
/// with every set-up and tear-down cost cancelled.
fn fixed(system: &str, calls: u64) -> ExitCode {
    let rt = runtime();
    let _cx = rt.enter();
    block_on(&rt, system, async {
        let Some(mut c) = Client::new(system).await else {
            eprintln!("unknown system {system:?}");
            return ExitCode::FAILURE;
        };
        let k = in_flight(system);
        c.run(128, k).await;
        let region = Region::new(GLOBAL);
        c.run(calls, k).await;
        let d = region.change();
        // For benches/callgrind.sh: heap operations during the timed calls.
        println!(
            "allocs/call {:.2} reallocs/call {:.2}",
            d.allocations as f64 / calls as f64,
            d.reallocations as f64 / calls as f64
        );
        // Leave without closing: teardown then costs the same in both runs.
        std::mem::forget(c);
        ExitCode::SUCCESS
    })
}

fn usage() -> ExitCode {
    eprintln!("usage: counts [allocs [CALLS] | idle [CONNS] | callgrind SYSTEM CALLS]\nsystems:");
    for (name, what) in SYSTEMS {
        eprintln!("  {name:15} {what}");
    }
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let num = |s: Option<&&str>, default: u64| s.map_or(Some(default), |s| s.parse().ok());
    match args.as_slice() {
        [] => {
            allocs(10_000);
            idle(100);
        }
        ["allocs", rest @ ..] => match num(rest.first(), 10_000) {
            Some(n) => allocs(n),
            None => return usage(),
        },
        ["idle", rest @ ..] => match num(rest.first(), 100) {
            Some(n) => idle(n as usize),
            None => return usage(),
        },
        ["callgrind", system, calls] => match calls.parse() {
            Ok(n) => return fixed(system, n),
            Err(_) => return usage(),
        },
        _ => return usage(),
    }
    ExitCode::SUCCESS
}
