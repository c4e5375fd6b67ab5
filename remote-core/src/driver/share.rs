//! Fair shares of the memory budget: when a connection may start its
//! peer's next call.
//!
//! Two things bound what one connection holds (PROTOCOL.md §9):
//!
//! - its queued output may grow up to `max_write_queue` only while less
//!   than half of the shared budget is used; past that, to its *share*,
//!   `max(memory_budget / 8, 64 KiB)`, so a connection (or a few) that
//!   stops reading leaves at least half of the budget to everybody else;
//! - the replies its running handlers may still queue are estimated (the
//!   recent reply size) and counted against the share too, and so are the
//!   call frames of those handlers (the arguments each holds until it
//!   stops, counted at their decoded size: [`DECODED_ITEM`] per item on
//!   top of the frame): a call is not started while `queued + running handlers ×
//!   estimate + their frames` reaches the share, so pipelined calls to a
//!   slow handler can neither queue replies nor hold arguments without
//!   bound. One handler may always run, if its arguments are light.
//!   The arguments of a running handler count in the memory budget too,
//!   so past it a connection that holds anything starts nothing more; and
//!   a *heavy* call, one whose arguments count more than [`SMALL_FRAME`]
//!   ([`heavy_call_weight`]), waits for room in the budget for all of them
//!   before it starts (`Input::next`), first come first served, the first
//!   in line having its room held back from everybody else
//!   ([`Budget::line_up`]); one heavier than the whole budget is refused.
//!   This whatever its connection holds: otherwise every
//!   connection could run one, and `n` connections each running a 1 MiB
//!   call of empty strings held `n` × 32 MiB (4 held 128 MiB against the
//!   64 MiB budget, found by a red-team pass). (Before the frames counted, 128
//!   calls with 1 MiB of arguments each to a handler that awaits held
//!   128 MiB per connection outside every bound but `max_calls_in_flight ×
//!   max_frame_len`: 4 GiB from one peer address, tests/attack_wire7.rs.)
//!
//! **The bound.** A reply never exceeds `max_frame_len` (a larger one is
//! refused with `limit_exceeded`), so until a connection's first reply the
//! estimate *is* `max_frame_len`: the handlers started before anything is
//! known are those whose replies fit in the share whatever they return
//! (`share / max_frame_len` of them, 8 at the defaults, at least one).
//! From then on, while replies are no larger than the estimate (the
//! largest recent one), a call starts only if `queued + running × estimate
//! < share` (or none runs and less than the share is queued), so past
//! half of the budget, once all of them have replied, the queue holds
//! less than `share + estimate`: at most one reply over the share per
//! connection. (The estimate used to start at a 64 KiB
//! guess: four connections that pipelined calls returning 256 KiB each
//! started eight handlers before their first reply, 2 MiB each against a
//! 512 KiB share, and whether the budget held depended on how much of it
//! the writers had got into the sockets: attack_flood's peak was 8.9 MB
//! over unix sockets, against 6.2 MB allowed.) What a connection holds may
//! exceed the share only by what the estimate misses: a peer that makes
//! calls with small replies, then many calls whose replies are full
//! frames at once, adds at most `running × max_frame_len` (PROTOCOL.md
//! §9).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::budget::{Budget, OwnRoom, SMALL_FRAME};
use crate::proto::{ArgsWalk, Message};
use crate::Limits;

/// What each item of a running handler's arguments (an element of an
/// array, a key or a value of a map: [`Reader::items`]) is counted at,
/// on top of the call frame's bytes. The handler holds its arguments
/// decoded, and an item of one byte on the wire (an empty string, a
/// `nil`, a small integer) takes the size of its Rust type in memory,
/// plus the slack of the collection it is in: 24 bytes for a `String` or
/// a `Vec`, up to twice that while a `Vec` grows (serde preallocates a
/// bounded number of elements, then doubles). Counted at the frame's
/// length only, 8 calls of 1 MiB of empty strings to a handler that
/// awaits held 257 MiB (found by a red-team pass). What a type whose
/// items are larger still (an `Option` of a large array, say) takes
/// beyond this comes from the budget as it decodes (`codec/weigh.rs`).
/// A reference counts as five items
/// (`proto::msg::REF_ITEMS`).
///
/// [`Reader::items`]: crate::proto::Reader::items
pub(crate) const DECODED_ITEM: usize = 48;

/// What a call's arguments count against the share while its handler
/// runs: the frame's `frame_len` bytes and [`DECODED_ITEM`] per item.
/// Capped so that the sum over running handlers (more are admitted only
/// below the share) cannot overflow on a 32-bit target.
pub(crate) fn args_weight(frame_len: usize, items: u32) -> usize {
    frame_len
        .saturating_add((items as usize).saturating_mul(DECODED_ITEM))
        .min(usize::MAX / 4)
}

/// What the reader counted in the budget for the arguments of the call it
/// returned (`Input::received`): a handler that runs on takes the count,
/// and the reader gives back what is left when the frame is handled.
#[derive(Debug, Default)]
pub(crate) struct ArgsCharge {
    /// Bytes counted (0 for a light call).
    pub(crate) bytes: usize,
    /// The weight of a call that could never have room in the budget
    /// (heavier than all of it, or than what the calls waiting for room
    /// behind it leave: `budget::Turn::Never`), refused and not counted.
    pub(crate) over: Option<usize>,
}

/// Call payloads up to this long are light whatever they hold: each item
/// takes a byte at least (a reference, counted as five, takes six), so
/// they weigh ([`args_weight`]) at most [`SMALL_FRAME`].
pub(crate) const LIGHT_LEN: usize = SMALL_FRAME / (1 + DECODED_ITEM);

/// The weight ([`args_weight`]) of the call in `payload` if it is
/// *heavy*: over [`SMALL_FRAME`]. A heavy call starts only once the
/// memory budget has room for its arguments (`Input::next`); a light one
/// is always read by a connection that holds nothing else. `None` for
/// anything else, and for a frame too short to be heavy whatever it holds
/// (every item takes a byte at least), which is not walked: the calls of
/// a busy connection are short.
///
/// The walk itself is returned too (for any call walked, heavy or not), so
/// the parse that handles the frame next does not walk it again.
pub(crate) fn heavy_call_weight(payload: &[u8], limits: &Limits) -> Weighed {
    let none = Weighed {
        weight: None,
        walk: None,
        timeout_ms: 0,
    };
    if payload.len() <= LIGHT_LEN {
        return none;
    }
    let mut refs = Vec::new();
    let msg = match Message::parse(payload, limits, &mut refs) {
        Ok(msg) => msg,
        // Malformed: the reader's handling says why.
        Err(_) => return none,
    };
    let (items, timeout_ms) = match msg {
        Message::Call {
            items, timeout_ms, ..
        }
        | Message::Pipelined {
            items, timeout_ms, ..
        } => (items, timeout_ms),
        _ => return none,
    };
    Weighed {
        weight: Some(args_weight(payload.len(), items)).filter(|&w| w > SMALL_FRAME),
        walk: ArgsWalk::of(payload, &msg, refs),
        timeout_ms,
    }
}

/// What [`heavy_call_weight`] found of a call.
#[derive(Debug)]
pub(crate) struct Weighed {
    /// Its weight if it is heavy.
    pub(crate) weight: Option<usize>,
    /// The walk of its arguments.
    pub(crate) walk: Option<ArgsWalk>,
    /// Its deadline, as the caller sent it (0: not a call).
    pub(crate) timeout_ms: u32,
}

/// The smallest reply estimate: calls with tiny replies run concurrently up
/// to `share / MIN_ESTIMATE` at once (128 at the default budget).
const MIN_ESTIMATE: usize = 4 << 10;

/// One connection's running handlers and reply estimate.
#[derive(Debug)]
pub(crate) struct OutputShare {
    /// Spawned handlers not yet stopped.
    handlers: AtomicUsize,
    /// What the arguments of those handlers hold until each stops: their
    /// frames, and [`DECODED_ITEM`] per item.
    args: AtomicUsize,
    /// Estimated reply size: the largest recent reply, decaying by a quarter
    /// per smaller reply; 0 until the first reply.
    estimate: AtomicUsize,
    /// The estimate until the first reply: `max_frame_len`, the most a
    /// reply can be, so the handlers started before anything is known
    /// cannot queue more than the share between them (see the module doc).
    /// At the defaults (1 MiB frames, 8 MiB share) eight run at once before
    /// the first reply tells us more, enough for a few calls that wait on
    /// each other (or on calls back to the peer).
    unknown: usize,
    /// Wakes this connection's reader waiting for room when its output is
    /// written or a handler stops.
    pub(crate) own: OwnRoom,
    /// Wakes this side's tasks waiting for room to call the peer
    /// (`room.rs`) when the output is written or the connection closes.
    pub(crate) callers: OwnRoom,
}

impl OutputShare {
    /// A connection's share state; `max_frame_len` is the largest reply it
    /// can send.
    pub(crate) fn new(max_frame_len: usize) -> Self {
        OutputShare {
            handlers: AtomicUsize::new(0),
            args: AtomicUsize::new(0),
            estimate: AtomicUsize::new(0),
            unknown: max_frame_len.max(MIN_ESTIMATE),
            own: OwnRoom::default(),
            callers: OwnRoom::default(),
        }
    }

    /// A handler was spawned (it runs on after the call frame is handled)
    /// for a call whose arguments weigh `weight` ([`args_weight`]).
    pub(crate) fn started(&self, weight: usize) {
        self.args.fetch_add(weight, Ordering::AcqRel);
        self.handlers.fetch_add(1, Ordering::AcqRel);
    }

    /// A spawned handler started with arguments of `weight` stopped (the
    /// caller wakes the readers waiting for room, giving its arguments'
    /// bytes back to the budget).
    pub(crate) fn stopped(&self, weight: usize) {
        let _ = self
            .handlers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let _ = self
            .args
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(weight))
            });
    }

    /// A reply of `len` bytes was queued. The first one replaces the
    /// `max_frame_len` placeholder outright.
    pub(crate) fn replied(&self, len: usize) {
        let next = |e: usize| len.max(e - e / 4).max(MIN_ESTIMATE);
        // Replies of a steady size leave the estimate as it is: a load,
        // not a read-modify-write on every reply.
        let e = self.estimate.load(Ordering::Acquire);
        if next(e) != e {
            let _ = self
                .estimate
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| Some(next(e)));
        }
    }

    /// The size each running handler's reply is counted at.
    fn estimate(&self) -> usize {
        match self.estimate.load(Ordering::Acquire) {
            0 => self.unknown,
            e => e,
        }
    }

    /// Whether the peer's next call may start, with `queued` bytes queued
    /// for the peer; `awaited` counts our calls to the peer whose callers
    /// wait for replies (looked at only when the handlers fill the share:
    /// see [`lent`](Self::may_start_as)).
    #[inline]
    pub(crate) fn may_start(
        &self,
        queued: usize,
        max_write_queue: usize,
        budget: &Budget,
        awaited: impl FnOnce() -> usize,
    ) -> bool {
        self.may_start_as(queued, max_write_queue, budget, false, awaited)
    }

    /// [`may_start`](Self::may_start), for the first heavy call in line:
    /// past an exhausted budget too, since what it gathered for itself is
    /// counted as used, and room of its own is what it waits for (a
    /// red-team pass kept one from ever asking for its room, all of it
    /// gathered, while what came on top of the budget kept it exhausted).
    pub(crate) fn may_start_first(
        &self,
        queued: usize,
        max_write_queue: usize,
        budget: &Budget,
        awaited: impl FnOnce() -> usize,
    ) -> bool {
        self.may_start_as(queued, max_write_queue, budget, true, awaited)
    }

    /// The share's rule. **Lent room:** each of our calls to the peer
    /// whose caller waits lends the room of one running handler, which
    /// is then not counted: a handler that calls its caller back, whose
    /// callback calls us again before it answers, waits for a call that
    /// needs room it holds itself. Without the loan, a fresh connection's
    /// share (8 handlers before its first reply) filled with such
    /// handlers deadlocked every one until its deadline (found by a
    /// red-team pass, `tests/nested_callbacks.rs`). What the loan adds is
    /// bounded as the estimate's misses are: at most `max_calls_in_flight`
    /// handlers, each replying at most `max_frame_len` (PROTOCOL.md §9).
    /// It comes from any call of ours the peer leaves unanswered (a
    /// callback, or a call the application makes of its own) and lets any
    /// of the peer's calls start, so before its first reply a connection
    /// may start as many handlers as one whose replies were small (a
    /// red-team pass: 120 at once, 64.6 MiB counted against the 64 MiB
    /// budget, as after one small reply before). A peer can make us call
    /// it where the application calls peers of its own accord (a pub/sub
    /// server's notifications, which a subscriber may leave unanswered),
    /// and a handler may await many calls at once: what such loans add is
    /// that bound too, a known gap (SECURITY.md). Lending only for the
    /// calls made by a handler's own task closed it and was withdrawn: a
    /// handler calling back from a task it spawns and joins, a blocking
    /// method, and a chain through two connections then waited until
    /// their deadlines (a red-team pass). The budget's rule (past it, a
    /// connection holding anything starts nothing more) lends nothing, but
    /// to the first heavy call in line, whose own room counts as used (one
    /// reply more at a time).
    /// Arguments are not lent: handlers waiting on the peer whose
    /// arguments fill the share (32 of 256 KiB at the defaults) still hold
    /// the calls nested under them until their deadlines. A reader waiting
    /// for room re-checks when such a call is written (`Shared::wrote`),
    /// after it was counted.
    #[inline]
    fn may_start_as(
        &self,
        queued: usize,
        max_write_queue: usize,
        budget: &Budget,
        first_in_line: bool,
        awaited: impl FnOnce() -> usize,
    ) -> bool {
        if !queue_has_room(queued, max_write_queue, budget) {
            return false;
        }
        let handlers = self.handlers.load(Ordering::Acquire);
        if queued == 0 && handlers == 0 {
            return true;
        }
        // Past the budget (which counts running handlers' arguments), a
        // connection holding anything starts nothing more.
        if !first_in_line && budget.exhausted() {
            return false;
        }
        let share = share(budget);
        let (estimate, args) = (self.estimate(), self.args.load(Ordering::Acquire));
        // What `running` handlers will queue (their replies, estimated)
        // and what all of them hold meanwhile (their arguments).
        let fits = |running: usize| {
            queued
                .saturating_add(running.saturating_mul(estimate))
                .saturating_add(args)
                < share
        };
        handlers == 0 || fits(handlers) || fits(handlers.saturating_sub(awaited()))
    }
}

/// Whether `queued` bytes of output for one peer leave room for more: under
/// `max_write_queue`, and under the connection's share once half of the
/// budget is used. Calls wait for it ([`OutputShare::may_start`]); output
/// caused by frames that are read whatever the queue holds (an
/// invalidation's acknowledgement) is skipped without it, so a peer that
/// floods such frames and reads nothing cannot grow its queue past it.
pub(crate) fn queue_has_room(queued: usize, max_write_queue: usize, budget: &Budget) -> bool {
    queued < max_write_queue && (queued < share(budget) || budget.used() < budget.limit() / 2)
}

/// One connection's share of the budget: an eighth, at least a small frame.
pub(crate) fn share(budget: &Budget) -> usize {
    (budget.limit() / 8).max(SMALL_FRAME)
}

#[cfg(test)]
#[path = "share_tests.rs"]
mod tests;
