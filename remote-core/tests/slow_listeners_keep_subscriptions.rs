//! Listeners that are slow but answer keep their subscriptions: their
//! connection is slowed down, never unsubscribed.
//!
//! Before its first reply, a connection starts only the calls whose
//! replies fit in its share of the memory budget whatever they return
//! (PROTOCOL.md §9: 8 at the defaults, one more per call of its own
//! awaited); the others wait there, unstarted, until a handler answers.
//! Their time on that side counts from the end of the wait, but a
//! notification's deadline on the server counted from its sending: 16
//! listeners of one connection, each taking a little over half the
//! server's `default_deadline` to answer, lost the 7 subscriptions whose
//! first notifications waited behind the others' (each answered after
//! twice that), and those listeners were never told of later changes.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{ListListener, RemoteList, SharedVec};
use remote_core::{remote, Connection, Error, Limits, Remote, Server};

/// The server's `default_deadline` (a notification's deadline before).
const DEADLINE: Duration = Duration::from_secs(4);
/// What each listener takes to handle a notification: under the deadline,
/// but two of them in a row are over it.
const TAKES: Duration = Duration::from_millis(2500);
/// Listeners on one connection (the default
/// `max_subscriptions_per_connection`).
const K: usize = 16;
/// Items pushed.
const M: usize = 2;

struct Slow {
    got: Arc<AtomicUsize>,
}

#[remote]
impl ListListener<u64> for Slow {
    async fn pushed(&self, _index: u64, _item: u64) -> Result<(), Error> {
        tokio::time::sleep(TAKES).await;
        self.got.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_listeners_waiting_behind_each_other_keep_their_subscriptions() {
    let list = SharedVec::<u64>::new();
    let served = list.clone();
    let server = Server::builder()
        .limits(Limits {
            default_deadline: DEADLINE,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| served.remote());
    let conn = Connection::connect(server.local_addr()).await.unwrap();
    let remote = conn.root::<dyn RemoteList<u64>>();
    let got = Arc::new(AtomicUsize::new(0));
    for _ in 0..K {
        let l = Slow { got: got.clone() };
        remote
            .subscribe(Remote::new(Arc::new(l) as Arc<dyn ListListener<u64>>))
            .await
            .unwrap();
    }
    assert_eq!(list.subscribers(), K);
    for i in 0..M {
        remote.push(i as u64).await.unwrap();
    }
    // Until every notification came, or a subscription ended.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while got.load(SeqCst) < K * M && list.subscribers() == K {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        list.subscribers(),
        K,
        "slow listeners were unsubscribed ({} of {} notifications came)",
        got.load(SeqCst),
        K * M
    );
    assert!(
        waited.is_ok(),
        "only {} of {} notifications came in 30 s",
        got.load(SeqCst),
        K * M
    );
    assert_eq!(got.load(SeqCst), K * M);
}
