//! A client that never has more calls outstanding than the server's
//! `max_calls_in_flight` is never refused for it. A call's id is free once
//! its reply is queued, and the peer may send its next call on seeing the
//! reply, possibly before the handler's task has ended: the call stops
//! counting with its handler's own reply, not when that task stops
//! (red-team pass 24: 103–121 of 2,000 calls made one after another were
//! refused at a limit of 1, and 1 of 20,000 with 128 outstanding at the
//! default; `kept_answers_bounded.rs` failed so in about 2 runs of 5).
//! The handler yields once before it answers, so it runs as a task (a
//! handler done in its first poll is answered inline, before the reader
//! reads on).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_core::{remote, Connection, Error, Limits, Remote, Server, ServerHandle};

#[remote]
pub trait Slow {
    async fn slow(&self, n: u32) -> Result<u32, Error>;
}

struct Impl;

#[remote]
impl Slow for Impl {
    async fn slow(&self, n: u32) -> Result<u32, Error> {
        tokio::task::yield_now().await;
        Ok(n)
    }
}

async fn serve(limits: Limits) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Slow>))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_one_after_another_are_never_over_a_limit_of_one() {
    let server = serve(Limits {
        max_calls_in_flight: 1,
        ..Limits::default()
    })
    .await;
    let c = Connection::connect(server.local_addr())
        .await
        .expect("connect");
    let api = c.root::<dyn Slow>();
    for i in 0..2000 {
        assert_eq!(api.slow(i).await.expect("never refused"), i);
    }
    c.close();
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeping_the_default_limit_outstanding_is_never_refused() {
    let server = serve(Limits::default()).await;
    let c = Connection::connect(server.local_addr())
        .await
        .expect("connect");
    let api = c.root::<dyn Slow>();
    let window = Arc::new(tokio::sync::Semaphore::new(
        Limits::default().max_calls_in_flight,
    ));
    let refused = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(Mutex::new(None::<String>));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20_000u32 {
        // A new call as soon as a reply is in.
        let permit = window.clone().acquire_owned().await.expect("permit");
        let (api, refused, first) = (api.clone(), refused.clone(), first.clone());
        tasks.spawn(async move {
            if let Err(e) = api.slow(i).await {
                refused.fetch_add(1, Relaxed);
                first.lock().unwrap().get_or_insert_with(|| e.to_string());
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let first = first.lock().unwrap().clone();
    assert_eq!(refused.load(Relaxed), 0, "first: {first:?}");
    drop(api);
    c.close();
    server.shutdown(Duration::from_secs(5)).await;
}
