//! An incoming call's deadline counts from the read that brought its frame
//! (`driver/deadline.rs`, `Arrival`), or from the end of a wait of ours
//! for output room (backpressure): the time a call is held back because
//! this side's output is over its share is not taken from the caller's
//! timeout, however that wait ends.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raw::{call, eventually};
use remote_core::{remote, ConnectionBuilder, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// The timeout of the held-back call.
const TIMEOUT: Duration = Duration::from_secs(600);

#[remote]
pub trait Held {
    /// Waits until the test lets it go (so its handler is spawned).
    async fn hold(&self) -> Result<(), Error>;
    /// Records the deadline it was given.
    async fn stamp(&self) -> Result<(), Error>;
}

#[derive(Default)]
struct Seen {
    held: AtomicBool,
    go: Notify,
    /// `stamp`'s deadline.
    deadline: Mutex<Option<Instant>>,
}

struct Impl(Arc<Seen>);

#[remote]
impl Held for Impl {
    async fn hold(&self) -> Result<(), Error> {
        self.0.held.store(true, SeqCst);
        self.0.go.notified().await;
        Ok(())
    }
    async fn stamp(&self) -> Result<(), Error> {
        let left = remote_core::remaining().expect("a call's deadline");
        *self.0.deadline.lock().unwrap() = Some(Instant::now() + left);
        Ok(())
    }
}

/// A call held back for output room (a running handler's reply, estimated
/// at `max_frame_len` before any reply, fills the connection's share)
/// whose wait is interrupted by a control message of the reader (here the
/// re-arm and cancel of a call this side makes) just as the room comes:
/// the next turn found room without waiting, so the call's deadline
/// counted from the read that brought it with the first call, before the
/// wait (fails: the deadline was earlier than the end of the wait plus
/// the call's timeout).
#[tokio::test]
async fn a_wait_for_room_cut_short_by_a_control_message_does_not_count() {
    let seen = Arc::new(Seen::default());
    let limits = Limits {
        // A 64 KiB share, and one handler's unknown reply fills it.
        memory_budget: 512 << 10,
        max_frame_len: 64 << 10,
        ..Limits::default()
    };
    let raw::NeverReads {
        r,
        w,
        their_r: _their_r,
        mut their_w,
    } = raw::never_reads().await;
    let conn = ConnectionBuilder::new()
        .limits(limits)
        .serve(Remote::new(Arc::new(Impl(seen.clone())) as Arc<dyn Held>))
        .over(r, w, "held")
        .await
        .unwrap();
    // Both calls in one read: `hold` takes the clock for that read, and
    // `stamp` waits for room behind it.
    let mut frames = call(1, 0, "hold", 600_000, &[0x90]);
    frames.extend(call(2, 0, "stamp", TIMEOUT.as_millis() as u32, &[0x90]));
    their_w.write_all(&frames).await.unwrap();
    assert!(eventually(|| seen.held.load(SeqCst)).await);
    // Time passes while `stamp` waits.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waited_until = Instant::now();
    // On this one thread, in this order: `hold` ends (room), then the
    // reader finds a control message first, ahead of the room.
    seen.go.notify_one();
    {
        let peer = conn.root::<dyn Held>();
        let mut call = std::pin::pin!(peer.stamp());
        assert!(futures_util::poll!(call.as_mut()).is_pending());
    }
    assert!(eventually(|| seen.deadline.lock().unwrap().is_some()).await);
    let deadline = seen.deadline.lock().unwrap().unwrap();
    assert!(
        deadline >= waited_until + TIMEOUT,
        "the call's deadline counted {:?} of the wait for room",
        (waited_until + TIMEOUT) - deadline
    );
}
