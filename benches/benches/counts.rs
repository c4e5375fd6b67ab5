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
use common::{ours, raw, remoc_sys, runtime, settle, tarpc_sys};
use remote_core::{Connection, Remote};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Every system and operation this binary can run.
const SYSTEMS: &[(&str, &str)] = &[
    (
        "raw",
        "length-prefixed 8-byte echo over the duplex (physical floor)",
    ),
    ("ours", "remote-core trivial call over Connection::pair"),
    ("ours-callback", "remote-core callback round trip"),
    (
        "ours-cap",
        "remote-core obtain capability, call it once, drop it",
    ),
    ("ours-echo-1k", "remote-core echo of 1 KiB Bytes"),
    (
        "tarpc",
        "tarpc 0.38, serde_transport msgpack over the duplex",
    ),
    (
        "tarpc-channel",
        "tarpc 0.38, in-memory channel transport (unencoded)",
    ),
    ("remoc", "remoc 0.20 rtc over chmux over the duplex"),
    ("remoc-callback", "remoc callback round trip"),
    (
        "remoc-cap",
        "remoc obtain capability, call it once, drop it",
    ),
];

type RawMem = raw::RawClient<
    tokio::io::ReadHalf<tokio::io::DuplexStream>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
>;

/// A set-up system, ready to make calls.
enum Client {
    Raw(RawMem),
    Ours(Connection, Connection, Remote<dyn ours::Bench>, Mode),
    Tarpc(tarpc_sys::TBenchClient),
    Remoc(remoc_sys::RBenchClient, Mode),
}

enum Mode {
    Call,
    Callback(CbKind),
    Cap,
    Echo(Bytes),
}

enum CbKind {
    Ours(Remote<dyn ours::Cb>),
    Remoc(remoc_sys::RCbClient),
}

impl Client {
    async fn new(system: &str) -> Option<Client> {
        let ours = |mode| async move {
            let (s, c, p) = ours::pair().await;
            Client::Ours(s, c, p, mode)
        };
        Some(match system {
            "raw" => Client::Raw(raw::memory()),
            "ours" => ours(Mode::Call).await,
            "ours-callback" => ours(Mode::Callback(CbKind::Ours(ours::CbImpl::remote()))).await,
            "ours-cap" => ours(Mode::Cap).await,
            "ours-echo-1k" => ours(Mode::Echo(Bytes::from(vec![0xa5; 1024]))).await,
            "tarpc" => Client::Tarpc(tarpc_sys::msgpack_memory()),
            "tarpc-channel" => Client::Tarpc(tarpc_sys::channel()),
            "remoc" => Client::Remoc(remoc_sys::memory().await, Mode::Call),
            "remoc-callback" => Client::Remoc(
                remoc_sys::memory().await,
                Mode::Callback(CbKind::Remoc(remoc_sys::new_cb())),
            ),
            "remoc-cap" => Client::Remoc(remoc_sys::memory().await, Mode::Cap),
            _ => return None,
        })
    }

    async fn call(&mut self, i: u64) {
        match self {
            Client::Raw(r) => r.ping(i).await,
            Client::Ours(_, _, p, mode) => match mode {
                Mode::Call => ours::call(p, i).await,
                Mode::Callback(CbKind::Ours(cb)) => ours::callback(p, cb, i).await,
                Mode::Cap => ours::obtain_call_drop(p, i).await,
                Mode::Echo(d) => ours::echo(p, d).await,
                Mode::Callback(_) => unreachable!(),
            },
            Client::Tarpc(c) => tarpc_sys::call(c, i).await,
            Client::Remoc(c, mode) => match mode {
                Mode::Call => remoc_sys::call(c, i).await,
                Mode::Callback(CbKind::Remoc(cb)) => remoc_sys::callback(c, cb, i).await,
                Mode::Cap => remoc_sys::obtain_call_drop(c, i).await,
                Mode::Echo(d) => remoc_sys::echo(c, d).await,
                Mode::Callback(_) => unreachable!(),
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

/// Allocations and bytes per call after `warm` calls, over `calls` calls.
fn allocs(calls: u64) {
    println!("## Heap allocations per call (client + server, after 1,000 warm-up calls, mean over {calls} calls)\n");
    println!("| system | allocs/call | reallocs/call | bytes allocated/call | net bytes retained over the run |");
    println!("|---|---:|---:|---:|---:|");
    let rt = runtime();
    let _cx = rt.enter();
    for (name, _) in SYSTEMS {
        rt.block_on(async {
            let mut c = Client::new(name).await.expect("known system");
            for i in 0..1000 {
                c.call(i).await;
            }
            settle().await;
            let region = Region::new(GLOBAL);
            for i in 0..calls {
                c.call(i).await;
            }
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
    for name in ["raw", "ours", "tarpc", "tarpc-channel", "remoc"] {
        rt.block_on(async {
            // One connection first, so the runtime's own lazily built
            // structures (timer wheel, task slabs) are not counted.
            let mut warm = Client::new(name).await.expect("known system");
            warm.call(0).await;
            settle().await;
            let region = Region::new(GLOBAL);
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                conns.push(Client::new(name).await.expect("known system"));
            }
            settle().await;
            let fresh = region.change();
            for (i, c) in conns.iter_mut().enumerate() {
                c.call(i as u64).await;
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

/// Set up `system`, make 100 warm-up calls, then `calls` calls, and exit.
/// Run under callgrind twice with different `calls`; the difference of the
/// two totals divided by the difference of `calls` is the cost of one call
/// with every set-up and tear-down cost cancelled.
fn fixed(system: &str, calls: u64) -> ExitCode {
    let rt = runtime();
    let _cx = rt.enter();
    rt.block_on(async {
        let Some(mut c) = Client::new(system).await else {
            eprintln!("unknown system {system:?}");
            return ExitCode::FAILURE;
        };
        for i in 0..100 {
            c.call(i).await;
        }
        for i in 0..calls {
            c.call(i).await;
        }
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
