//! A reply whose types decode to more than its items were counted at
//! waits for room in the memory budget and is decoded again, rather than
//! failing its call, and takes nothing from the budget whatever its room
//! (`heavy_reply::decoded`, `retried`). Found by a review of the weighing
//! of replies by their types: refused at once where the budget had no
//! room, an honest client's 4 concurrent replies, on a 16 MiB budget,
//! refused one another (15 to 19 of 20 calls failed, their results lost
//! though the peer's method had run); and each reply's
//! decode took its first 64 KiB whatever the room, so 128 running
//! handlers each answered 60 `nil`s as large options pushed a 2 MiB budget
//! to 8.4 MB.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/replies.rs"]
mod replies;
#[path = "support/serving.rs"]
mod serving;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Limits, Remote};
use replies::called_back_n;
use tokio::io::AsyncWriteExt;

/// A record whose fields are optional: with only `id` set, 208 bytes
/// decoded for about 9 on the wire.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}
impl remote_core::Wire for Contact {}

#[remote]
pub trait Directory {
    async fn contacts(&self, n: u32) -> Result<Vec<Contact>, Error>;
}

struct Dir;

#[remote]
impl Directory for Dir {
    async fn contacts(&self, n: u32) -> Result<Vec<Contact>, Error> {
        Ok((0..n)
            .map(|i| Contact {
                id: Some(u64::from(i)),
                ..Contact::default()
            })
            .collect())
    }
}

/// 20,000 records: about 180 KB on the wire, counted at 3 MB by their
/// items (3 a record), and 7.4 MB more by their types (416 bytes a
/// record, a `Vec` grown by doubling, less the 48 its item counted): one
/// fits a 16 MiB budget, two decoding at once on two workers do not.
/// (The review's 30,000, each 15.6 MB of a 16.8 MB budget, fit only
/// alone: one that needs more than the seven eighths of the budget a wait
/// in line may have is refused where others hold room, as a heavy call
/// is.)
const N: u32 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_honest_replies_each_fitting_the_budget_all_decode() {
    let client = ConnectionBuilder::new().limits(Limits {
        memory_budget: 16 << 20,
        ..Limits::default()
    });
    let server = ConnectionBuilder::new().serve(Remote::new(Arc::new(Dir) as Arc<dyn Directory>));
    let (client, _server) = Connection::pair(client, server).await.unwrap();
    let dir = client.root::<dyn Directory>();
    let mut failed = Vec::new();
    for round in 0..5 {
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.clone();
                tokio::spawn(async move { dir.contacts(N).await.map(|v| v.len()) })
            })
            .collect();
        for c in calls {
            match raw::bounded(c).await.unwrap() {
                Ok(n) => assert_eq!(n, N as usize),
                Err(e) => failed.push(format!("round {round}: {e}")),
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 20 honest calls failed: {:?}",
        failed.len(),
        failed.first()
    );
}

#[remote]
pub trait Hub {
    /// Asks `dir` for its rows, and holds them until let go.
    async fn hold_opt(&self, dir: Remote<dyn Rows>) -> Result<u64, Error>;
}

#[remote]
pub trait Rows {
    async fn opt(&self) -> Result<Vec<Option<[[u64; 32]; 2]>>, Error>;
}

/// The handlers' progress.
#[derive(Default)]
struct HubImpl {
    holding: AtomicUsize,
    done: AtomicUsize,
    refused: AtomicUsize,
    go_on: AtomicBool,
}

#[remote]
impl Hub for HubImpl {
    async fn hold_opt(&self, dir: Remote<dyn Rows>) -> Result<u64, Error> {
        let rows = dir.opt().await.inspect_err(|_| {
            self.refused.fetch_add(1, SeqCst);
        })?;
        self.holding.fetch_add(1, SeqCst);
        while !self.go_on.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.done.fetch_add(1, SeqCst);
        Ok(rows.len() as u64)
    }
}

/// A return to call `id` of `n` `nil`s: about 60 bytes on the wire, light
/// by its items, 60 KB decoded as `Option<[[u64; 32]; 2]>`s.
fn nils(id: u64, n: u16) -> Vec<u8> {
    let mut p = vec![0x93, 2, 0xce];
    p.extend_from_slice(&(id as u32).to_be_bytes());
    p.push(0xdc);
    p.extend_from_slice(&n.to_be_bytes());
    p.resize(p.len() + n as usize, 0xc0);
    let mut f = (p.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&p);
    f
}

#[test]
fn replies_to_running_handlers_wait_for_room_within_the_budget() {
    counting::measured(async {
        const CALLS: u32 = 128;
        const BUDGET: usize = 2 << 20;
        let hub = Arc::new(HubImpl::default());
        let served = hub.clone();
        let limits = Limits {
            memory_budget: BUDGET,
            ..Limits::default()
        };
        let server =
            serving::tcp(limits, move |_| Remote::new(served.clone() as Arc<dyn Hub>)).await;
        let (mut s, backs) = called_back_n(&server, vec![], "hold_opt", CALLS, 60_000).await;
        for id in backs {
            s.write_all(&nils(id, 60)).await.unwrap();
        }
        // Some hold their rows; the others wait for room, holding it up
        // no further than the budget.
        let mut peak = 0;
        let some = raw::eventually(|| {
            peak = peak.max(server.buffered_bytes());
            hub.holding.load(SeqCst) >= 8
        })
        .await;
        assert!(some, "{} handlers hold", hub.holding.load(SeqCst));
        // Let go: each waiting reply gets room as others give it back.
        hub.go_on.store(true, SeqCst);
        let all = raw::eventually(|| {
            peak = peak.max(server.buffered_bytes());
            hub.done.load(SeqCst) + hub.refused.load(SeqCst) == CALLS as usize
        })
        .await;
        println!(
            "{} of {CALLS} done, {} refused; the budget's peak {} KB of {} KB",
            hub.done.load(SeqCst),
            hub.refused.load(SeqCst),
            peak / 1000,
            BUDGET / 1000
        );
        assert!(all);
        assert_eq!(
            hub.refused.load(SeqCst),
            0,
            "waited for room, never refused"
        );
        assert!(
            peak <= BUDGET + BUDGET / 4,
            "replies to running handlers pushed the budget to {peak} of {BUDGET}"
        );
        let mut answered = 0;
        while answered < CALLS {
            let f = raw::bounded(raw::frame(&mut s)).await.unwrap();
            if raw::kind(&f) == raw::RETURN {
                answered += 1;
            }
        }
    });
}
