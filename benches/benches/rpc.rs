//! Timed benchmarks (criterion): ours against a raw length-prefixed echo on
//! the same transport, tarpc and remoc. See `benches/README.md`.
//!
//! Every figure is the time of one call, client and server in this process
//! on one current-thread runtime. tarpc runs with its usual bincode
//! transport (`serde_transport` + tokio-serde `Bincode`). Groups:
//!
//! - `call/memory`, `call/tcp`: a trivial call (u64 in, u64 out).
//! - `in_flight`: 1, 16, 128 calls outstanding on one connection.
//! - `capability`: callback round trip and obtain-call-drop vs plain calls.
//! - `payload`: `Bytes` echo of 16 B, 1 KiB, 64 KiB.
//! - `connections`: calls spread over 1, 10, 100 connections.
//! - `exports`: a call with 1 or 1000 objects exported on the connection.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{concurrent, ours, raw, remoc_sys, runtime, sequential, settle, tarpc_sys};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args()
}

fn trivial_call(c: &mut Criterion) {
    with_runtime(|rt| trivial_call_on(c, rt));
}

fn trivial_call_on(c: &mut Criterion, rt: &Runtime) {
    let mut g = c.benchmark_group("call/memory");
    g.throughput(Throughput::Elements(1));
    {
        let mut raw = rt.block_on(async { raw::memory() });
        g.bench_function("raw", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    for i in 0..iters {
                        raw.ping(i).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    {
        let (_server, _client, proxy) = rt.block_on(ours::pair());
        g.bench_function("ours", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| ours::call(&proxy, i))))
        });
    }
    {
        let client = rt.block_on(async { tarpc_sys::bincode_memory() });
        g.bench_function("tarpc_bincode", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| tarpc_sys::call(&client, i))))
        });
    }
    {
        let client = rt.block_on(async { tarpc_sys::channel() });
        g.bench_function("tarpc_channel_unencoded", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| tarpc_sys::call(&client, i))))
        });
    }
    {
        let client = rt.block_on(remoc_sys::memory());
        g.bench_function("remoc", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| remoc_sys::call(&client, i))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("call/tcp");
    g.throughput(Throughput::Elements(1));
    {
        let mut raw = rt.block_on(raw::tcp());
        g.bench_function("raw", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    for i in 0..iters {
                        raw.ping(i).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    {
        let (_server, _client, proxy) = rt.block_on(ours::tcp());
        g.bench_function("ours", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| ours::call(&proxy, i))))
        });
    }
    {
        let client = rt.block_on(tarpc_sys::bincode_tcp());
        g.bench_function("tarpc_bincode", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| tarpc_sys::call(&client, i))))
        });
    }
    {
        let client = rt.block_on(remoc_sys::tcp());
        g.bench_function("remoc", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| remoc_sys::call(&client, i))))
        });
    }
    g.finish();
}

fn in_flight(c: &mut Criterion) {
    with_runtime(|rt| in_flight_on(c, rt));
}

fn in_flight_on(c: &mut Criterion, rt: &Runtime) {
    let mut g = c.benchmark_group("in_flight/memory");
    g.throughput(Throughput::Elements(1));
    let (_server, _client, proxy) = rt.block_on(ours::pair());
    let tarpc = rt.block_on(async { tarpc_sys::bincode_memory() });
    let remoc = rt.block_on(remoc_sys::memory());
    for n in [1usize, 16, 128] {
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            b.iter_custom(|iters| rt.block_on(concurrent(iters, n, |i| ours::call(&proxy, i))))
        });
        g.bench_with_input(BenchmarkId::new("tarpc_bincode", n), &n, |b, &n| {
            b.iter_custom(|iters| rt.block_on(concurrent(iters, n, |i| tarpc_sys::call(&tarpc, i))))
        });
        g.bench_with_input(BenchmarkId::new("remoc", n), &n, |b, &n| {
            b.iter_custom(|iters| rt.block_on(concurrent(iters, n, |i| remoc_sys::call(&remoc, i))))
        });
    }
    g.finish();
}

fn capability(c: &mut Criterion) {
    with_runtime(|rt| capability_on(c, rt));
}

fn capability_on(c: &mut Criterion, rt: &Runtime) {
    let mut g = c.benchmark_group("capability/memory");
    {
        let (_server, _client, proxy) = rt.block_on(ours::pair());
        let cb = ours::CbImpl::remote();
        g.bench_function("ours/plain_call", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| ours::call(&proxy, i))))
        });
        let p = &proxy;
        g.bench_function("ours/two_plain_calls", |b| {
            b.iter_custom(|iters| {
                rt.block_on(sequential(iters, |i| async move {
                    ours::call(p, i).await;
                    ours::call(p, i).await;
                }))
            })
        });
        g.bench_function("ours/callback", |b| {
            b.iter_custom(|iters| {
                rt.block_on(sequential(iters, |i| ours::callback(&proxy, &cb, i)))
            })
        });
        g.bench_function("ours/obtain_call_drop", |b| {
            b.iter_custom(|iters| {
                rt.block_on(sequential(iters, |i| ours::obtain_call_drop(&proxy, i)))
            })
        });
    }
    {
        let client = rt.block_on(remoc_sys::memory());
        let cb = rt.block_on(async { remoc_sys::new_cb() });
        g.bench_function("remoc/plain_call", |b| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| remoc_sys::call(&client, i))))
        });
        g.bench_function("remoc/callback", |b| {
            b.iter_custom(|iters| {
                rt.block_on(sequential(iters, |i| remoc_sys::callback(&client, &cb, i)))
            })
        });
        g.bench_function("remoc/obtain_call_drop", |b| {
            b.iter_custom(|iters| {
                rt.block_on(sequential(iters, |i| {
                    remoc_sys::obtain_call_drop(&client, i)
                }))
            })
        });
    }
    g.finish();
}

fn payload(c: &mut Criterion) {
    with_runtime(|rt| payload_on(c, rt));
}

fn payload_on(c: &mut Criterion, rt: &Runtime) {
    let mut g = c.benchmark_group("payload/memory");
    let mut raw = rt.block_on(async { raw::memory() });
    let (_server, _client, proxy) = rt.block_on(ours::pair());
    let tarpc = rt.block_on(async { tarpc_sys::bincode_memory() });
    let remoc = rt.block_on(remoc_sys::memory());
    for size in [16usize, 1 << 10, 64 << 10] {
        let data = Bytes::from(vec![0xa5u8; size]);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("raw", size), &data, |b, data| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        raw.echo(data).await;
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("ours", size), &data, |b, data| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |_| ours::echo(&proxy, data))))
        });
        g.bench_with_input(BenchmarkId::new("tarpc_bincode", size), &data, |b, data| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |_| tarpc_sys::echo(&tarpc, data))))
        });
        g.bench_with_input(BenchmarkId::new("remoc", size), &data, |b, data| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |_| remoc_sys::echo(&remoc, data))))
        });
    }
    g.finish();
}

fn scaling(c: &mut Criterion) {
    with_runtime(|rt| scaling_on(c, rt));
}

fn scaling_on(c: &mut Criterion, rt: &Runtime) {
    let mut g = c.benchmark_group("connections/memory");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 10, 100] {
        let conns: Vec<_> = rt.block_on(async {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(ours::pair().await);
            }
            v
        });
        let proxies: Vec<_> = conns.iter().map(|(_, _, p)| p.clone()).collect();
        for in_flight in [1usize, 16] {
            let id = BenchmarkId::new(format!("ours/in_flight_{in_flight}"), n);
            g.bench_with_input(id, &n, |b, &n| {
                b.iter_custom(|iters| {
                    rt.block_on(concurrent(iters, in_flight, |i| {
                        ours::call(&proxies[i as usize % n], i)
                    }))
                })
            });
        }
        drop(proxies);
        rt.block_on(async move {
            for (s, c, _) in &conns {
                s.close();
                c.close();
            }
            settle().await;
        });
    }
    g.finish();

    let mut g = c.benchmark_group("exports/memory");
    g.throughput(Throughput::Elements(1));
    for k in [1usize, 1000] {
        let (server, _client, proxy) = rt.block_on(ours::pair());
        // The server exports `k` objects to the client, which holds them.
        let caps: Vec<_> = rt.block_on(async {
            let mut v = Vec::with_capacity(k);
            for _ in 0..k {
                v.push(proxy.make().await.expect("make"));
            }
            v
        });
        assert_eq!(server.exported_objects(), k);
        let cap = &caps[k / 2];
        g.bench_with_input(BenchmarkId::new("ours/root_call", k), &k, |b, _| {
            b.iter_custom(|iters| rt.block_on(sequential(iters, |i| ours::call(&proxy, i))))
        });
        g.bench_with_input(BenchmarkId::new("ours/capability_call", k), &k, |b, _| {
            b.iter_custom(|iters| {
                rt.block_on(sequential(iters, |i| async move {
                    assert_eq!(cap.add(i).await.expect("cap add"), i.wrapping_add(1));
                }))
            })
        });
    }
    g.finish();
}

/// Runs `f` inside a fresh runtime's context (so values dropped outside
/// `block_on` still find it), then drops the runtime without waiting.
fn with_runtime(f: impl FnOnce(&Runtime)) {
    let rt = runtime();
    {
        let _cx = rt.enter();
        f(&rt);
    }
    rt.shutdown_background();
}

criterion_group! {
    name = benches;
    config = config();
    targets = trivial_call, in_flight, capability, payload, scaling
}
criterion_main!(benches);
