//! When a write the socket does not take counts as stalled, and what the
//! writer does then.
//!
//! A write or flush that does not complete at once waits for the peer to
//! read. It is stalled after `write_stall_timeout` (30 s) without
//! completing; on a server's TCP connection (plain, TLS or WebSocket),
//! also after `pressure_stall_timeout` (5 s) while the server's memory
//! budget is short ([`Budget::short`](super::Budget::short): used up, a
//! heavy call in line for room, or a task waiting for room in it). The
//! peer is then sent a goodbye naming the limit and closed, and what its
//! connection held in the budget goes back.
//!
//! Only `write_stall_timeout` closed such a peer before: silent subscribers
//! whose notifications filled the budget held every other connection's
//! notifications back until it passed, and, racing them for each byte
//! given back, for more than 80 s (a red-team pass, 24 silent connections
//! of one address). A pending write tells that the peer reads nothing only
//! where the kernel wakes the writer as soon as the peer takes a little
//! (`TCP_NOTSENT_LOWAT`, `transport/progress.rs`: a peer taking 32 KiB
//! within the period is not closed for it); elsewhere (Unix sockets, other
//! systems) only `write_stall_timeout` applies. Nobody is closed for it
//! while the budget has room. A standalone connection's budget is its own,
//! so closing it for its own budget would free nothing for anybody else:
//! it is left to `write_stall_timeout`.
//!
//! The reader holds the other side to the same limit: the rest of any
//! frame whose room is reserved must keep coming while the budget is short
//! ([`body_stalls`]), and so must what a transport holds of the input
//! before the reader sees it (a WebSocket message in fragments, a TLS
//! record or handshake message: [`gathered`]). Only frames over
//! `SMALL_FRAME` kept a pace at first, but a connection holding nothing
//! else always reads a frame up to `SMALL_FRAME` even with the budget used
//! up: 64 peers of two addresses that sent all but the last 20 bytes of a
//! 64 KiB call, then a byte every 2 s, held a 4 MiB budget for 29 s; paced
//! from 16 KiB, 140 peers each 8 KiB into a frame of 16 KiB held a 2 MiB
//! budget until their idle timeout, and 40 TLS peers each having rustls
//! join a 64 KiB handshake message held a 4 MiB one (red-team passes 25
//! and 26).

use std::time::Duration;

use super::io_types::Gathering;
use super::shared::Shared;
use crate::proto::encode;
use crate::rt::time::{sleep, Instant};
use crate::Error;

/// How a write ended other than by writing.
pub(super) enum Stop {
    /// The connection closed while the write was blocked.
    Closed,
    /// The peer read nothing for too long.
    Stalled(Stall),
    Failed(std::io::Error),
}

/// Which limit a stalled write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stall {
    /// `write_stall_timeout`.
    Timeout,
    /// `pressure_stall_timeout`, the budget short.
    Pressure,
}

/// How often the budget is looked at once a write or a frame's pace
/// window has waited `pressure_stall_timeout` (`limit`): a quarter of it,
/// within 10 ms and 1 s.
fn recheck(limit: Duration) -> Duration {
    (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Runs a write or flush of the socket: at once if it completes, otherwise
/// waiting until it does, the connection closes, or it is stalled (module
/// doc).
pub(super) async fn stall_timed<T, F>(shared: &Shared, io: F) -> Result<T, Stop>
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    use futures_util::FutureExt;
    let mut io = std::pin::pin!(io);
    // Most complete at once: no timer or select for them.
    let res = match (&mut io).now_or_never() {
        Some(r) => r,
        None => tokio::select! {
            biased;
            r = &mut io => r,
            why = stalls(shared) => return Err(Stop::Stalled(why)),
            _ = shared.closed_token().cancelled() => return Err(Stop::Closed),
        },
    };
    res.map_err(Stop::Failed)
}

/// Resolves when a write that began waiting now is stalled.
async fn stalls(shared: &Shared) -> Stall {
    let full = shared.limits.write_stall_timeout;
    let short = shared.limits.pressure_stall_timeout;
    if !(shared.server_side && shared.writes_show_reading) || short >= full {
        sleep(full).await;
        return Stall::Timeout;
    }
    let start = Instant::now();
    sleep(short).await;
    let every = recheck(short);
    loop {
        if shared.budget.short() {
            return Stall::Pressure;
        }
        let left = full.saturating_sub(Instant::now().saturating_duration_since(start));
        if left.is_zero() {
            return Stall::Timeout;
        }
        sleep(left.min(every)).await;
    }
}

/// Bytes of a paced frame's rest that must come per
/// `pressure_stall_timeout` while the budget is short ([`BodyPace`]): as
/// much as a reading peer takes to complete a pending write.
pub(crate) const BODY_PACE: usize = 32 << 10;

/// The pace of the rest of a frame whose room is reserved in the budget:
/// while the server's budget is short, at least [`BODY_PACE`] bytes of it
/// (or all of it, if less is left) must come per `pressure_stall_timeout`,
/// or the reader closes the connection. Peers that sent only a large
/// frame's length prefix held its room for as long as their idle timeout
/// (30 s before authentication): 64 of them, four bytes each, kept a
/// server's budget full and every honest call that needed room waiting
/// (a red-team pass); timed between reads instead of over the frame, a
/// byte every 4 s held it as long (a second pass).
#[derive(Debug, Default)]
pub(crate) struct BodyPace(Option<(Instant, usize)>);

impl BodyPace {
    /// When the window under way started, starting one at `received`
    /// bytes of the frame if none is.
    pub(crate) fn window(&mut self, received: usize) -> Instant {
        self.0.get_or_insert_with(|| (Instant::now(), received)).0
    }

    /// What [`paced`] found, at `received` bytes of the frame: whether the
    /// peer may go on (a new window started), or is to be closed.
    pub(crate) fn judge(&mut self, window: Window, received: usize) -> bool {
        match window {
            Window::Restart => {
                self.restart(received);
                true
            }
            Window::Passed => self.kept(received),
        }
    }

    /// A window passed ([`body_stalls`]): whether the frame's rest came at
    /// pace in it (then the next one starts).
    fn kept(&mut self, received: usize) -> bool {
        let from = self.0.map_or(received, |(_, at)| at);
        let kept = received.saturating_sub(from) >= BODY_PACE;
        self.0 = kept.then(|| (Instant::now(), received));
        kept
    }

    /// The budget turned short after the window passed: a new one starts
    /// now, at `received` bytes, so what came before is not judged by a
    /// rule that did not hold then.
    fn restart(&mut self, received: usize) {
        self.0 = Some((Instant::now(), received));
    }

    /// The frame is in: no window.
    pub(crate) fn reset(&mut self) {
        self.0 = None;
    }
}

/// What [`body_stalls`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// The window passed with the budget short: judge it
    /// ([`BodyPace::kept`]).
    Passed,
    /// The budget turned short only later: start a new window
    /// ([`BodyPace::restart`]).
    Restart,
}

/// How a read held to a pace ended (`Input::next`).
pub(crate) enum Paced<T> {
    Read(T),
    /// The pace window of the frame in progress passed.
    Window(Window),
    /// What the transport held, counting this much, did not keep the pace.
    Held(usize),
}

/// `read`'s output, or what ended the [`BodyPace`] window begun `since`
/// first ([`body_stalls`]). Biased to the read: bytes already there are
/// never judged late.
pub(crate) async fn paced<T>(
    shared: &Shared,
    since: Instant,
    read: impl std::future::Future<Output = T>,
) -> Result<T, Window> {
    tokio::select! {
        biased;
        r = read => Ok(r),
        w = body_stalls(shared, since) => Err(w),
    }
}

/// `read`'s output, the read of a connection whose transport gathers a
/// message whole before the reader sees any of it (`g`: a WebSocket
/// message in fragments, `transport/ws_meter.rs`): while it holds part of
/// a message (or record) counted in the budget, the data of its rest keeps
/// the pace of a frame's rest ([`BodyPace`]), or this ends with that
/// count. The transport starts to hold such a message within a poll of
/// `read`, so it is looked for after each. (Not paced, a first fragment
/// of 8 bytes held twice a 1 MiB message's length in the budget until the
/// idle timeout: a red-team pass.)
pub(crate) async fn gathered<T>(
    shared: &Shared,
    g: &dyn Gathering,
    pace: &mut BodyPace,
    read: impl std::future::Future<Output = T>,
) -> Result<T, usize> {
    let mut read = std::pin::pin!(read);
    loop {
        let until_held = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
            std::task::Poll::Pending if g.partial().is_some() => std::task::Poll::Ready(None),
            std::task::Poll::Pending => {
                // Nothing held: a window starts afresh once a message is
                // held again.
                pace.reset();
                std::task::Poll::Pending
            }
        });
        if let Some(r) = until_held.await {
            return Ok(r);
        }
        let Some((_, at)) = g.partial() else {
            continue;
        };
        let since = pace.window(at);
        match paced(shared, since, read.as_mut()).await {
            Ok(r) => return Ok(r),
            Err(w) => match g.partial() {
                // Handed on meanwhile: its rest came.
                None => pace.reset(),
                Some((held, at)) => {
                    if !pace.judge(w, at) {
                        return Err(held);
                    }
                }
            },
        }
    }
}

/// Resolves once a [`BodyPace`] window begun `since` has passed, when the
/// server's budget is (or later turns) short; never on a standalone
/// connection.
async fn body_stalls(shared: &Shared, since: Instant) -> Window {
    if !shared.server_side {
        return std::future::pending().await;
    }
    let short = shared.limits.pressure_stall_timeout;
    let every = recheck(short);
    // Saturating: a limit too long for the clock means never.
    let end = super::deadline::after(since, short);
    crate::rt::time::sleep_until(end).await;
    // Judged only if the budget is short as the window ends: a window that
    // ended a while ago (the reader came back to it after reads) ended
    // while the budget had room, or it would have been judged then.
    if shared.budget.short() {
        let fresh = Instant::now().saturating_duration_since(end) <= every;
        return if fresh {
            Window::Passed
        } else {
            Window::Restart
        };
    }
    while !shared.budget.short() {
        sleep(every).await;
    }
    Window::Restart
}

/// The rest of a frame counting `total` bytes in the budget did not come
/// in time ([`body_stalls`]): sends a goodbye naming the limit and returns
/// the reader's error.
pub(crate) fn body_stalled(shared: &Shared, total: usize) -> std::io::Error {
    stalled_input(
        shared,
        &format!("the rest of a frame counting {total} bytes in the budget, its room reserved,"),
    )
}

/// What a transport holds of the input, counting `held` bytes in the
/// budget, was not followed by more in time ([`gathered`]): as
/// [`body_stalled`]. (It spoke of a frame's rest, though no frame was in
/// progress: red-team pass 27.)
pub(crate) fn held_stalled(shared: &Shared, held: usize) -> std::io::Error {
    stalled_input(
        shared,
        &format!("the rest of input the transport holds (a message or record not yet delivered), counting {held} bytes in the budget,"),
    )
}

fn stalled_input(shared: &Shared, what: &str) -> std::io::Error {
    let limit = shared.limits.pressure_stall_timeout;
    let msg = format!(
        "limit exceeded: pressure_stall_timeout = {limit:?} ({what} did not come while the server's memory budget was short)"
    );
    crate::trace::limit_hit("pressure_stall_timeout", &msg);
    let _ = shared.send_goodbye(&msg);
    std::io::Error::new(std::io::ErrorKind::TimedOut, msg)
}

/// The peer read nothing for too long (`why`): closes the connection and
/// returns what to write last, `rest` (the end of the frame under way) and
/// a goodbye naming the limit; `also` adds to what the peer did not read.
pub(super) fn stalled(shared: &Shared, why: Stall, rest: &[u8], also: &str) -> Vec<u8> {
    let (limit, after, when) = match why {
        Stall::Timeout => ("write_stall_timeout", shared.limits.write_stall_timeout, ""),
        Stall::Pressure => (
            "pressure_stall_timeout",
            shared.limits.pressure_stall_timeout,
            " while the server's memory budget was short",
        ),
    };
    let queued = shared.queued_output();
    let detail = format!("the peer read nothing of {queued} queued bytes{also}{when}");
    let msg = format!("limit exceeded: {limit} = {after:?} ({detail})");
    crate::trace::limit_hit(limit, &msg);
    shared.close(Error::limit(limit, after.as_millis() as u64, detail));
    let mut last = rest.to_vec();
    last.extend(encode::goodbye(&msg));
    last
}
