//! What a *heavy* reply to one of our calls holds decoded counts in the
//! memory budget, as a heavy call's arguments do (PROTOCOL.md §9).
//!
//! A reply is read like any frame (a large one reserving its length while
//! it arrives), and was then decoded outside the budget: an item of one
//! byte on the wire (an empty string) takes 24 bytes or more decoded. A
//! red-team pass answered a server's callbacks, and its pulls of a
//! `RemoteStream` a client passed in (the toolkit's upload), with 1 MiB
//! frames of a million empty strings: one connection made the server hold
//! 1 GB against a 16 MiB budget, 1.1 MB of it counted.
//!
//! Now a reply that weighs more than [`HEAVY_REPLY`] (4 KiB;
//! `share::args_weight`: its frame and `DECODED_ITEM` per item) is
//! *heavy*. One weighing at most [`SMALL_FRAME`] (64 KiB) is counted whole
//! on delivery and decoded at once if the budget has room for it, or
//! whatever the room if no other such reply of its connection is held
//! (made to wait for room, an ordinary reply of 100 numbers waited to its
//! deadline while the budget was full; counted whatever the room, each,
//! 128 held by a connection's handlers pushed the budget 8 MB over: two
//! red-team passes). Otherwise, and if heavier, it has its frame counted
//! on delivery ([`weigh`]); its caller then waits, in its own task (never
//! the reader's: replies keep flowing), until the rest of the weight has
//! room in the budget, until its deadline at most ([`room`]), and decodes
//! it only then. One heavier than the budget can ever hold fails at once
//! with `limit_exceeded` naming `memory_budget`, undecoded.
//! What is counted ([`Charged`]) stays counted while the value is held:
//!
//! - decoded in a method handler (its first poll, then its task; or a
//!   blocking handler's or closure's thread), until the handler ends or
//!   moves on: a reply to a call it started after this one was decoded
//!   lets it go (`held.rs`; kept for every one, a handler that asked a
//!   callback for 4.9 MB three times over held an 8 MiB budget whole);
//! - a batch of a `RemoteStream`, until its items have all been taken;
//! - anywhere else (a task of the application's own, even one a handler
//!   spawned), until it is decoded: what it keeps is its own memory.
//!
//! An error's data is weighed too (a typed error is decoded from it), and
//! a reply whose items weigh much more than its bytes is never cached (a
//! hit would be decoded with only the cache's bytes counted).
//!
//! What a reply's items take decoded beyond the `DECODED_ITEM` each was
//! counted at is weighed as it decodes, by the caller's types, as a
//! call's arguments are (`codec/weigh.rs`; [`decoded`]): light or heavy,
//! a reply with items other than its references decodes through the
//! weighing deserializer, and what that takes is held with the reply's
//! count (counted at `DECODED_ITEM` an item, 4 handlers each holding a
//! reply of 200,000 `nil`s as `Option<[u64; 32]>` held 268 MB against a
//! 64 MiB budget, red-team pass 47). Nothing of it is taken whatever the
//! room. A decode the budget has no room for stops; a reply holding no
//! reference then waits for room, holding only its frame, and is decoded
//! again ([`retried`]); other replies fail their call with
//! `limit_exceeded`.
//!
//! Light replies, the usual kind, are neither weighed twice nor counted:
//! a handler holds at most [`HEAVY_REPLY`] of each uncounted. (The bound
//! was 64 KiB, and replies of at most 1 KiB on the wire were not weighed
//! at all, though 1,000 empty strings in one take 24 KB decoded: 128
//! handlers of a connection each holding one held about 4 MB uncounted,
//! a red-team pass.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::budget::{Budget, Ticket, Turn, SMALL_FRAME};
use super::control::Incoming;
use super::share::args_weight;
use super::shared::Shared;
use crate::rt::time::Instant;
use crate::Error;

/// A reply weighing more than this decoded is heavy: counted in the
/// memory budget while it is held (module doc). Above what an ordinary
/// small reply weighs (a 1 KiB byte string, say), so those cost nothing
/// more.
pub(crate) const HEAVY_REPLY: usize = 4 << 10;

/// Bytes counted in a memory budget until dropped.
#[derive(Debug)]
pub(crate) struct Charged {
    budget: Arc<Budget>,
    n: usize,
    /// Its connection's `over_room`, if counted whatever the room: clear
    /// once dropped.
    over: Option<Arc<AtomicBool>>,
}

impl Charged {
    /// Counts `n` bytes in `budget`, whatever its room.
    fn new(budget: &Arc<Budget>, n: usize) -> Self {
        budget.charge(n);
        Charged {
            budget: budget.clone(),
            n,
            over: None,
        }
    }

    /// Counts `n` bytes if `shared`'s budget has room, or whatever the
    /// room if no other reply of its connection counted so is held.
    fn at_once(shared: &Shared, n: usize) -> Option<Self> {
        let budget = &shared.budget;
        if budget.try_charge(n) {
            return Some(Charged {
                budget: budget.clone(),
                n,
                over: None,
            });
        }
        let free = shared
            .over_room
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        free.then(|| {
            let mut charged = Charged::new(budget, n);
            charged.over = Some(shared.over_room.clone());
            charged
        })
    }

    /// `n` bytes counted in `budget` if it has room for them.
    pub(crate) fn if_room(budget: &Arc<Budget>, n: usize) -> Option<Self> {
        budget.try_charge(n).then(|| Charged::taken(budget, n))
    }

    /// Bytes already counted in `budget` (by a weighed decode), held from
    /// now on.
    fn taken(budget: &Arc<Budget>, n: usize) -> Self {
        Charged {
            budget: budget.clone(),
            n,
            over: None,
        }
    }

    /// Holds `other`'s count with its own (given back together).
    pub(crate) fn absorb(&mut self, mut other: Charged) {
        self.n += std::mem::take(&mut other.n);
    }

    /// Gives back all but `n` of its count.
    fn keep_only(&mut self, n: usize) {
        if self.n > n {
            self.budget.release(self.n - n);
            self.n = n;
        }
    }
}

/// Whether a reply's value, `value` (its encoding), may hold a collection,
/// so that it is decoded weighed by its types ([`decoded`]): it is an
/// array or a map. Unlike a call's arguments, whose array is a tuple, a
/// flat array at the top of a reply may be a collection itself (15
/// `nil`s as a `Vec` of large options). A scalar, a byte or text string
/// or a lone reference (the trivial call's reply, a capability) is
/// spared the weighing's scope.
#[inline]
pub(crate) fn may_hold_collections(value: &[u8]) -> bool {
    value
        .first()
        .is_some_and(|&b| matches!(b, 0x80..=0x9f | 0xdc..=0xdf))
}

/// How a weighed decode of a reply that may be decoded again ended
/// ([`decoded`]).
pub(crate) enum Decoded<R> {
    /// Decoded: its output, and what its types took from the budget, to
    /// hold for as long as the value is held.
    Done(R, Option<Charged>),
    /// Stopped: `limit_exceeded`.
    Refused(Error),
    /// Stopped for the budget's room: it would hold at least this much
    /// beyond its items' count. Decode it again once there is room
    /// ([`retried`]).
    Short(usize),
}

/// Runs `decode` (a reply's to a call of `method`, holding no reference)
/// with what it decodes weighed by its types against `shared`'s budget, as
/// a call's arguments are (`codec/weigh.rs`): an element that takes more
/// decoded than the `DECODED_ITEM` its item was counted at takes the rest
/// from the budget, the first `prepaid` bytes of it counted by the caller
/// already. Nothing is taken whatever the room ([`weighed_reply`]). A
/// decode the budget has no room for is [`Decoded::Short`]; one stopped by
/// serde's buffered types' bounds is refused with `limit_exceeded`; the
/// value is dropped as soon as the decode stops.
///
/// Counted at their frame and `DECODED_ITEM` per item, the replies to a
/// server's callbacks held several times its budget: 4 handlers each
/// holding a reply of 200,000 `nil`s as `Option<[u64; 32]>`, 800 KB sent,
/// held 268 MB against 39 MB counted (red-team pass 47). Refused at once
/// where the budget had no room, honest replies that each fitted refused
/// one another (a review: 15 of 20 calls of 6 MB each, 4 at a time on a
/// 16 MiB budget).
///
/// [`weighed_reply`]: crate::codec::weigh::weighed_reply
pub(crate) fn decoded<R>(
    shared: &Arc<Shared>,
    method: &str,
    prepaid: usize,
    decode: impl FnOnce() -> R,
) -> Decoded<R> {
    match weighed_decode(shared, prepaid, decode) {
        Ok((out, held)) => Decoded::Done(out, held),
        Err(taken) if taken.stop == Some(crate::codec::weigh::Stop::Budget) => {
            Decoded::Short(taken.wanted)
        }
        Err(taken) => Decoded::Refused(refusal(shared, method, &taken)),
    }
}

/// [`decoded`] for a decode that is not tried again (a reply holding
/// references, a typed error's data, a cached hit), if `weigh`: one the
/// budget has no room for is refused too.
pub(crate) fn decoded_once<R>(
    shared: &Arc<Shared>,
    method: &str,
    weigh: bool,
    decode: impl FnOnce() -> R,
) -> Result<(R, Option<Charged>), Error> {
    if !weigh {
        return Ok((decode(), None));
    }
    weighed_decode(shared, 0, decode).map_err(|taken| refusal(shared, method, &taken))
}

/// The weighed run of `decode` ([`decoded`]): its output and count, or,
/// stopped, what the weighing saw (what it took is given back, and the
/// output dropped). Not weighed where a decode around it is already.
fn weighed_decode<R>(
    shared: &Arc<Shared>,
    prepaid: usize,
    decode: impl FnOnce() -> R,
) -> Result<(R, Option<Charged>), crate::codec::weigh::Taken> {
    if crate::codec::weigh::active() {
        return Ok((decode(), None));
    }
    let (out, taken) = crate::codec::weigh::weighed_reply(shared, prepaid, decode);
    if taken.refused() {
        drop(out);
        shared.budget.release(taken.bytes);
        return Err(taken);
    }
    let held = (taken.bytes > 0).then(|| Charged::taken(&shared.budget, taken.bytes));
    Ok((out, held))
}

/// The `limit_exceeded` of a reply to `method` whose decode was stopped.
fn refusal(shared: &Shared, method: &str, taken: &crate::codec::weigh::Taken) -> Error {
    let limit = crate::codec::weigh::refusal_limit(taken);
    let what = format!("the reply to {}", crate::bounded::quote(method));
    let text = crate::codec::weigh::refusal_text(&what, None, taken);
    shared.meter.limit_hit(limit, &text);
    let value = crate::codec::weigh::refusal_value(taken, shared.budget.limit());
    Error::limit(limit, value, text)
}

/// Holds `held`, the count of a value just decoded (a reply to a call
/// started at `since`: `held::hold`), for as long as what decoded it may
/// hold the value.
#[inline]
pub(crate) fn hold(held: Option<Charged>, since: u64) {
    if let Some(held) = held {
        hold_counted(held, since);
    }
}

#[cold]
fn hold_counted(held: Charged, since: u64) {
    let counted = (held.n, Arc::as_ptr(&held.budget) as usize);
    crate::held::hold(Box::new(held), counted, since);
}

/// The typed error `E` of a pipelined call's failure, `remote`, decoded
/// from its data weighed ([`decoded_once`]) and its count held as a
/// reply's is; `limit_exceeded` if its decode was stopped.
pub(crate) fn typed_error<E: crate::RemoteErrorType>(
    shared: &Arc<Shared>,
    remote: crate::RemoteError,
) -> E {
    let weigh = remote.data.is_some();
    let since = crate::held::since_now();
    match decoded_once(shared, "a pipelined call", weigh, || E::from_remote(remote)) {
        Ok((e, held)) => {
            hold(held, since);
            e
        }
        Err(refused) => E::from_error(refused),
    }
}

/// A [`Peer`](crate::Peer)'s way to count what is held for it between its
/// calls (a stream's item kept for its next pull, `Peer::try_hold`): `n`
/// bytes, counted in its connection's budget if that has room, within the
/// budget's pool of held items (`Budget::held`: an eighth of it, for every
/// connection counting in it) and its part for `peer`'s address (a quarter
/// of that). `Err` with the bound it would pass otherwise. (Counted per
/// connection only, nine connections of one address held the whole budget
/// for as long as they kept their streams: red-team pass 25.)
pub(crate) fn hold_fn(budget: &Arc<Budget>, peer: &str) -> crate::peer::HoldFn {
    let budget = budget.clone();
    let share = Arc::new(budget.held.share(crate::per_peer::peer_key(peer)));
    Arc::new(move |n| {
        share.take_n(0, n).map_err(|e| match e {
            crate::proto::TableError::PeerFull(max) | crate::proto::TableError::PoolFull(max) => {
                max
            }
            _ => budget.limit() / 8,
        })?;
        if !budget.try_charge(n) {
            share.give(n);
            return Err(budget.limit() / 8);
        }
        Ok(Box::new(HeldFor {
            charged: Charged {
                budget: budget.clone(),
                n,
                over: None,
            },
            share: share.clone(),
        }) as Box<dyn Send>)
    })
}

/// Bytes held for a peer between its calls ([`hold_fn`]): counted in the
/// budget and its pool of held items until dropped.
struct HeldFor {
    charged: Charged,
    share: Arc<crate::proto::PoolShare>,
}

impl Drop for HeldFor {
    fn drop(&mut self) {
        self.share.give(self.charged.n);
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.budget.release(self.n);
        if let Some(over) = self.over.take() {
            over.store(false, Ordering::Release);
        }
    }
}

/// A heavy reply on its way to its caller: its frame counted, and what it
/// weighs decoded beyond the frame, to be counted before it is decoded.
#[derive(Debug)]
pub(crate) struct Heavy {
    charged: Charged,
    more: usize,
    /// Whether a large `Bytes` value decoded from it may share its frame
    /// (`codec/shared_bytes.rs`): only a frame over 16 KiB may, so only a
    /// heavy reply, and the flag waits here rather than making every
    /// reply (`Incoming`, moved through the reply table) larger.
    pub(crate) shareable: bool,
    /// Whether it waits for room in the heavy calls' line ([`room`]): a
    /// reply decoded again does not ([`retried`]).
    in_line: bool,
}

impl Heavy {
    /// Whether its items count more than [`SMALL_FRAME`] beyond its frame:
    /// decoded, it may take many times what its bytes do (a cache, which
    /// counts the bytes, must not keep it).
    pub(crate) fn amplifies(&self) -> bool {
        self.more > SMALL_FRAME
    }

    /// What it weighs in all: its frame and items (`share::args_weight`).
    pub(crate) fn weight(&self) -> usize {
        self.charged.n.saturating_add(self.more)
    }

    /// Its count, if it is counted whole already (at most
    /// [`SMALL_FRAME`]: decoded at once); `Err` with itself if its caller
    /// must wait for room ([`weighed`]).
    pub(crate) fn counted(self: Box<Self>) -> Result<Charged, Box<Self>> {
        if self.more == 0 {
            Ok(self.charged)
        } else {
            Err(self)
        }
    }
}

/// On a reply's delivery (the reader): `None` if it is light; otherwise
/// its frame (`frame_len` bytes) counted from now on, and the rest of its
/// weight to wait for ([`room`]).
#[inline]
pub(crate) fn weigh(
    shared: &Shared,
    frame_len: usize,
    items: u32,
    shareable: bool,
) -> Option<Box<Heavy>> {
    let weight = args_weight(frame_len, items);
    if weight <= HEAVY_REPLY {
        return None;
    }
    weigh_heavy(shared, frame_len, weight, shareable)
}

#[cold]
fn weigh_heavy(
    shared: &Shared,
    frame_len: usize,
    weight: usize,
    shareable: bool,
) -> Option<Box<Heavy>> {
    // Counted whole at once if it may be.
    if weight <= SMALL_FRAME {
        if let Some(charged) = Charged::at_once(shared, weight) {
            return Some(Box::new(Heavy {
                charged,
                more: 0,
                shareable,
                in_line: true,
            }));
        }
    }
    let now = frame_len.min(weight);
    Some(Box::new(Heavy {
        charged: Charged::new(&shared.budget, now),
        more: weight - now,
        shareable,
        in_line: true,
    }))
}

/// A heavy reply once it has room in the budget (or the error if none
/// came), with what its decode is to know.
pub(crate) struct Weighed {
    pub(crate) inc: Incoming,
    /// Its count (its frame and items, and what a try before found its
    /// types take: `prepaid`).
    pub(crate) counted: Result<Charged, Error>,
    /// Whether a large `Bytes` value may share its frame ([`Heavy`]).
    pub(crate) shareable: bool,
    /// What of `counted` its decode may take without asking the budget
    /// (room waited for after a try found none, [`retried`]).
    pub(crate) prepaid: usize,
    /// The call's deadline: waits for room end there.
    pub(crate) deadline: Instant,
    /// Where the call started among decodes (`held::since_now`).
    pub(crate) since: u64,
}

/// The caller's wait for room for the heavy reply `inc`, weighing
/// `heavy` (taken out of it), until the call's `deadline` at most
/// ([`room`]).
#[cold]
pub(crate) fn weighed(
    shared: &Arc<Shared>,
    inc: Incoming,
    heavy: Box<Heavy>,
    (deadline, since): (Instant, u64),
) -> crate::BoxFuture<'static, Weighed> {
    wait_for(shared.clone(), inc, heavy, 0, (deadline, since))
}

/// The caller's wait for room for the reply `inc` whose decode found the
/// budget short ([`Decoded::Short`]): it would hold at least `wanted`
/// beyond its items' count, of which `prepaid` was counted already (in
/// `counted`, with its frame and items if heavy). It waits for room for a
/// quarter more than `wanted` (no more than could ever fit), until
/// `deadline` at most, then decodes again.
#[cold]
pub(crate) fn retried(
    shared: &Arc<Shared>,
    inc: Incoming,
    counted: Option<Charged>,
    (prepaid, wanted): (usize, usize),
    shareable: bool,
    (deadline, since): (Instant, u64),
) -> crate::BoxFuture<'static, Weighed> {
    let mut charged = counted.unwrap_or_else(|| Charged::new(&shared.budget, 0));
    let items = charged.n.saturating_sub(prepaid);
    // A quarter more than it would have held where it stopped (more than
    // what it had, so a reply short again and again waits a few times
    // only), but no more than could ever fit beside its items' count
    // (`room` refuses what wants more than that). Twice what it had was
    // too much: a reply that had nearly all it needed asked for room it
    // could not have beside the replies waiting in line.
    let most = shared.budget.most_for_the_line().saturating_sub(items);
    let next = wanted
        .saturating_add(wanted / 4)
        .max(SMALL_FRAME)
        .min(most)
        .max(wanted);
    // While it waits it holds its frame, not what its items and types
    // were counted at (nothing is decoded): counted whole, the replies
    // waiting in line held room none of them could use, and each found it
    // could never fit beside them.
    let frame = inc.frame.len().min(items);
    charged.keep_only(frame);
    let heavy = Box::new(Heavy {
        charged,
        more: (items - frame).saturating_add(next),
        shareable,
        in_line: false,
    });
    wait_for(shared.clone(), inc, heavy, next, (deadline, since))
}

fn wait_for(
    shared: Arc<Shared>,
    inc: Incoming,
    heavy: Box<Heavy>,
    prepaid: usize,
    (deadline, since): (Instant, u64),
) -> crate::BoxFuture<'static, Weighed> {
    Box::pin(async move {
        // The caller lets go of the replies it moved on from.
        crate::held::let_go(since);
        let shareable = heavy.shareable;
        let counted = room(shared, heavy, deadline).await;
        Weighed {
            inc,
            counted,
            shareable,
            prepaid,
            deadline,
            since,
        }
    })
}

/// The caller of a heavy reply waits until the rest of its weight fits in
/// the budget, then holds the whole weight counted. If it does not fit
/// now, it lines up with the heavy calls waiting for room
/// ([`Budget::line_up`]), first come first served, holding its frame:
/// the first in line gathers what is given back, so replies (or calls)
/// that each hold part of the budget do not starve each other. Fails with
/// `limit_exceeded` (`memory_budget`) if it never could fit (beside what
/// the line holds), or if no room came by `deadline`: the reply is then
/// dropped undecoded, and so is its count.
async fn room(shared: Arc<Shared>, heavy: Box<Heavy>, deadline: Instant) -> Result<Charged, Error> {
    let Heavy {
        mut charged,
        more,
        in_line,
        ..
    } = *heavy;
    let budget = &shared.budget;
    let weight = charged.n + more;
    let refused = |why: &str| {
        let limit = budget.limit();
        let detail = format!(
            "a reply weighing {weight} bytes decoded (its frame, and {} per item) {why}",
            super::share::DECODED_ITEM
        );
        shared.meter.limit_hit("memory_budget", &detail);
        Error::limit("memory_budget", limit as u64, detail)
    };
    if weight > budget.most_for_the_line() {
        return Err(refused("could never fit in it"));
    }
    // Nor beside what its caller holds of replies to calls it awaits
    // with this one (`held.rs`), which it would wait for to its deadline:
    // refused now.
    let own = crate::held::own_bytes(Arc::as_ptr(budget) as usize);
    if own > 0 && weight.saturating_add(own) > budget.most_for_the_line() {
        return Err(refused(&format!(
            "could never fit in it beside the {own} bytes its caller holds of replies to \
             calls awaited with it"
        )));
    }
    if !budget.try_charge(more) {
        if in_line {
            line_up(&shared, more, charged.n, deadline)
                .await
                .map_err(&refused)?;
        } else {
            // A reply decoded again waits outside the line, taking room
            // as it comes, after the heavy calls in line: first in line, it
            // held back every byte given back, for room that beside what
            // its own caller holds (a handler's arguments) it might never
            // have, and every heavy call waited behind it to its deadline
            // (a review).
            let wait = budget.wait_until(&shared.output_share.own, || budget.try_charge(more));
            let late = crate::rt::time::sleep_until(deadline);
            tokio::select! {
                biased;
                () = wait => {}
                () = late => return Err(refused("found no room in it before the call's deadline")),
            }
        }
    }
    charged.n += more;
    Ok(charged)
}

/// [`room`]'s wait in the heavy calls' line for `more` bytes, holding
/// `held`: `Err` with why it never had them (its deadline passed, or it
/// could never fit beside what waits in line).
async fn line_up(
    shared: &Shared,
    more: usize,
    held: usize,
    deadline: Instant,
) -> Result<(), &'static str> {
    let budget = &shared.budget;
    let mut line = InLine {
        budget,
        ticket: Some(budget.line_up(more, held)),
    };
    let mut turn = Turn::Wait;
    let wait = budget.wait_until(&shared.output_share.own, || {
        turn = line
            .ticket
            .as_ref()
            .map_or(Turn::Never, |t| budget.try_charge_first(t, more));
        turn != Turn::Wait
    });
    let late = crate::rt::time::sleep_until(deadline);
    tokio::select! {
        biased;
        () = wait => {}
        () = late => return Err("found no room in it before the call's deadline"),
    }
    // Out of the line either way (`try_charge_first`).
    line.ticket = None;
    if turn == Turn::Never {
        return Err("could never fit in it beside what waits in line");
    }
    Ok(())
}

/// A heavy reply's place in the line for room: left if its wait ends
/// otherwise (its deadline passed, or its caller gave up).
struct InLine<'a> {
    budget: &'a Budget,
    ticket: Option<Ticket>,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.budget.leave(t);
        }
    }
}
