//! The reader task: handshake, then frames in, control messages, the idle
//! timer, keepalive, and the close sequence.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;

use crate::rt::time::{Instant, Sleep};

use super::control::{Control, Core, Heard};
use super::input::Input;
use super::replies::Deliveries;
use super::shared::Shared;
use crate::fingerprint::RootInfo;
use crate::proto::{encode, Event, FrameError, Keepalive, KeepaliveAction};
use crate::Error;

/// Reads the peer's hello by `deadline` (`handshake_timeout` after the
/// connection began); returns its `auth` slot (checked afterwards by
/// [`crate::auth::exchange`]).
pub(super) async fn handshake(
    shared: &Arc<Shared>,
    input: &mut Input,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, Error> {
    let limit = shared.limits.handshake_timeout;
    let first = match crate::rt::time::timeout_at(deadline, input.next(false)).await {
        Err(_) => {
            let msg = format!("no handshake within handshake_timeout = {limit:?}");
            let _ = shared.send_goodbye(&msg);
            return Err(Error::Handshake(msg));
        }
        Ok(None) => {
            return Err(Error::Handshake(
                "peer closed the connection before the handshake".into(),
            ))
        }
        Ok(Some(Err(FrameError::TooLarge { len, max }))) => {
            let msg =
                format!("handshake frame of {len} bytes exceeds max_handshake_frame_len = {max}");
            let _ = shared.send_goodbye(&msg);
            return Err(Error::Handshake(msg));
        }
        Ok(Some(Err(FrameError::Io(e)))) => {
            return Err(Error::Handshake(format!("i/o error: {e}")))
        }
        Ok(Some(Ok(frame))) => frame,
    };
    input.frame_done();
    // A server refusing us (e.g. over max_connections) says goodbye instead
    // of hello: report its reason.
    let mut found = Vec::new();
    match crate::proto::Message::parse(&first, &shared.limits, &mut found) {
        Ok(crate::proto::Message::Goodbye { reason }) => {
            return Err(Error::Handshake(format!(
                "peer refused the connection: {reason}"
            )));
        }
        // The root it serves, if it says (checked by `Connection::root`).
        Ok(crate::proto::Message::Hello(h)) => {
            if let Some(root) = RootInfo::from_features(h.features.iter().copied()) {
                let _ = shared.peer_root.set(root);
            }
        }
        _ => {}
    }
    let slot = {
        let mut core = shared.core();
        match core.handle_frame(&first) {
            Ok(Event::Opened { auth, .. }) => auth.map(<[u8]>::to_vec),
            Ok(_) => return Err(Error::Handshake("unexpected first message".into())),
            Err(v) => {
                drop(core);
                let _ = shared.send_goodbye(&format!("handshake refused: {v}"));
                return Err(Error::Handshake(v.0));
            }
        }
    };
    Ok(slot)
}

/// Reads until the connection ends, then runs the close sequence: every
/// waiter fails, the writer sends what is queued (the goodbye last) and
/// shuts down its side, and this task reads and discards for a bounded time
/// so the peer's unread frames do not make the kernel reset the connection
/// (which would lose the goodbye).
///
/// However the task ends (even by a panic), the connection closes: the
/// guard is made before the task first runs, so a runtime that shuts down
/// before then, dropping the task unpolled, closes it too (it did not: a
/// caller on another runtime found the connection open for good, found by
/// `pipeline_contended.rs` on a loaded machine).
pub(super) fn read_loop(
    shared: Arc<Shared>,
    input: Input,
    ctl: super::ctl_queue::CtlRx,
) -> impl std::future::Future<Output = ()> {
    read_until_closed(DisconnectOnDrop(shared.clone()), shared, input, ctl)
}

async fn read_until_closed(
    _teardown: DisconnectOnDrop,
    shared: Arc<Shared>,
    mut input: Input,
    mut ctl: super::ctl_queue::CtlRx,
) {
    let limits = shared.limits.clone();
    // A server connection that did not authenticate gets the short idle
    // timeout (PROTOCOL.md §9 says why).
    let (idle, idle_name) = if shared.server_side
        && !shared.is_authenticated()
        && limits.unauthenticated_idle_timeout < limits.idle_timeout
    {
        (
            limits.unauthenticated_idle_timeout,
            "unauthenticated_idle_timeout",
        )
    } else {
        (limits.idle_timeout, "idle_timeout")
    };
    // One timer for the idle check, keepalive and our calls' deadlines
    // (`expiry.rs`), armed at the earliest of them: the hot path polls one
    // `Sleep` per turn and re-arms none per frame. A local close arrives
    // as `Control::Closed`.
    let mut idle_at = super::deadline::after(Instant::now(), idle);
    let mut keepalive = match limits.keepalive_interval {
        Some(every) if shared.core().keepalive_negotiated() => Some(Keepalive::new(
            every,
            limits.keepalive_timeout,
            Instant::now().into_std(),
        )),
        _ => None,
    };
    // Armed when a call is made (`Control::Rearm`).
    let mut deadlines_at: Option<Instant> = None;
    let mut timer_at = earliest(idle_at, keepalive.as_ref(), deadlines_at);
    let timer = crate::rt::time::sleep_until(timer_at);
    tokio::pin!(timer);
    // The timer holds this task's waker from a poll that registered it, and
    // has been neither reset nor fired since: polling it again on every
    // turn that waits would only register the same waker again.
    let mut timer_waits = false;
    // Turns taken since the timer was last looked at.
    let mut unchecked = 0u32;
    // Frames of any kind (liveness) and frames other than keepalive
    // (traffic, for the idle timeout), with their values at the last checks.
    let (mut frames, mut frames_at_ka) = (0u64, 0u64);
    // Bytes read (and gathered by the transport) at the last keepalive
    // check.
    let mut bytes_at_ka = shared.meter.bytes_in();
    let (mut traffic, mut traffic_at_check) = (0u64, 0u64);
    // An unauthenticated server connection's references keep it open only
    // while it has traffic within `idle_timeout` (PROTOCOL.md §9): one free
    // reference must not hold a connection slot for ever.
    let refs_expire = shared.server_side && !shared.is_authenticated();
    let mut quiet_since = Instant::now();
    // Whether the last idle check found the reader waiting for room to
    // read a frame, with no traffic since the one before.
    let mut parked_at_check = false;
    // Resolves once a task starts to wait for room in the budget: looked
    // at while this connection holds a buffer kept for its next large
    // frame, which it then gives back (`kept.rs`).
    let mut pressed = std::pin::pin!(shared.budget.pressed());
    let mut drain = true;
    // Our callers' replies from the frames read since the reader last
    // waited, handed over when it waits, on several workers (`replies.rs`).
    let mut later = HandOver {
        shared: &shared,
        d: Deliveries::new(crate::rt::is_multi_thread(&shared.runtime)),
    };
    let reason = loop {
        let mut keeps = input.kept() > 0 || shared.kept.has_spare();
        if keeps && shared.budget.short() {
            input.shed_kept();
            shared.kept.shed(&shared.budget);
            keeps = false;
        }
        // Input is polled before the timer: while a peer's frames keep
        // coming, the turn's poll never reaches the timer, and deadlines
        // (handlers' and our calls'), keepalive and the idle check would
        // wait for the flood to stop. It is looked at here every few turns.
        unchecked += 1;
        let due = unchecked >= CHECK_TIMER_EVERY && {
            unchecked = 0;
            timer_at <= Instant::now()
        };
        let turn = if due {
            Turn::Timer
        } else {
            // Control messages first, then input, then the timer. The
            // control queue's waker is registered only when the turn waits
            // (a message sent meanwhile is found by its second look), not
            // on every turn as a `select!` over its `recv` would.
            let mut next = std::pin::pin!(input.next(true));
            std::future::poll_fn(|cx| {
                if let Some(c) = ctl.try_recv() {
                    return Poll::Ready(Turn::Ctl(c));
                }
                if let Poll::Ready(item) = next.as_mut().poll(cx) {
                    return Poll::Ready(Turn::Input(item));
                }
                // The input waits (what the frames queued is written):
                // their callers get their replies.
                later.hand_over();
                if !timer_waits || timer.is_elapsed() {
                    let registers = crate::rt::poll_registers();
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Turn::Timer);
                    }
                    timer_waits = registers;
                }
                if keeps && pressed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Turn::Pressed);
                }
                match ctl.poll_recv(cx) {
                    Poll::Ready(Some(c)) => Poll::Ready(Turn::Ctl(c)),
                    _ => Poll::Pending,
                }
            })
            .await
        };
        match turn {
            Turn::Ctl(c) => {
                match c {
                    Control::Closed => break shared.lost(),
                    Control::Rearm => {
                        if let Some(at) = shared.expiry.armed() {
                            deadlines_at = Some(at);
                            timer_at = arm(
                                (timer.as_mut(), &mut timer_waits),
                                earliest(idle_at, keepalive.as_ref(), deadlines_at),
                            );
                        }
                    }
                    // The next turn looks at what the connection keeps.
                    Control::Kept => {}
                    c => shared.handle_ctl(c),
                }
                // Frames queued so far go before this task waits again.
                shared.reader_waits();
            }
            Turn::Input(item) => {
                match item {
                    None => {
                        drain = false;
                        break Error::ConnectionLost("peer closed the connection".into());
                    }
                    Some(Err(FrameError::TooLarge { len, max })) => {
                        let msg = format!("frame of {len} bytes exceeds max_frame_len = {max}");
                        crate::trace::limit_hit("max_frame_len", &msg);
                        let _ = shared.send_goodbye(&msg);
                        break Error::limit(
                            "max_frame_len",
                            max as u64,
                            format!("peer sent a frame of {len} bytes"),
                        );
                    }
                    Some(Err(FrameError::Io(e))) if super::refusal::is_refusal(&e) => {
                        // Refused by the transport (a WebSocket message
                        // over a limit or against the protocol), not
                        // broken: the peer is told why (`refusal.rs`).
                        let msg = e.to_string();
                        let _ = shared.send_goodbye(&msg);
                        break Error::ConnectionLost(format!("read failed: {msg}"));
                    }
                    Some(Err(FrameError::Io(e))) => {
                        drain = false;
                        break Error::ConnectionLost(format!("read failed: {e}"));
                    }
                    Some(Ok(frame)) => {
                        frames += 1;
                        // What this frame's handling queues leaves at the
                        // end of the read batch, written from here.
                        shared.defer_writes();
                        let heard = shared.on_frame(frame, input.received(), &mut later.d);
                        // Not held behind a long run of other frames
                        // either (a peer's calls to inline handlers).
                        if frames % Deliveries::FULL as u64 == 0 {
                            later.hand_over();
                        }
                        input.frame_done();
                        match heard {
                            Ok(Heard::Traffic) => traffic += 1,
                            Ok(Heard::Ping) => {}
                            Ok(Heard::Pong(token)) => {
                                if let Some(k) = keepalive.as_mut() {
                                    k.on_pong(token);
                                }
                            }
                            Err(e) => break e,
                        }
                    }
                }
            }
            Turn::Pressed => {
                // Given back whether or not the budget is still short when
                // looked at: the task that waits may be this reader's own
                // frame, whose mark went with the turn (waiting again, it
                // pressed again: a red-team pass found the reader spinning
                // so, its frame waiting for room its spare held).
                input.shed_kept();
                shared.kept.shed(&shared.budget);
                pressed.set(shared.budget.pressed());
            }
            Turn::Timer => {
                unchecked = 0;
                // A large read buffer kept for the next large frame is not
                // held across idle periods (`Input::keep`).
                input.shed_if_idle();
                later.d.shed();
                shared.kept.shed(&shared.budget);
                let now = Instant::now();
                if deadlines_at.is_some_and(|d| d <= now) {
                    super::expiry::sweep(&shared);
                    deadlines_at = shared.expiry.armed();
                }
                // Held back by our own budgets: the peer is not to blame,
                // by keepalive or by the idle check. (Over WebSocket a
                // first frame's header may wait for room in the transport,
                // as a frame's reservation does here.)
                let gathering = shared.gathering.get();
                let waits = gathering.is_some_and(|g| g.waits_for_room());
                let paused = input.is_paused() || waits;
                if let Some(k) = keepalive
                    .as_mut()
                    .filter(|k| Instant::from_std(k.deadline()) <= now)
                {
                    // A connection we stopped reading (`paused`) may have
                    // answered unseen.
                    //
                    // Bytes of a frame still coming prove the peer alive as
                    // a whole frame does: a frame that took longer than
                    // `keepalive_interval + keepalive_timeout` to cross cut
                    // its connection (red-team pass 46: 1 MB at 9 KB/s).
                    let bytes =
                        shared.meter.bytes_in() + gathering.map_or(0, |g| g.progress() as u64);
                    let heard = frames != frames_at_ka || bytes != bytes_at_ka || paused;
                    (frames_at_ka, bytes_at_ka) = (frames, bytes);
                    // The peer cannot answer a ping of ours now, or we do
                    // not read its answer: it hears from us instead, so its
                    // own keepalive does not give up on us (pass 46: a
                    // client whose call waited for room in our budget, or
                    // that sent a frame slowly, declared us lost).
                    let reassure = paused
                        || input.has_partial_frame()
                        || gathering.is_some_and(|g| g.held() > 0);
                    match k.on_timer(now.into_std(), heard) {
                        KeepaliveAction::Wait if reassure => {
                            let _ = shared.send(&k.reassurance());
                        }
                        KeepaliveAction::Wait => {}
                        KeepaliveAction::Ping(frame) => {
                            let _ = shared.send(&frame);
                        }
                        KeepaliveAction::Lost(msg) => {
                            let _ = shared.send_goodbye(&msg);
                            break Error::ConnectionLost(msg);
                        }
                    }
                }
                if now < idle_at {
                    timer_at = arm(
                        (timer.as_mut(), &mut timer_waits),
                        earliest(idle_at, keepalive.as_ref(), deadlines_at),
                    );
                    continue;
                }
                let progressed = traffic != traffic_at_check;
                traffic_at_check = traffic;
                let stalled_frame = !progressed && !paused && input.has_partial_frame();
                if progressed {
                    quiet_since = now;
                }
                let refs_count = !refs_expire || now - quiet_since < limits.idle_timeout;
                let (busy, refs) = {
                    let core = shared.core();
                    (
                        core.calls_in_flight() > 0 || core.calls_awaited() > 0,
                        !core.exports().is_empty() || !core.imports().is_empty(),
                    )
                };
                // Held back by the budget from reading a frame for a whole
                // idle period, with no call of its own running: the peer is
                // not to blame, but a peer that only announces large
                // frames must not hold its slot for as long as the budget
                // stays full (red-team pass). (With a call running, the
                // wait may be for room that call holds: its deadline
                // bounds it.)
                let parked = !progressed && !busy && (input.is_reserving() || waits);
                if parked && parked_at_check {
                    let msg = format!(
                        "a frame waited {idle_name} = {idle:?} for room in the memory budget"
                    );
                    crate::trace::limit_hit("memory_budget", &msg);
                    let _ = shared.send_goodbye(&msg);
                    break Error::ConnectionLost(msg);
                }
                parked_at_check = parked;
                let in_use = paused || busy || (refs && refs_count);
                if refs && !refs_count && !in_use {
                    let msg = format!(
                        "no traffic for idle_timeout = {:?} (an unauthenticated connection holding references)",
                        limits.idle_timeout
                    );
                    let _ = shared.send_goodbye(&msg);
                    break Error::ConnectionLost(msg);
                }
                if stalled_frame {
                    let msg =
                        format!("incomplete frame did not complete within {idle_name} = {idle:?}");
                    let _ = shared.send_goodbye(&msg);
                    break Error::ConnectionLost(msg);
                }
                if progressed || in_use {
                    idle_at = super::deadline::after(now, idle);
                    timer_at = arm(
                        (timer.as_mut(), &mut timer_waits),
                        earliest(idle_at, keepalive.as_ref(), deadlines_at),
                    );
                } else {
                    let msg = format!("no traffic for {idle_name} = {idle:?}");
                    let _ = shared.send_goodbye(&msg);
                    break Error::ConnectionLost(msg);
                }
            }
        }
    };
    // Replies read before the end are the callers' (before the close fails
    // the calls still waiting).
    later.hand_over();
    drop(later);
    tracing::info!(name: "remote.connection.closed", reason = %reason, "connection closed");
    shared.disconnect(reason);
    // Late releases from proxies dropped during shutdown are discarded.
    ctl.close();
    // The reading half goes (drained or not) before the task counts as
    // ended (`_teardown`).
    if drain {
        input.drain().await;
    } else {
        drop(input);
    }
}

/// Turns of the read loop between two looks at the timer outside the
/// turn's poll (one clock read per this many frames or control messages).
const CHECK_TIMER_EVERY: u32 = 64;

/// What the read loop does next.
enum Turn {
    /// A control message from this side.
    Ctl(Control),
    /// A frame from the peer, a read error or the end of its stream.
    Input(Option<Result<Bytes, FrameError>>),
    /// The timer is due.
    Timer,
    /// A task started to wait for room in the budget.
    Pressed,
}

/// Resets the reader's timer to `at` (to be polled again: its waker is
/// registered anew); returns `at`.
fn arm((timer, waits): (Pin<&mut Sleep>, &mut bool), at: Instant) -> Instant {
    *waits = false;
    timer.reset(at);
    at
}

/// When the reader's one timer fires: the earliest of the idle check, the
/// keepalive's next step and our calls' earliest deadline.
fn earliest(
    idle_at: Instant,
    keepalive: Option<&Keepalive>,
    deadlines_at: Option<Instant>,
) -> Instant {
    let mut at = idle_at;
    if let Some(k) = keepalive {
        at = at.min(Instant::from_std(k.deadline()));
    }
    if let Some(d) = deadlines_at {
        at = at.min(d);
    }
    at
}

/// Our hello frame with `auth` in its authentication slot, announcing the
/// root we serve (a `root:<name>:<fingerprint>` feature entry, §6.2).
pub(super) fn hello(auth: Option<&[u8]>, root: Option<&str>) -> Vec<u8> {
    let mut h = Core::hello(auth);
    h.features.extend(root);
    encode::hello(&h)
}

/// Held by a connection's reader task: however that task ends (its loop
/// finishing, a panic, the runtime dropping it), the connection is closed,
/// its calls failed and its objects dropped, so `closed()` resolves and a
/// server's slot is freed.
struct DisconnectOnDrop(Arc<Shared>);

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        // A no-op after the reader's own disconnect (the first reason wins
        // and the tables are already empty).
        self.0.disconnect(Error::ConnectionLost(
            "the connection task ended unexpectedly".into(),
        ));
        self.0.io_tasks.one_ended();
    }
}

/// The reader's batch of replies (`replies.rs`), handed over however the
/// reader ends, a panic too: their calls are out of the table that the
/// connection's close fails, so only this can still answer their callers.
struct HandOver<'a> {
    shared: &'a Shared,
    d: Deliveries,
}

impl HandOver<'_> {
    fn hand_over(&mut self) {
        if !self.d.is_empty() {
            self.shared
                .replies
                .deliver_all(&mut self.d, &self.shared.peer);
        }
    }
}

impl Drop for HandOver<'_> {
    fn drop(&mut self) {
        self.hand_over();
    }
}
