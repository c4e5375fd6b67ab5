//! What a heavy reply to one of the server's own calls (a callback, a pull
//! of a `RemoteStream` a client passed in) holds decoded counts in the
//! memory budget, as a heavy call's arguments do. A red-team pass answered
//! such calls with 1 MiB frames of a million empty strings (24 bytes each
//! decoded): one connection made a server hold 1 GB against a 16 MiB
//! budget, 1.1 MB of it counted, and the stream took a batch of a million
//! items where it had asked for 32.

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/replies.rs"]
mod replies;
#[path = "support/serving.rs"]
mod serving;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::stream::RemoteStream;
use remote_core::{remote, with_timeout, ConnectionBuilder, Error, Limits, Remote, ServerHandle};
use replies::{called_back, empty_strings, strings};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

#[remote]
pub trait Store {
    /// Takes every item of `items`; their bytes in all.
    async fn upload(&self, items: RemoteStream<String>) -> Result<u64, Error>;
    /// Asks the caller's directory for its names and holds them until the
    /// test lets it go on; how many.
    async fn ask(&self, dir: Remote<dyn Names>) -> Result<u64, Error>;
    /// `ask` with arguments of some weight besides.
    async fn padded_ask(&self, dir: Remote<dyn Names>, pad: String) -> Result<u64, Error>;
}

#[remote]
pub trait Names {
    async fn names(&self) -> Result<Vec<String>, Error>;
}

struct Impl {
    /// `ask` holds its names until a permit comes.
    go_on: Arc<Semaphore>,
}

#[remote]
impl Store for Impl {
    async fn upload(&self, mut items: RemoteStream<String>) -> Result<u64, Error> {
        let mut bytes = 0;
        while let Some(item) = items.next().await {
            bytes += item?.len() as u64;
        }
        Ok(bytes)
    }
    async fn ask(&self, dir: Remote<dyn Names>) -> Result<u64, Error> {
        let names = dir.names().await?;
        self.go_on.acquire().await.unwrap().forget();
        Ok(names.len() as u64)
    }
    async fn padded_ask(&self, dir: Remote<dyn Names>, _pad: String) -> Result<u64, Error> {
        self.ask(dir).await
    }
}

/// A directory of `0` names of one byte.
struct Few(usize);

#[remote]
impl Names for Few {
    async fn names(&self) -> Result<Vec<String>, Error> {
        Ok(vec!["x".into(); self.0])
    }
}

async fn server(budget: usize) -> (ServerHandle, Arc<Semaphore>) {
    let go_on = Arc::new(Semaphore::new(0));
    let store = Arc::new(Impl {
        go_on: go_on.clone(),
    });
    let limits = Limits {
        memory_budget: budget,
        ..Limits::default()
    };
    let server = serving::tcp(
        limits,
        move |_| Remote::new(store.clone() as Arc<dyn Store>),
    )
    .await;
    (server, go_on)
}

/// 8 connections each answer the server's pull of their upload with a
/// million empty strings in 1 MiB: 49 MiB decoded, more than the 16 MiB
/// budget can ever hold, so the pull fails undecoded and so does the
/// upload, and the server holds nowhere near it.
#[test]
fn a_reply_that_could_never_fit_is_refused_undecoded() {
    counting::measured(async {
        let budget = 16 << 20;
        let (server, _) = server(budget).await;
        let before = counting::live();
        let mut peers = Vec::new();
        for _ in 0..8 {
            let (mut s, pull) = called_back(&server, "upload", 60_000).await;
            s.write_all(&empty_strings(2, pull, (1 << 20) - 16))
                .await
                .unwrap();
            peers.push(s);
        }
        for s in &mut peers {
            let (id, kind, message) = raw::bounded(raw::next_error(s)).await;
            assert_eq!((id, kind.as_str()), (1, "limit_exceeded"), "{message}");
            assert!(message.contains("memory_budget"), "{message}");
        }
        let held = counting::live() - before;
        assert!(
            held < (budget / 2) as isize,
            "8 refused replies left the server holding {held} bytes"
        );
        drop(peers);
        assert!(raw::eventually(|| server.buffered_bytes() == 0).await);
    });
}

/// A callback's reply of 100,000 empty strings (100 KB on the wire, 4.9 MB
/// counted decoded) counts while the handler that asked holds it, and not
/// after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_reply_counts_while_its_handler_holds_it() {
    let (server, go_on) = server(64 << 20).await;
    let (mut s, names) = called_back(&server, "ask", 60_000).await;
    s.write_all(&empty_strings(2, names, 100_000))
        .await
        .unwrap();
    let weight = 100_000 * 49;
    assert!(
        raw::eventually(|| server.buffered_bytes() >= weight).await,
        "{} bytes counted while the handler holds the names",
        server.buffered_bytes()
    );
    go_on.add_permits(1);
    let answer = raw::bounded(raw::next_of_kind(&mut s, raw::RETURN)).await;
    assert_eq!(raw::id_of(&answer), 1);
    assert!(
        answer.ends_with(&[0xce, 0x00, 0x01, 0x86, 0xa0]),
        "{answer:02x?}"
    );
    assert!(raw::eventually(|| server.buffered_bytes() < weight / 10).await);
}

/// A stream's batch counts while the stream holds it, not for the whole
/// upload: batches of 32 × 8 KiB (heavy) add up to 16 times a 1 MiB
/// budget, and the upload completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_upload_in_heavy_batches_completes_past_the_budget() {
    let (server, _) = server(1 << 20).await;
    let client = remote_core::ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let store = client.root::<dyn Store>();
    let items = (0..2048).map(|i| format!("{i:08}").repeat(1024));
    let uploaded = raw::bounded(store.upload(RemoteStream::from_items(items))).await;
    assert_eq!(uploaded.unwrap(), 2048 * 8192);
    // Less than a batch (the reader may keep a spare read buffer).
    assert!(raw::eventually(|| server.buffered_bytes() < 64 << 10).await);
}

/// PROTOCOL.md §5.1: a batch holds at most the items asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_asked_for_is_an_error() {
    let (server, _) = server(64 << 20).await;
    let (mut s, pull) = called_back(&server, "upload", 60_000).await;
    s.write_all(&strings(2, pull, 33, 3)).await.unwrap();
    let (id, kind, message) = raw::bounded(raw::next_error(&mut s)).await;
    assert_eq!((id, kind.as_str()), (1, "protocol"), "{message}");
    assert!(message.contains("33 items, 32 asked"), "{message}");
}

/// Two callback replies that fit in the budget one at a time, not both:
/// the second waits for room (backpressure), and is decoded once the first
/// handler has let its names go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waits_for_room_rather_than_failing() {
    let (server, go_on) = server(8 << 20).await;
    let weight = 100_000 * 49;
    let (mut first, names) = called_back(&server, "ask", 60_000).await;
    first
        .write_all(&empty_strings(2, names, 100_000))
        .await
        .unwrap();
    assert!(raw::eventually(|| server.buffered_bytes() >= weight).await);
    let (mut second, names) = called_back(&server, "ask", 60_000).await;
    second
        .write_all(&empty_strings(2, names, 100_000))
        .await
        .unwrap();
    // Its frame is counted while it waits; not its weight.
    assert!(raw::eventually(|| server.buffered_bytes() >= weight + 100_000).await);
    assert!(server.buffered_bytes() < 2 * weight);
    go_on.add_permits(2);
    for s in [&mut first, &mut second] {
        let answer = raw::bounded(raw::next_of_kind(s, raw::RETURN)).await;
        assert!(
            answer.ends_with(&[0xce, 0x00, 0x01, 0x86, 0xa0]),
            "{answer:02x?}"
        );
    }
    assert!(raw::eventually(|| server.buffered_bytes() < weight / 10).await);
}

/// `padded_ask(our object k, 60 KiB of padding)` as call `k`.
fn padded_ask(k: u32) -> Vec<u8> {
    const PAD: usize = 60 << 10;
    let mut b = encode::begin(PAD + 64);
    encode::call_head(&mut b, CallId(k), ObjectId(0), "padded_ask", 600_000);
    b.extend_from_slice(&[0x92, 0xd6, 0x01]);
    b.extend_from_slice(&k.to_be_bytes());
    b.push(0xda);
    b.extend_from_slice(&(PAD as u16).to_be_bytes());
    b.resize(b.len() + PAD, b'p');
    encode::finish(&mut b);
    b
}

/// A reply weighing at most 64 KiB (1,000 short names: 50 KB counted,
/// 2 KB on the wire) is counted whole at once and decoded, not made to
/// wait for room while the budget is full: made to, an ordinary reply of
/// 100 numbers waited to its deadline (a red-team pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_of_at_most_64_kib_never_waits_for_room() {
    const BUDGET: usize = 4 << 20;
    let (server, go_on) = server(BUDGET).await;
    // Calls with 60 KiB of arguments whose callbacks are never answered
    // fill the budget (7 × 16 of them offer 6.9 MB).
    let mut hostile = Vec::new();
    for c in 0..7u32 {
        let mut s = raw::raw_with(&server, vec![]).await;
        assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
        let calls: Vec<u8> = (1..=16).flat_map(|k| padded_ask(c * 16 + k)).collect();
        s.write_all(&calls).await.unwrap();
        hostile.push(s);
    }
    assert!(raw::eventually(|| server.buffered_bytes() >= BUDGET).await);
    let client = ConnectionBuilder::new()
        .connect(server.local_addr())
        .await
        .unwrap();
    let store = client.root::<dyn Store>();
    go_on.add_permits(1);
    let dir: Remote<dyn Names> = Remote::new(Arc::new(Few(1000)));
    let asked = with_timeout(Duration::from_secs(20), store.ask(dir)).await;
    assert_eq!(
        asked.unwrap(),
        1000,
        "{} B counted",
        server.buffered_bytes()
    );
    drop((store, client, hostile));
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        server.shutdown(Duration::from_secs(1)),
    )
    .await;
}
