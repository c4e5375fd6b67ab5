//! A heavy reply is refused at once when it cannot fit beside what its own
//! handler holds of replies counted in the same budget
//! (`heavy_reply::room`, `held::own_bytes`). Summed over every budget, a
//! handler that awaited together a call to another server (over a client
//! connection with its own 64 MiB budget: 14.7 MB counted there) and a
//! callback to its caller (4.9 MB, its server's 16 MiB budget empty) had
//! the callback's reply refused, though its budget had all the room it
//! needed (a review).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_core::{remote, Connection, Error, Limits, Remote, Server};

#[remote]
pub trait Hub {
    /// Asks the other server for its names while asking `cb` for its
    /// own: how many in all.
    async fn both(&self, cb: Remote<dyn Names>) -> Result<u64, Error>;
}

#[remote]
pub trait Names {
    async fn names(&self) -> Result<Vec<String>, Error>;
}

struct HubImpl {
    other: Mutex<Option<Remote<dyn Names>>>,
}

#[remote]
impl Hub for HubImpl {
    async fn both(&self, cb: Remote<dyn Names>) -> Result<u64, Error> {
        let other = self.other.lock().unwrap().clone().unwrap();
        let (a, b) = tokio::join!(other.names(), cb.names());
        Ok(a?.len() as u64 + b?.len() as u64)
    }
}

/// `n` empty names (48 bytes and one counted each), after `delay`.
struct Many(usize, Duration);

#[remote]
impl Names for Many {
    async fn names(&self) -> Result<Vec<String>, Error> {
        tokio::time::sleep(self.1).await;
        Ok(vec![String::new(); self.0])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_in_another_budget_does_not_refuse_a_reply() {
    // The other server: its names at once (14.7 MB counted by the
    // connection that receives them, whose budget is 64 MiB).
    let other = Server::builder()
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Many(300_000, Duration::ZERO)) as Arc<dyn Names>));
    let to_other = Connection::connect(other.local_addr()).await.unwrap();
    let hub = Arc::new(HubImpl {
        other: Mutex::new(Some(to_other.root::<dyn Names>())),
    });
    let served = hub.clone();
    let server = Server::builder()
        .limits(Limits {
            memory_budget: 16 << 20,
            ..Limits::default()
        })
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(served.clone() as Arc<dyn Hub>));
    let client = Connection::connect(server.local_addr()).await.unwrap();
    // The caller's names (4.9 MB counted in the server's 16 MiB budget,
    // nothing else counted there), after the other server's are decoded.
    let cb: Remote<dyn Names> = Remote::new(Arc::new(Many(100_000, Duration::from_millis(500))));
    let r = tokio::time::timeout(Duration::from_secs(20), client.root::<dyn Hub>().both(cb))
        .await
        .expect("within 20 s");
    assert!(
        matches!(r, Ok(400_000)),
        "{r:?} (the server's budget counted {} bytes)",
        server.buffered_bytes()
    );
}
