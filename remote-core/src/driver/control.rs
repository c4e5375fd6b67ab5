//! What a connection's tasks hand each other: control messages for the
//! reader, replies to our calls, and references held until decoded.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::replies::Deliveries;
use crate::interface::Dispatch;
use crate::proto::{CallId, ImportRefs, ObjectId, ReleaseSink, State};
use crate::{Error, RemoteError};

/// The waiting end of one of our calls: where its outcome goes
/// ([`Answer`]), and its deadline (kept by the connection's timer,
/// [`super::expiry`]).
pub(crate) struct Waiter {
    pub(crate) reply: Answer,
    pub(crate) deadline: crate::rt::time::Instant,
}

/// Where a call's outcome goes.
pub(crate) enum Answer {
    /// A reply slot ([`super::replies`]) its caller waits on.
    Slot(super::replies::Key),
    /// Handed over where it arrives: no task waits for it (a pipelined
    /// call's promise, `promise.rs`).
    To(Arc<dyn OnReply>),
}

/// Takes a call's outcome where it arrives (the reader, the deadline
/// sweep, or the connection's close), never under the `core` lock.
pub(crate) trait OnReply: Send + Sync {
    fn on_reply(self: Arc<Self>, r: Result<Incoming, Error>);
}

impl Waiter {
    /// Hands the call its outcome (`false` if the caller is gone). Never
    /// under the `core` lock: it may drop the outcome.
    pub(crate) fn send(self, shared: &super::Shared, r: Result<Incoming, Error>) -> bool {
        match self.reply {
            Answer::Slot(key) => {
                count_reply(shared);
                shared.replies.deliver(key, Some(r))
            }
            Answer::To(to) => {
                to.on_reply(r);
                true
            }
        }
    }

    /// [`send`](Self::send) from the reader: a caller's reply joins the
    /// reader's [`Deliveries`], handed over when it next waits (or now, if
    /// they are full).
    pub(crate) fn send_later(
        self,
        shared: &super::Shared,
        r: Result<Incoming, Error>,
        later: &mut Deliveries,
    ) {
        match self.reply {
            Answer::Slot(key) => {
                count_reply(shared);
                if !later.batches() {
                    shared.replies.deliver(key, Some(r));
                } else if later.push(key, Some(r)) {
                    shared.replies.deliver_all(later, &shared.peer);
                }
            }
            Answer::To(to) => to.on_reply(r),
        }
    }
}

/// Counts a reply towards `direct.rs`'s burst heuristic. Its writer is the
/// reader task (a deadline's sweep, a close from elsewhere may also count:
/// a lost count only misleads the heuristic), so no atomic
/// read-modify-write per reply.
fn count_reply(shared: &super::Shared) {
    let n = &shared.batch_replies;
    n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}
pub(crate) type Core = State<Arc<dyn Dispatch>, Waiter>;

/// A reply to one of our calls, still encoded.
pub(crate) struct Incoming {
    pub(crate) frame: Bytes,
    pub(crate) result: Result<Range<usize>, Box<RemoteError>>,
    pub(crate) refs: ImportRefs,
    pub(crate) owns: Vec<(ObjectId, Arc<dyn Dispatch>)>,
    /// A heavy value's count in the memory budget (`heavy_reply.rs`).
    /// (Boxed: replies are moved through the reply table, and heavy ones
    /// are rare.)
    pub(crate) heavy: Option<Box<super::heavy_reply::Heavy>>,
}

/// References resolved when a message arrived, held until it is decoded.
#[derive(Default)]
pub(crate) struct Held {
    pub(crate) refs: ImportRefs,
    pub(crate) owns: Vec<(ObjectId, Arc<dyn Dispatch>)>,
}

/// Work queued for the connection task (from `Drop`s and other tasks).
#[derive(Debug)]
pub(crate) enum Control {
    Release {
        id: ObjectId,
        generation: u64,
        count: u32,
    },
    /// Receipts of a live import given back early
    /// ([`ReleaseSink::give_back`]).
    GiveBack {
        id: ObjectId,
        count: u32,
    },
    Cancel {
        id: CallId,
        sent: bool,
    },
    /// A blocking closure of the call running as this sequence number
    /// returned.
    BlockingDone(u64),
    /// A call was made, or a handler spawned, with a deadline earlier than
    /// the deadline timer's: re-arm it (see [`super::expiry`]).
    Rearm,
    /// `Shared::close` was called: stop reading.
    Closed,
    /// The writer kept a spare output buffer (`kept.rs`): the reader
    /// watches the budget while its connection holds one.
    Kept,
    /// The last `Connection` clone or proxy of this side was dropped
    /// (`users.rs`).
    Unused,
}

/// What kind of frame was handled (the idle timer ignores keepalive).
#[derive(Debug)]
pub(crate) enum Heard {
    /// Any message other than keepalive.
    Traffic,
    /// A ping (answered).
    Ping,
    /// A pong with this token.
    Pong(u32),
}

/// Where the releases of imported objects go (from their `Drop`s): sent
/// at once when the connection's core lock is free, else queued for the
/// reader task.
pub(crate) struct CtlSink {
    pub(crate) ctl: super::ctl_queue::CtlTx,
    /// The connection (weak: its core holds this sink).
    pub(crate) shared: std::sync::Weak<super::Shared>,
}

impl ReleaseSink for CtlSink {
    fn release(&self, id: ObjectId, generation: u64, count: u32) {
        if let Some(shared) = self.shared.upgrade() {
            if shared.release_now(id, generation, count) {
                return;
            }
        }
        // Lock-free queue push; the reader sends the frame.
        let _ = self.ctl.send(Control::Release {
            id,
            generation,
            count,
        });
    }

    fn give_back(&self, id: ObjectId, count: u32) {
        // The import table is in the connection's state, whose lock the
        // caller holds: the reader sends the frame.
        let _ = self.ctl.send(Control::GiveBack { id, count });
    }
}
