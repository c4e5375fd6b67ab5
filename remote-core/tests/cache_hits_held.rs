//! A cached result decoded from the cache counts in the memory budget
//! while a handler holds it, as a reply's value does, even when it is
//! decoded in the handler's first poll (run by the reader, before the
//! handler has a task of its own). Counted at nothing but the cache's
//! bytes, once, and given back at the end of that poll, the hits of 100
//! handlers that held them on held 36 MB against a 16 MiB budget (a
//! review). A hit the budget has no room for goes to the peer instead.

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

use remote_core::{remote, Error, Limits, Remote};
use replies::{call_with_object, strings};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Hub {
    /// Asks `dir` for its (cached) names and holds what it got until let
    /// go: how many names.
    async fn ask_cached(&self, dir: Remote<dyn CachedNames>) -> Result<u64, Error>;
    /// A small reply: handlers are started knowing their replies' size.
    async fn ping(&self) -> Result<u64, Error>;
}

#[remote]
pub trait CachedNames {
    #[remote(cache(ttl = "60s"))]
    async fn names(&self) -> Result<Vec<String>, Error>;
}

#[derive(Default)]
struct HubImpl {
    holding: AtomicUsize,
    go_on: AtomicBool,
}

#[remote]
impl Hub for HubImpl {
    async fn ask_cached(&self, dir: Remote<dyn CachedNames>) -> Result<u64, Error> {
        // The names, or the error the peer answered with.
        let names = dir.names().await;
        self.holding.fetch_add(1, SeqCst);
        while !self.go_on.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(names.map_or(0, |n| n.len() as u64))
    }
    async fn ping(&self) -> Result<u64, Error> {
        Ok(7)
    }
}

const BUDGET: usize = 16 << 20;
const CALLS: u32 = 100;
/// Names in the cached reply, of `LEN` bytes each: 1 MB on the wire,
/// and about as much decoded (a reply that decodes to much more than its
/// bytes is not cached).
const NAMES: u32 = 1000;
const LEN: usize = 1000;

/// The answers of a raw client that answers each callback (a hit the
/// budget had no room for) with an application error, until its calls
/// have all returned: the callbacks it got, and how many calls returned
/// every name.
async fn answered(mut s: tokio::net::TcpStream) -> (usize, usize) {
    let (mut backs, mut full, mut returns) = (0, 0, 0);
    while returns < CALLS {
        let f = raw::frame(&mut s).await.expect("the server hung up");
        match raw::kind(&f) {
            raw::CALL => {
                backs += 1;
                let error = strings(3, raw::id_of(&f), 0, 0);
                s.write_all(&error).await.unwrap();
            }
            raw::RETURN => {
                returns += 1;
                // 1,000 as a MessagePack uint16.
                if f.ends_with(&[0xcd, 0x03, 0xe8]) {
                    full += 1;
                }
            }
            _ => {}
        }
    }
    (backs, full)
}

/// 100 handlers of one connection get the cached names (the first from
/// the peer, most from the cache in their first poll) and hold them:
/// what they hold stays within twice the budget (no more start once it
/// is full), and hits the budget has no room for are asked of the peer.
/// Every call is answered.
#[test]
fn cached_hits_held_by_handlers_count_in_the_budget() {
    counting::measured(async {
        let hub = Arc::new(HubImpl::default());
        let served = hub.clone();
        let limits = Limits {
            memory_budget: BUDGET,
            ..Limits::default()
        };
        let server =
            serving::tcp(limits, move |_| Remote::new(served.clone() as Arc<dyn Hub>)).await;
        let before = counting::live();
        let mut s = raw::raw(&server).await;
        assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
        // A reply first: until then each running handler is counted as
        // one that may answer `max_frame_len`, and two or three run.
        s.write_all(&raw::call(1, 0, "ping", 60_000, &[0x90]))
            .await
            .unwrap();
        raw::bounded(raw::next_of_kind(&mut s, raw::RETURN)).await;
        // The first call fills the cache.
        s.write_all(&call_with_object("ask_cached", 1, 1, 60_000))
            .await
            .unwrap();
        let back = raw::bounded(raw::next_of_kind(&mut s, raw::CALL)).await;
        s.write_all(&strings(2, raw::id_of(&back), NAMES, LEN))
            .await
            .unwrap();
        assert!(raw::eventually(|| hub.holding.load(SeqCst) == 1).await);
        let rest: Vec<u8> = (2..=CALLS)
            .flat_map(|k| call_with_object("ask_cached", k, 1, 60_000))
            .collect();
        s.write_all(&rest).await.unwrap();
        let client = tokio::spawn(answered(s));
        // Until every handler holds what it got, or the budget is nearly
        // full (then no more start: they wait for room, and hits that
        // find none go to the peer).
        let full_enough = || server.buffered_bytes() > BUDGET - (2 << 20);
        let settled =
            raw::eventually(|| hub.holding.load(SeqCst) == CALLS as usize || full_enough()).await;
        let held = counting::live() - before;
        let holding = hub.holding.load(SeqCst);
        hub.go_on.store(true, SeqCst);
        assert!(
            settled,
            "{holding} handlers hold, {} bytes counted",
            server.buffered_bytes()
        );
        let (backs, full) = raw::bounded(client).await.unwrap();
        // The first call's names, and at least two hits.
        assert!(full >= 3, "{full} calls got the names");
        // The hits the budget had no room for went to the peer.
        assert_eq!(
            full + backs,
            CALLS as usize,
            "{backs} callbacks, {full} names"
        );
        assert!(raw::eventually(|| server.buffered_bytes() == 0).await);
        assert!(
            held < 2 * BUDGET as isize,
            "{held} bytes held by {holding} handlers against a {BUDGET} byte budget"
        );
    });
}
