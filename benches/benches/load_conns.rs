//! Many connections at once: a server in a child process (this binary,
//! `load serve SYSTEM`, on a 2-worker runtime), N client connections from
//! this process (2-worker runtime), each making calls one after another,
//! all connections at the same time. Prints p50/p99/max call latency and
//! the server process's resident memory (VmRSS from /proc) before the
//! connections, with them open and idle, and after the calls.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{ours, tarpc_sys};

/// Calls each connection makes, one after another.
const CALLS_PER_CONN: usize = 20;

/// Serves `system` on `127.0.0.1:0`, prints `tcp://ADDR`, and runs until
/// its standard input closes.
pub(crate) fn serve(system: &str) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = match system {
        "ours" => rt.block_on(async {
            let server = ours::tcp_server().await;
            let addr = server.local_addr().to_owned();
            std::mem::forget(server);
            addr
        }),
        "tarpc-bincode" => rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = format!("tcp://{}", listener.local_addr().expect("addr"));
            tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    s.set_nodelay(true).expect("nodelay");
                    tarpc_sys::serve_bincode(s);
                }
            });
            addr
        }),
        other => {
            eprintln!("unknown system {other}");
            return ExitCode::FAILURE;
        }
    };
    println!("{addr}");
    // Block (off the runtime) until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    ExitCode::SUCCESS
}

/// Resident and peak memory of process `pid`, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A client of one system, cheap to clone.
#[derive(Clone)]
enum Client {
    Ours(remote_core::Remote<dyn ours::Bench>),
    Tarpc(tarpc_sys::TBenchClient),
}

impl Client {
    async fn connect(system: &str, addr: &str) -> (Client, Option<remote_core::Connection>) {
        match system {
            "ours" => {
                let (conn, proxy) = ours::connect(addr).await;
                (Client::Ours(proxy), Some(conn))
            }
            _ => {
                let a = addr.trim_start_matches("tcp://");
                let s = tokio::net::TcpStream::connect(a).await.expect("connect");
                s.set_nodelay(true).expect("nodelay");
                (Client::Tarpc(tarpc_sys::client_bincode(s)), None)
            }
        }
    }

    async fn call(&self, i: u64) {
        match self {
            Client::Ours(p) => ours::call(p, i).await,
            Client::Tarpc(c) => tarpc_sys::call(c, i).await,
        }
    }
}

/// The `q` quantile of sorted `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Runs the many-connections measurement for each system.
pub(crate) fn conns(n: usize) {
    println!("## {n} connections at once, TCP loopback, 2 cores (server: child process on a 2-worker runtime; clients: this process, 2-worker runtime)\n");
    println!("Each connection makes {CALLS_PER_CONN} calls one after another, all connections at once.\n");
    println!("| system | p50 | p99 | max | calls/s | server RSS before | with {n} idle connections | after the calls (peak) | per connection |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for system in ["ours", "tarpc-bincode"] {
        conns_of(system, n);
    }
    println!();
}

fn conns_of(system: &str, n: usize) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["serve", system])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let pid = child.id();
    let mut addr = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut addr)
        .expect("server address");
    let addr = addr.trim().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let before = rss(pid).0;
    let (idle, lat, rate, after) = rt.block_on(async {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(Client::connect(system, &addr).await);
        }
        // One call on each, so the server has finished every handshake.
        for (c, _) in &clients {
            c.call(0).await;
        }
        let idle = rss(pid).0;
        let start = Arc::new(tokio::sync::Barrier::new(n));
        let t0 = Instant::now();
        let tasks: Vec<_> = clients
            .iter()
            .map(|(c, _)| {
                let (c, start) = (c.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let mut lat = Vec::with_capacity(CALLS_PER_CONN);
                    for i in 0..CALLS_PER_CONN as u64 {
                        let t = Instant::now();
                        c.call(i).await;
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut lat = Vec::with_capacity(n * CALLS_PER_CONN);
        for t in tasks {
            lat.extend(t.await.expect("caller"));
        }
        let rate = lat.len() as f64 / t0.elapsed().as_secs_f64();
        let after = rss(pid);
        drop(clients);
        (idle, lat, rate, after)
    });
    let (after, peak) = after;
    drop(child.stdin.take());
    let _ = child.wait();
    let mut lat = lat;
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {system} | {:.0} µs | {:.0} µs | {:.0} µs | {rate:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB ({:.1} MiB) | {:.1} KiB |",
        us(quantile(&lat, 0.5)),
        us(quantile(&lat, 0.99)),
        us(quantile(&lat, 1.0)),
        before as f64 / 1024.0,
        idle as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0,
        (idle.saturating_sub(before)) as f64 / n as f64,
    );
}
