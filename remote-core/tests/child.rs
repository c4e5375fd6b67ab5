//! The child-process transport: the test binary re-runs itself as a child
//! that serves on its stdin/stdout. (No libtest harness, so nothing else
//! writes to stdout.)

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use remote_core::{ConnectionBuilder, Error};
use support::{eventually, Calc, Counter, Stats};

const CHILD: &str = "REMOTE_CORE_TEST_CHILD";

fn main() {
    support::quiet_panics::install();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if std::env::var_os(CHILD).is_some() {
        rt.block_on(serve_stdio());
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter
        .as_deref()
        .is_some_and(|f| !"child_process".contains(f) && !f.contains("child"))
    {
        println!("0 passed, 0 failed");
        return;
    }
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), run())
            .await
            .expect("child transport test timed out")
    });
    println!("test child_process_transport ... ok\n1 passed, 0 failed");
}

async fn serve_stdio() {
    let stats = Arc::new(Stats::default());
    let conn = ConnectionBuilder::new()
        .serve(Counter::remote(100, stats))
        .stdio()
        .await
        .unwrap();
    conn.closed().await;
}

async fn run() {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.env(CHILD, "1");
    let (conn, mut child) = ConnectionBuilder::new().spawn_child(cmd).await.unwrap();
    let root = conn.root::<dyn Calc>();
    // Call.
    assert_eq!(root.add(1, 2).await.unwrap(), 103);
    // Pass a reference; the child calls back while our call is in flight.
    let stats = Arc::new(Stats::default());
    assert_eq!(
        root.call_back(Counter::remote(5, stats.clone()), 1)
            .await
            .unwrap(),
        7
    );
    // 100 concurrent calls.
    let calls = (0..100i64).map(|i| root.add(i, 0));
    for (i, r) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap(), i as i64 + 100);
    }
    // Panic in the child is a remote error.
    let e = root.boom().await.unwrap_err();
    assert!(e.to_string().contains("boom at counter 100"), "{e}");
    // Cancel: dropping the call stops it; the child keeps serving.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), root.sleep(10_000))
            .await
            .is_err()
    );
    assert_eq!(root.add(0, 0).await.unwrap(), 100);
    // Disconnect mid-call: the child dies; the pending call fails, our
    // exported object is dropped.
    root.keep(Counter::remote(1, stats.clone())).await.unwrap();
    let r2 = root.clone();
    let sent = conn.stats().bytes_out;
    let pending = tokio::spawn(async move { r2.sleep(10_000).await });
    // Killed once the call is written to the child.
    assert!(eventually(60, || conn.stats().bytes_out > sent).await);
    child.kill().await.unwrap();
    let r = pending.await.unwrap();
    assert!(matches!(&r, Err(Error::ConnectionLost(_))), "{r:?}");
    assert!(
        eventually(60, || stats.live.load(SeqCst) == 0).await,
        "exports to the dead child were dropped"
    );
}
