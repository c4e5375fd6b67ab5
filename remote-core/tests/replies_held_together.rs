//! A handler holds every reply to the calls it awaits together, and what
//! it holds when it hands work to a blocking thread (red-team pass 48).
//! Each heavy reply that waited for room let go of the handler's count of
//! the one before, and each decoded one replaced it ("the latest one
//! only", right for calls made one after another): a handler joining 16
//! callbacks, each answered with 200,000 empty strings, held 134 MB
//! against a 16 MiB budget that counted 9.8 MB. And
//! `blocking::spawn_blocking` took the handler's count over and dropped
//! it when the closure returned: 8 handlers held 67 MB, 67 KB counted.
//! Now a reply lets go only of the replies decoded before its call
//! started (`held.rs`), and blocking work shares the handler's holding.

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

use remote_core::{remote, Error, Limits, Remote, ServerHandle};
use replies::{call_with_object, empty_strings};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Hub {
    /// Asks `dir` for its names `n` times at once, and holds them all
    /// until let go.
    async fn gather(&self, dir: Remote<dyn Names>, n: u32) -> Result<u64, Error>;
    /// Asks `dir` for its names, hands unrelated work to
    /// `blocking::spawn_blocking`, then holds the names until let go.
    async fn then_blocking(&self, dir: Remote<dyn Names>) -> Result<u64, Error>;
}

#[remote]
pub trait Names {
    async fn names(&self) -> Result<Vec<String>, Error>;
}

#[derive(Default)]
struct HubImpl {
    holding: AtomicUsize,
    go_on: AtomicBool,
}

#[remote]
impl Hub for HubImpl {
    async fn gather(&self, dir: Remote<dyn Names>, n: u32) -> Result<u64, Error> {
        // Each call (and a reply's wait for room) may take 5 s: with every
        // reply counted, those that find no room fail, and the handler
        // still holds what it got.
        let calls = (0..n).map(|_| remote_core::with_timeout(Duration::from_secs(5), dir.names()));
        let all = futures_util::future::join_all(calls).await;
        self.holding.fetch_add(1, SeqCst);
        while !self.go_on.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(all
            .iter()
            .map(|r| r.as_ref().map_or(0, |v| v.len() as u64))
            .sum())
    }
    async fn then_blocking(&self, dir: Remote<dyn Names>) -> Result<u64, Error> {
        // The names, or the refusal of room for them: the call (and its
        // reply's wait for room) may take 3 s.
        let names = remote_core::with_timeout(Duration::from_secs(3), dir.names()).await;
        // Unrelated work on a blocking thread (it makes no call).
        remote_core::blocking::spawn_blocking(|| std::hint::black_box(1 + 1))
            .await
            .unwrap();
        self.holding.fetch_add(1, SeqCst);
        while !self.go_on.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(names.map_or(0, |n| n.len() as u64))
    }
}

async fn server(budget: usize) -> (ServerHandle, Arc<HubImpl>) {
    let hub = Arc::new(HubImpl::default());
    let served = hub.clone();
    let limits = Limits {
        memory_budget: budget,
        ..Limits::default()
    };
    let server = serving::tcp(limits, move |_| Remote::new(served.clone() as Arc<dyn Hub>)).await;
    (server, hub)
}

/// `gather(our object 1, n)` as call 1.
fn gather_call(n: u32) -> Vec<u8> {
    // call_with_object's args are `[object]`: append `n` to the array.
    let mut f = call_with_object("gather", 1, 1, 60_000);
    // The arguments' array is the frame's tail: fixarray of 1 (0x91) then
    // the 6-byte reference; make it 2 and push `n` as a u32.
    let at = f.len() - 7;
    assert_eq!(f[at], 0x91);
    f[at] = 0x92;
    f.push(0xce);
    f.extend_from_slice(&n.to_be_bytes());
    let len = (f.len() - 4) as u32;
    f[..4].copy_from_slice(&len.to_be_bytes());
    f
}

/// One handler awaits 16 callbacks at once; a hostile client answers
/// each with 200,000 empty strings (200 KB on the wire, 4.8 MB decoded,
/// 9.8 MB counted while held). All 16 would be held together by the
/// handler: what the server holds stays within twice its 16 MiB budget,
/// the replies that found no room in 5 s refused.
#[test]
fn replies_a_handler_awaits_together_all_count_while_held() {
    counting::measured(async {
        const BUDGET: usize = 16 << 20;
        const N: u32 = 16;
        let (server, hub) = server(BUDGET).await;
        let before = counting::live();
        let mut s = raw::raw(&server).await;
        assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
        s.write_all(&gather_call(N)).await.unwrap();
        let mut backs = Vec::new();
        for _ in 0..N {
            let back = raw::bounded(raw::next_of_kind(&mut s, raw::CALL)).await;
            backs.push(raw::id_of(&back));
        }
        for id in backs {
            s.write_all(&empty_strings(2, id, 200_000)).await.unwrap();
        }
        let all = raw::eventually(|| hub.holding.load(SeqCst) == 1).await;
        let held = counting::live() - before;
        let counted = server.buffered_bytes();
        hub.go_on.store(true, SeqCst);
        assert!(all, "the handler never got its replies");
        drop(s);
        assert!(
            held < 2 * BUDGET as isize,
            "one handler holds {held} bytes of replies against a {BUDGET} byte budget \
             ({counted} counted)"
        );
    });
}

/// A handler holds a heavy reply (200,000 empty strings, 4.8 MB decoded,
/// 9.8 MB counted), then hands unrelated work to
/// `blocking::spawn_blocking`: the reply it still holds still counts.
#[test]
fn a_reply_still_held_after_handing_work_to_a_blocking_thread_counts() {
    counting::measured(async {
        let (server, hub) = server(64 << 20).await;
        let before = counting::live();
        let (mut s, id) = replies::called_back(&server, "then_blocking", 60_000).await;
        s.write_all(&empty_strings(2, id, 200_000)).await.unwrap();
        let all = raw::eventually(|| hub.holding.load(SeqCst) == 1).await;
        let held = counting::live() - before;
        let counted = server.buffered_bytes();
        hub.go_on.store(true, SeqCst);
        assert!(all, "the handler never got its reply");
        raw::bounded(raw::next_of_kind(&mut s, raw::RETURN)).await;
        drop(s);
        assert!(
            counted as isize >= held / 2,
            "the handler holds {held} bytes of its reply, {counted} counted"
        );
    });
}

/// [`a_reply_still_held_after_handing_work_to_a_blocking_thread_counts`]
/// from 8 connections on a 16 MiB budget: each reply (9.8 MB counted)
/// found room once the one before was handed off, so all 8 were held
/// together (67 MB, 67 KB counted); what the server holds stays within
/// twice its budget, the replies that found no room in 3 s refused.
#[test]
fn replies_handed_off_by_many_handlers_stay_within_the_budget() {
    counting::measured(async {
        const BUDGET: usize = 16 << 20;
        let (server, hub) = server(BUDGET).await;
        let before = counting::live();
        let mut peers = Vec::new();
        for k in 0..8 {
            // Replies that find no room in 3 s are refused, and their
            // handlers hold nothing.
            let (mut s, id) = replies::called_back(&server, "then_blocking", 60_000).await;
            s.write_all(&empty_strings(2, id, 200_000)).await.unwrap();
            peers.push((k, s));
        }
        let all = raw::eventually(|| hub.holding.load(SeqCst) == 8).await;
        let held = counting::live() - before;
        let counted = server.buffered_bytes();
        hub.go_on.store(true, SeqCst);
        drop(peers);
        assert!(all, "{} handlers hold", hub.holding.load(SeqCst));
        assert!(
            held < 2 * BUDGET as isize,
            "8 handlers hold {held} bytes of replies against a {BUDGET} byte budget ({counted} counted)"
        );
    });
}

/// An honest handler joining 8 callbacks whose replies fit in the budget
/// together (20,000 empty strings each, about 1 MB counted) gets them
/// all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_awaited_together_that_fit_are_all_decoded() {
    const N: u32 = 8;
    let (server, hub) = server(16 << 20).await;
    hub.go_on.store(true, SeqCst);
    let mut s = raw::raw(&server).await;
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
    s.write_all(&gather_call(N)).await.unwrap();
    for _ in 0..N {
        let back = raw::bounded(raw::next_of_kind(&mut s, raw::CALL)).await;
        s.write_all(&empty_strings(2, raw::id_of(&back), 20_000))
            .await
            .unwrap();
    }
    let answer = raw::bounded(raw::next_of_kind(&mut s, raw::RETURN)).await;
    // 160,000 as a MessagePack uint32.
    assert!(
        answer.ends_with(&[0xce, 0x00, 0x02, 0x71, 0x00]),
        "{answer:x?}"
    );
    drop(s);
    assert!(raw::eventually(|| server.buffered_bytes() == 0).await);
}
