//! Heap allocations per trivial call (client and server together, one
//! process, a counting global allocator: its own test binary, tests one at
//! a time), and the serving path that keeps them low: a `#[remote] impl`
//! method runs inline in the one box its `__remote_serve_*` makes, instead
//! of the dispatcher boxing a future around the method's own box; the
//! reply waits in the connection's slot table (`driver/replies.rs`).

use std::alloc::System;
use std::sync::{Arc, Mutex};

use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The tests measure one process-wide counter: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[remote]
trait Adder {
    async fn add(&self, x: u64) -> Result<u64, Error>;
    async fn pair_sum(&self, pair: (u64, u64), scale: u64) -> Result<u64, Error>;
    async fn count(&self, data: bytes::Bytes) -> Result<u64, Error>;
    async fn echo(&self, data: bytes::Bytes) -> Result<bytes::Bytes, Error>;
    /// Not in the impl: served through the trait's default hidden methods.
    async fn twice(&self, x: u64) -> Result<u64, Error> {
        Ok(x * 2)
    }
}

struct ByMacro {
    step: u64,
}

impl ByMacro {
    fn step_of(this: &ByMacro) -> u64 {
        this.step
    }
}

#[remote]
impl Adder for ByMacro {
    async fn add(&self, x: u64) -> Result<u64, Error> {
        Ok(x.wrapping_add(self.step))
    }
    // Patterns in arguments, `self` passed on by value, `?`: the body moves
    // into the hidden unboxed method unchanged.
    async fn pair_sum(&self, (a, b): (u64, u64), mut scale: u64) -> Result<u64, Error> {
        scale += ByMacro::step_of(self);
        let sum = a
            .checked_add(b)
            .ok_or_else(|| Error::Io("overflow".into()))?;
        Ok(sum * scale)
    }
    async fn count(&self, data: bytes::Bytes) -> Result<u64, Error> {
        Ok(data.len() as u64)
    }
    async fn echo(&self, data: bytes::Bytes) -> Result<bytes::Bytes, Error> {
        Ok(data)
    }
}

/// Hands out a new capability per call.
#[remote]
trait Maker {
    async fn make(&self) -> Result<Remote<dyn Adder>, Error>;
}

struct Factory;

#[remote]
impl Maker for Factory {
    async fn make(&self) -> Result<Remote<dyn Adder>, Error> {
        Ok(Remote::new(Arc::new(ByMacro { step: 1 }) as Arc<dyn Adder>))
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn pair(root: Arc<dyn Adder>) -> (Connection, Connection, Remote<dyn Adder>) {
    let (server, client) = Connection::pair(
        ConnectionBuilder::new().serve(Remote::new(root)),
        ConnectionBuilder::new(),
    )
    .await
    .expect("pair");
    let proxy = client.root::<dyn Adder>();
    (server, client, proxy)
}

fn allocations() -> usize {
    GLOBAL.stats().allocations
}

/// Windows each measurement is taken over; the fewest allocations per call
/// of them counts. On a machine whose other work preempts this process,
/// about one window in ten saw two allocations more (in 500 calls) from
/// outside the call path: perf probes on the allocator found no Rust call
/// site allocating more in such a run, only one extra allocation in libc
/// with no caller frame. A per-call allocation shows in every window.
const WINDOWS: usize = 3;

/// Allocations per operation of `op` (awaited `n` times after a warm-up
/// of 128), the fewest of [`WINDOWS`] windows.
async fn per_op<F: std::future::Future<Output = ()>>(n: u64, mut op: impl FnMut(u64) -> F) -> f64 {
    for i in 0..128 {
        op(i).await;
    }
    let mut fewest = f64::MAX;
    for _ in 0..WINDOWS {
        let before = allocations();
        for i in 0..n {
            op(i).await;
        }
        fewest = fewest.min((allocations() - before) as f64 / n as f64);
    }
    fewest
}

/// Allocations per trivial call, both ends, over `calls` calls made one
/// after another.
fn allocs_per_call(root: Arc<dyn Adder>, calls: u64) -> f64 {
    rt().block_on(async move {
        let (_server, _client, proxy) = pair(root).await;
        per_op(calls, |i| {
            let proxy = proxy.clone();
            async move {
                let got = proxy.add(i).await.expect("call");
                assert!(got > i);
            }
        })
        .await
    })
}

#[test]
fn a_trivial_call_allocates_at_most_twice() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let per = allocs_per_call(Arc::new(ByMacro { step: 1 }), 500);
    // Client: the proxy's boxed future (the reply waits in a slot of the
    // connection's table, not a channel); server: the one box of
    // `__remote_serve_add`. (Four before: a `oneshot` per call, and the
    // dispatcher boxed a future around the method's own box.)
    assert!(per <= 2.0, "{per} allocations per call");
}

#[test]
fn a_default_method_is_still_served() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    rt().block_on(async {
        let (_server, _client, proxy) = pair(Arc::new(ByMacro { step: 1 })).await;
        assert_eq!(proxy.twice(21).await.expect("twice"), 42);
    });
}

#[test]
fn a_macro_impl_body_runs_with_its_patterns_and_errors() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    rt().block_on(async {
        let (_server, _client, proxy) = pair(Arc::new(ByMacro { step: 2 })).await;
        assert_eq!(proxy.add(1).await.expect("add"), 3);
        assert_eq!(proxy.pair_sum((2, 3), 4).await.expect("pair_sum"), 30);
        let err = proxy
            .pair_sum((u64::MAX, 1), 1)
            .await
            .expect_err("overflow is an error");
        assert!(err.to_string().contains("overflow"), "{err}");
        // Called locally, the rewritten method is the same method.
        let local = ByMacro { step: 5 };
        assert_eq!(local.add(1).await.expect("local add"), 6);
        assert_eq!(local.pair_sum((1, 1), 1).await.expect("local"), 12);
    });
}

/// Allocations per get-capability → call → release, both ends: the two
/// calls' boxes (4), the new object (the handler's own `Arc`), the export's
/// entry, the import's hold, the proxy, and the decoded `Remote`. The
/// lists of references a message carries allocate nothing (two more before:
/// the received-imports and exported-ids `Vec`s).
#[test]
fn a_capability_round_trip_allocates_at_most_nine_times() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let per = rt().block_on(async {
        let (_server, client) = Connection::pair(
            ConnectionBuilder::new().serve(Remote::new(Arc::new(Factory) as Arc<dyn Maker>)),
            ConnectionBuilder::new(),
        )
        .await
        .expect("pair");
        let maker = client.root::<dyn Maker>();
        let round = |i: u64| {
            let maker = maker.clone();
            async move {
                let cap = maker.make().await.expect("make");
                assert_eq!(cap.add(i).await.expect("add"), i + 1);
            }
        };
        per_op(500, round).await
    });
    assert!(per <= 9.0, "{per} allocations per capability round trip");
}

/// Allocations per call of 32 KiB of arguments (over a read chunk, under a
/// large frame): the two of a trivial call, the frame's copy into the
/// client's output queue (freed after each write, being over 8 KiB), the
/// frame's own buffer on the server (`driver/input/keep.rs`: the read
/// buffer is set aside meanwhile and the frame leaves with the whole
/// buffer), and the count that lets the `Bytes` argument share that
/// buffer (`codec/shared_bytes.rs`; a copy of 32 KiB before), and no
/// reallocation. (Six and a reallocation before: the read buffer was
/// grown to take the frame, made shared with it when split off, and made
/// again for the next read.)
#[test]
fn a_call_of_32_kib_allocates_at_most_five_times_and_reallocates_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = bytes::Bytes::from(vec![7u8; 32 << 10]);
    let (per, reallocs) = rt().block_on(async move {
        let (_server, _client, proxy) = pair(Arc::new(ByMacro { step: 1 })).await;
        let call = |_| {
            let (proxy, data) = (proxy.clone(), data.clone());
            async move {
                assert_eq!(proxy.count(data).await.expect("count"), 32 << 10);
            }
        };
        let per = per_op(200, call).await;
        let before = GLOBAL.stats().reallocations;
        for i in 0..200 {
            call(i).await;
        }
        (per, GLOBAL.stats().reallocations - before)
    });
    assert!(per <= 5.0, "{per} allocations per call of 32 KiB");
    assert!(
        reallocs <= 2,
        "{reallocs} reallocations in 200 calls of 32 KiB"
    );
}

/// Bytes allocated per echo of a 256 KiB `Bytes` (large frames, both
/// ends), once a few echoes have run: a few hundred. The argument and the
/// return value share the frames they came in (`codec/shared_bytes.rs`),
/// the frames are read into the buffer kept for a run of large ones and
/// encoded into the kept output buffer. Copied out of their frames, the
/// two values allocated twice the payload per echo (524,618 bytes).
#[test]
fn a_large_bytes_echo_allocates_next_to_nothing() {
    const LEN: usize = 256 << 10;
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = bytes::Bytes::from(vec![9u8; LEN]);
    let per = rt().block_on(async move {
        let (_server, _client, proxy) = pair(Arc::new(ByMacro { step: 1 })).await;
        let echo = |_| {
            let (proxy, data) = (proxy.clone(), data.clone());
            async move {
                let back = proxy.echo(data.clone()).await.expect("echo");
                assert_eq!(back, data);
            }
        };
        for i in 0..16 {
            echo(i).await;
        }
        let mut fewest = usize::MAX;
        for _ in 0..WINDOWS {
            let before = GLOBAL.stats().bytes_allocated;
            for i in 0..32 {
                echo(i).await;
            }
            fewest = fewest.min((GLOBAL.stats().bytes_allocated - before) / 32);
        }
        fewest
    });
    assert!(
        per < LEN / 16,
        "{per} bytes allocated per echo of {LEN} bytes"
    );
}
