//! Bounds what tungstenite buffers of a WebSocket message: it reserves a
//! frame's whole announced length as soon as it parses the frame's
//! header, and keeps a partial message (up to its `max_message_size`, one
//! full frame) where the frame reader and its memory budget do not see
//! it, so a server stream is metered, each frame counted before
//! tungstenite sees its header (`ws_scan.rs` holds back the header's last
//! byte until it is).
//!
//! - Until the driver says the connection is open (the handshake and
//!   authentication done, [`Meter::lift`]) at most
//!   `max_handshake_frame_len` plus a WebSocket header is read past what
//!   was delivered, and a frame announcing more than that is not handed
//!   on (PROTOCOL.md §1.1). Before the hello such a read or frame is
//!   refused; after it, it waits for the connection to open (a client may
//!   send a large call right behind its hello). A red-team pass found the
//!   bound lifted by the hello itself: a peer with no key sent a hello
//!   offering credentials, then all but a byte of a 1 MiB message, held
//!   until `handshake_timeout` outside the budget on every connection.
//! - Once open, the data frames tungstenite holds (their announced
//!   lengths, less the messages delivered) count in the memory budget, as
//!   the frame reader counts a partial frame: up to [`SMALL_FRAME`]
//!   whatever the budget holds, past that only with room, the frame
//!   waiting for it, the socket watched meanwhile ([`Metered::watch`]).
//!   (They were counted nowhere: peers sending all but the last byte of a
//!   message on each connection held `max_connections × max_frame_len`,
//!   1 GiB at the defaults.) The frames of a message in several frames
//!   count twice (tungstenite gathers them in a buffer that grows by
//!   doubling), all on the first, as the protocol's length prefix at its
//!   start tells the message's length ([`Meter::count`]). A control frame over 125 bytes is refused from its header
//!   (RFC 6455 §5.5; tungstenite would reserve its length first).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::task::AtomicWaker;

use super::ws_scan::Head;
use crate::driver::io_types::{refusal, Gathering, OwnRoom, SMALL_FRAME};
use crate::driver::Budget;

#[path = "ws_metered.rs"]
mod metered;
pub(crate) use metered::fuzz::ws_scan as fuzz_ws_scan;
pub(crate) use metered::{discard, Metered};

/// A WebSocket frame header: 2 bytes, 8 of extended length, 4 of mask.
const WS_HEADER: usize = 14;

/// What the HTTP upgrade request may take: a browser sends the site's
/// cookies with it (a request of a few KB was refused by the 4 KiB bound
/// of the first message, with a reset instead of an HTTP error: found by a
/// red-team pass). tungstenite reads it into a buffer of its own.
const UPGRADE_MAX: usize = 16 << 10;

/// What one read takes past the payload under way: bytes read past a
/// header held back wait in [`Metered`] (at most this many).
const READ_AHEAD: usize = 8 << 10;

/// The longest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// Bytes read from the socket and delivered in messages, shared by the
/// metered stream and the WebSocket reader above it.
#[derive(Debug)]
pub(crate) struct Meter {
    read: AtomicUsize,
    /// Read before the upgrade completed (HTTP) is not a message.
    baseline: AtomicUsize,
    /// Whether the upgrade completed: until then the request is bounded
    /// by [`UPGRADE_MAX`].
    upgraded: AtomicBool,
    delivered: AtomicUsize,
    /// The bytes handed on that tungstenite does not keep: frame headers,
    /// and control frames whole (for the bound before the opening only: a
    /// data frame's count must not shrink by them, or pongs between the
    /// fragments of a message let its fragments past uncounted, found by
    /// a red-team pass).
    unheld: AtomicUsize,
    /// Whether the first message (the hello) has been delivered: reading
    /// past the bound waits from then on instead of failing.
    hello: AtomicBool,
    /// Whether the connection is open: the budget counts from then on.
    lifted: AtomicBool,
    /// The reader waiting for the bound to be lifted.
    waker: AtomicWaker,
    cap: usize,
    /// tungstenite's `max_message_size`: a frame over it is refused from
    /// its header, nothing reserved.
    max_message: u64,
    /// What the data frames handed on count (their announced lengths, a
    /// message in several frames twice).
    announced: AtomicUsize,
    /// What the messages delivered counted.
    released: AtomicUsize,
    /// What each message that ended and is not delivered yet counts (the
    /// frames handed on but not yet parsed, one read's worth at most),
    /// and what the one under way counts so far.
    messages: std::sync::Mutex<Messages>,
    /// The budget the connection counts against, from its opening.
    budget: OnceLock<Arc<Budget>>,
    /// Bytes counted in it for the data frames tungstenite holds.
    charged: AtomicUsize,
    /// The reader's credit (`Shared::read_credit`): what was counted for
    /// the message delivered last, until the reader's reservation for
    /// its frame takes it over or the reader has all of it.
    credit: OnceLock<Arc<AtomicUsize>>,
    /// What a frame waiting for room in the budget waits with (nothing
    /// else of the connection wakes it: room given back anywhere does).
    own: OwnRoom,
    /// Whether tungstenite's buffers are to be replaced (`ws.rs`): the
    /// scan stops at frame ends meanwhile.
    shed: AtomicBool,
    /// [`Scan::rest`] after the last read (`u64::MAX` for `None`).
    rest: AtomicU64,
    /// What the message in fragments under way counted on its first
    /// fragment for the fragments still to come ([`Meter::count`]).
    prepaid: AtomicUsize,
    /// Whether what the peer sent was refused ([`refuse`](Meter::refuse)).
    refused: AtomicBool,
    /// Whether the data frame handed on last did not end its message.
    in_message: AtomicBool,
    /// What the length prefix of the message in fragments under way says
    /// is still to come ([`Meter::outside_its_prefix`]).
    message_left: AtomicU64,
    /// Whether a frame's header waits for room in the budget
    /// ([`Gathering::waits_for_room`]).
    waits: AtomicBool,
}

/// The data messages a [`Meter`] counted, in order.
#[derive(Debug, Default)]
struct Messages {
    current: usize,
    ended: std::collections::VecDeque<usize>,
}

/// Whether a frame's header may be handed on ([`Meter::admit`]).
#[derive(Debug)]
enum Admit {
    Yes,
    /// Not before the connection opens.
    AfterOpening,
    /// Once the budget has room for this many bytes more.
    AfterRoom(usize),
    Refused(io::Error),
    /// Once more bytes are read: the scan needs a first fragment's length
    /// prefix ([`Fed::more`](super::ws_scan::Fed::more)).
    More,
}

impl Meter {
    /// A server stream's meter: `max_message` is the WebSocket message
    /// limit (`max_frame_len + 4`).
    pub(crate) fn new(max_handshake_frame_len: usize, max_message: usize) -> Arc<Self> {
        Arc::new(Meter {
            read: AtomicUsize::new(0),
            baseline: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
            delivered: AtomicUsize::new(0),
            unheld: AtomicUsize::new(0),
            hello: AtomicBool::new(false),
            lifted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            cap: max_handshake_frame_len
                .saturating_add(4)
                .saturating_add(WS_HEADER),
            max_message: max_message as u64,
            announced: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            messages: Default::default(),
            budget: OnceLock::new(),
            charged: AtomicUsize::new(0),
            credit: OnceLock::new(),
            own: OwnRoom::default(),
            shed: AtomicBool::new(false),
            rest: AtomicU64::new(u64::MAX),
            prepaid: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
            in_message: AtomicBool::new(false),
            message_left: AtomicU64::new(0),
            waits: AtomicBool::new(false),
        })
    }

    /// What the peer sent was refused (by the meter or the WebSocket
    /// layer): what it sends from now on is read and dropped, neither
    /// scanned nor counted (`Metered::discard`; scanned and counted, a
    /// red-team pass found refused peers' messages holding the budget, and
    /// their scan costing 14 times the CPU of a plain drain).
    ///
    /// What stays counted is what tungstenite can hold of the messages
    /// under way, twice the data it was handed and did not deliver, not
    /// what their first fragments announced: a peer refused after a first
    /// fragment of 4 bytes announcing 1 MiB held 2 MiB of the budget for
    /// the drain that follows (`Input::drain`, a red-team pass).
    pub(crate) fn refuse(&self) {
        if self.refused.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(budget) = self.budget.get() else {
            return;
        };
        let keep = self
            .data_read()
            .saturating_sub(self.delivered.load(Ordering::Acquire))
            .saturating_mul(2);
        if let Ok(c) = self
            .charged
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > keep).then_some(keep)
            })
        {
            budget.release(c - keep);
        }
    }

    /// The budget the connection counts against, once it is open.
    pub(crate) fn budget(&self) -> Option<&Arc<Budget>> {
        self.budget.get()
    }

    /// Whether tungstenite's buffers are to be replaced.
    pub(crate) fn shed_wanted(&self) -> bool {
        self.shed.load(Ordering::Acquire)
    }

    /// Asks for tungstenite's buffers to be replaced (after a large
    /// message written), or says they were (`false`).
    pub(crate) fn want_shed(&self, want: bool) {
        self.shed.store(want, Ordering::Release);
    }

    /// If tungstenite was handed whole frames only and no message is
    /// under way, the events it reports for them ([`Scan::rest`]).
    pub(crate) fn rest(&self) -> Option<u64> {
        Some(self.rest.load(Ordering::Acquire)).filter(|&r| r != u64::MAX)
    }

    /// The upgrade completed: what was read so far was HTTP.
    pub(crate) fn opened(&self) {
        self.baseline
            .store(self.read.load(Ordering::Acquire), Ordering::Release);
        self.upgraded.store(true, Ordering::Release);
    }

    /// A message of `len` bytes was delivered: what was counted for it
    /// becomes the reader's credit (the reader reads it from here).
    pub(crate) fn delivered(&self, len: usize) {
        self.delivered.fetch_add(len, Ordering::AcqRel);
        let counted = {
            let mut m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
            m.ended.pop_front().unwrap_or(len)
        };
        self.released.fetch_add(counted, Ordering::AcqRel);
        self.hello.store(true, Ordering::Release);
        let (Some(budget), Some(credit)) = (self.budget.get(), self.credit.get()) else {
            return;
        };
        let held = self.held();
        if let Ok(c) = self
            .charged
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > held).then_some(held)
            })
        {
            // The previous message's credit, if the reader did not take
            // it, is given back first: the reader has all of it.
            budget.release(credit.swap(c - held, Ordering::AcqRel));
        }
    }

    /// The reader has all of the message delivered last: what of its
    /// count its reservation did not take over is given back.
    pub(crate) fn drained(&self) {
        if let (Some(budget), Some(credit)) = (self.budget.get(), self.credit.get()) {
            budget.release(credit.swap(0, Ordering::AcqRel));
        }
    }

    /// The connection is open, counting against `budget`, the reader's
    /// reservations taking over from `credit`: the bound is lifted, and
    /// the data frames tungstenite holds (the hello's bound kept them
    /// small) are counted from now.
    pub(crate) fn lift(&self, budget: &Arc<Budget>, credit: &Arc<AtomicUsize>) {
        if self.budget.set(budget.clone()).is_ok() {
            let _ = self.credit.set(credit.clone());
            let held = self.held();
            self.charged.store(held, Ordering::Release);
            budget.charge(held);
        }
        self.lifted.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// What is counted for the data frames tungstenite holds: what their
    /// headers announced less the messages delivered.
    fn held(&self) -> usize {
        self.announced
            .load(Ordering::Acquire)
            .saturating_sub(self.released.load(Ordering::Acquire))
    }

    /// Whether a frame's header may be handed on; if so, its length is
    /// counted (a fragment's twice once the connection is open).
    fn admit(&self, head: Head) -> Admit {
        let len = head.len;
        if head.is_control() {
            return if len <= MAX_CONTROL {
                self.unheld
                    .fetch_add(head.header + len as usize, Ordering::AcqRel);
                Admit::Yes
            } else {
                Admit::Refused(refusal(format!(
                    "protocol violation: a websocket control frame of {len} bytes (at most \
                     {MAX_CONTROL})"
                )))
            };
        }
        // A message starts only after the last one ended, and a
        // continuation only inside one (RFC 6455 §5.4): refused from the
        // header, before it is counted (counted as a new message, the
        // frame waited for room that the message under way held, until
        // the peer was closed for its pace: a red-team pass).
        let opens = head.opcode != 0;
        if opens == self.in_message.load(Ordering::Acquire) {
            return Admit::Refused(refusal(if opens {
                "protocol violation: a new websocket message inside one in fragments"
            } else {
                "protocol violation: a websocket continuation frame outside a message"
            }));
        }
        if let Some(why) = self.outside_its_prefix(head) {
            return Admit::Refused(refusal(why));
        }
        if len > self.max_message {
            // Refused by tungstenite from its header, before it reserves.
            return Admit::Yes;
        }
        let len = len as usize;
        let held = self.held();
        let Some(budget) = self
            .budget
            .get()
            .filter(|_| self.lifted.load(Ordering::Acquire))
        else {
            // A message's first frame is held to the bound by the whole
            // message its prefix says: let through in part, its rest would
            // count as it came once open, its frames waiting for room in
            // the middle of it (a red-team pass: 8 clients whose 900 KiB
            // calls right behind their hellos began with a 2 KiB frame,
            // on a 4 MiB budget, each held part of one and all were closed
            // for their pace). Past the bound after the hello, it waits
            // for the opening and then counts whole.
            let size = match head.message {
                Some(whole) if head.opcode != 0 => usize::try_from(whole).unwrap_or(usize::MAX),
                _ => len,
            };
            return if held.saturating_add(size) <= self.cap {
                self.announce(head, len);
                Admit::Yes
            } else if self.hello.load(Ordering::Acquire) {
                Admit::AfterOpening
            } else {
                Admit::Refused(self.over_handshake())
            };
        };
        let (counted, prepaid) = self.count(head, len);
        // Up to SMALL_FRAME whatever the budget holds, past it with room.
        let charged = self.charged.load(Ordering::Acquire);
        let need = (held + counted).saturating_sub(charged);
        let free = SMALL_FRAME.saturating_sub(charged).min(need);
        let rest = need - free;
        if rest > budget.limit() {
            let what = if head.is_fragment() {
                "a websocket message in fragments, counted twice"
            } else {
                "a websocket frame"
            };
            return Admit::Refused(refusal(format!(
                "limit exceeded: memory_budget = {} ({what}: {counted} bytes from a frame of {len})",
                budget.limit()
            )));
        }
        if rest > 0 && !budget.try_charge(rest) {
            return Admit::AfterRoom(rest);
        }
        budget.charge(free);
        self.charged.fetch_add(need, Ordering::AcqRel);
        self.prepaid.store(prepaid, Ordering::Release);
        self.announce(head, counted);
        Admit::Yes
    }

    /// Why a frame of a message in fragments is refused from its header,
    /// if it is: a message tells its length in its first frame (the
    /// protocol's 4-byte length prefix at its start) and keeps to it, so a
    /// first frame too short to hold the prefix, one holding more than
    /// the prefix says or a prefix over the message limit, and a
    /// continuation past what the prefix said are refused. A message is
    /// then counted whole on its first frame, and no frame after it waits
    /// for room in the budget. (Counted as they came, a message held part
    /// of the budget while a frame of it announced more than was left and
    /// waited for room: a wait that exempted the message from its pace,
    /// so 30 peers held a 16 MiB budget until their idle timeout with 24
    /// bytes each, found by a red-team pass.)
    fn outside_its_prefix(&self, head: Head) -> Option<String> {
        if !head.is_fragment() {
            return None;
        }
        if head.opcode == 0 {
            let left = self.message_left.load(Ordering::Acquire);
            return (head.len > left).then(|| {
                format!(
                    "protocol violation: a websocket message longer than its length prefix says \
                     (a frame of {} bytes with {left} left to come)",
                    head.len
                )
            });
        }
        match head.message {
            None => Some(format!(
                "protocol violation: the first frame of a websocket message in fragments \
                 holds {} bytes, less than the protocol frame's 4-byte length prefix",
                head.len
            )),
            Some(said) if said < head.len => Some(format!(
                "protocol violation: the first frame of a websocket message holds {} bytes, \
                 more than its length prefix says ({said} with the prefix)",
                head.len
            )),
            Some(said) if said > self.max_message => Some(format!(
                "limit exceeded: max_frame_len = {} (a websocket message whose length prefix \
                 says {} bytes)",
                self.max_message.saturating_sub(4),
                said - 4
            )),
            Some(_) => None,
        }
    }

    /// What a data frame of `len` bytes counts once the connection is
    /// open, and what stays counted for its message's fragments to come.
    ///
    /// A message in several frames is gathered in a buffer that grows by
    /// doubling: its frames count twice (a red-team pass measured 16 such
    /// partial messages holding half as much again as counted). The first
    /// fragment counts the whole message (twice), as the protocol's length
    /// prefix at its start tells it, so the fragments after it need no
    /// more room: counted only as they came, clients each held part of a
    /// message while waiting for room the others held, and eight clients
    /// sending 900 KiB calls to a 4 MiB budget all waited until their idle
    /// timeout (a red-team pass). A message whose prefix cannot be
    /// believed is refused from its first frame's header
    /// ([`outside_its_prefix`](Self::outside_its_prefix)).
    fn count(&self, head: Head, len: usize) -> (usize, usize) {
        if !head.is_fragment() {
            return (len, 0);
        }
        let twice = len.saturating_mul(2);
        if head.opcode != 0 {
            let whole = head
                .message
                .filter(|&m| m >= len as u64 && m <= self.max_message)
                .map_or(len, |m| m as usize);
            let counted = whole.saturating_mul(2);
            return (counted, counted - twice);
        }
        let prepaid = self.prepaid.load(Ordering::Acquire);
        let taken = prepaid.min(twice);
        let left = if head.fin { 0 } else { prepaid - taken };
        (twice - taken, left)
    }

    /// A frame counted at `counted` was handed on: what its message
    /// counts is known once it ends, for [`delivered`](Self::delivered).
    fn announce(&self, head: Head, counted: usize) {
        self.in_message.store(!head.fin, Ordering::Release);
        if head.is_fragment() {
            let left = match head.message {
                Some(said) if head.opcode != 0 => said,
                _ => self.message_left.load(Ordering::Acquire),
            };
            self.message_left
                .store(left.saturating_sub(head.len), Ordering::Release);
        }
        self.announced.fetch_add(counted, Ordering::AcqRel);
        self.unheld.fetch_add(head.header, Ordering::AcqRel);
        let mut m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        m.current += counted;
        if head.fin {
            let whole = std::mem::take(&mut m.current);
            m.ended.push_back(whole);
        }
    }

    fn over_handshake(&self) -> io::Error {
        let why = if self.upgraded.load(Ordering::Acquire) {
            format!(
                "limit exceeded: max_handshake_frame_len (a websocket message before the hello \
                 over {} bytes with its header)",
                self.cap
            )
        } else {
            format!("a websocket upgrade request over {UPGRADE_MAX} bytes")
        };
        refusal(why)
    }

    /// Bytes of data frames read since the upgrade: headers and control
    /// frames are counted off as they are handed on (`unheld`).
    fn data_read(&self) -> usize {
        self.read
            .load(Ordering::Acquire)
            .saturating_sub(self.baseline.load(Ordering::Acquire))
            .saturating_sub(self.unheld.load(Ordering::Acquire))
    }

    /// Bytes that may still be read before the connection opens, or `None`
    /// if no bound applies any more.
    fn room(&self) -> Option<usize> {
        if self.lifted.load(Ordering::Acquire) {
            return None;
        }
        let held = self
            .read
            .load(Ordering::Acquire)
            .saturating_sub(self.baseline.load(Ordering::Acquire))
            .saturating_sub(self.delivered.load(Ordering::Acquire))
            .saturating_sub(self.unheld.load(Ordering::Acquire));
        let cap = if self.upgraded.load(Ordering::Acquire) {
            self.cap
        } else {
            UPGRADE_MAX
        };
        Some(cap.saturating_sub(held))
    }
}

impl Gathering for Meter {
    // A message's frames after its first need no room (counted whole on
    // it): a message held is never one waiting for the server.
    fn held(&self) -> usize {
        Meter::held(self)
    }

    fn progress(&self) -> usize {
        self.data_read()
    }

    fn waits_for_room(&self) -> bool {
        self.waits.load(Ordering::Acquire)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Nothing is held any more.
        if let Some(budget) = self.budget.get() {
            let credit = self.credit.get().map_or(0, |c| c.swap(0, Ordering::AcqRel));
            budget.release(*self.charged.get_mut() + credit);
        }
    }
}

#[cfg(test)]
#[path = "ws_meter_tests.rs"]
mod tests;
