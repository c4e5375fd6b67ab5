//! A `SharedVec` item is weighed once (`codec::held_weight`: it encodes
//! the item and decodes a copy), however many subscribers stand at
//! different places. With the last weight kept only, subscribers at
//! different positions (a peer's listeners subscribed at different times,
//! answering at their own pace) weighed every item again at each delivery:
//! 2,695 weighings for 320 items (red-team pass 49).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use remote_core::collections::{ListListener, RemoteList, SharedVec};
use remote_core::{remote, Connection, Error, Limits, Remote, Server};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::watch;

/// Decodes of `Probe` in the whole process.
static DECODES: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug)]
struct Probe(Vec<u64>);

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, SeqCst);
        Vec::<u64>::deserialize(d).map(Probe)
    }
}

impl remote_core::Wire for Probe {}

struct Gated {
    gate: watch::Receiver<bool>,
    got: Arc<AtomicUsize>,
}

#[remote]
impl ListListener<Probe> for Gated {
    async fn pushed(&self, _index: u64, _item: Probe) -> Result<(), Error> {
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        self.got.fetch_add(1, SeqCst);
        Ok(())
    }
}

const K: usize = 16;
const M: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vec_item_is_weighed_once_not_once_per_subscriber() {
    let list = SharedVec::<Probe>::new();
    let served = list.clone();
    let server = Server::builder()
        .limits(Limits::default())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| served.remote());
    let conn = Connection::connect(server.local_addr()).await.unwrap();
    let remote = conn.root::<dyn RemoteList<Probe>>();
    let (open, gate) = watch::channel(false);
    let got = Arc::new(AtomicUsize::new(0));
    // Listener k attaches at k * M: the subscriptions stand at 16
    // different places.
    for _ in 0..K {
        let l = Gated {
            gate: gate.clone(),
            got: got.clone(),
        };
        remote
            .subscribe(Remote::new(Arc::new(l) as Arc<dyn ListListener<Probe>>))
            .await
            .unwrap();
        for _ in 0..M {
            remote.push(Probe(vec![7; 64])).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = DECODES.load(SeqCst);
    let got_before = got.load(SeqCst);
    open.send(true).unwrap();
    let all = M * K * (K + 1) / 2;
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.load(SeqCst) < all && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered = got.load(SeqCst) - got_before;
    assert_eq!(got.load(SeqCst), all, "not every notification came");
    // Each delivery decodes the item once on the client; the rest are the
    // server's weighings (held_weight's decode of a copy).
    let weighed = DECODES.load(SeqCst) - before - delivered;
    assert!(
        weighed <= K * M + K,
        "{weighed} weighings of {} items ({delivered} deliveries)",
        K * M
    );
}
