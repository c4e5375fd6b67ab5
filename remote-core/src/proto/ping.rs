//! Keepalive: ping/pong messages and the timer logic, as plain data.
//!
//! Both peers list [`FEATURE`] in their hello when they answer pings (this
//! crate always does); pings are sent only when both listed it. A side with
//! pinging enabled sends `ping(token)` once nothing was heard from the peer
//! for `interval`, and declares the peer lost when nothing (no pong, no other
//! frame) arrives within `timeout` of the ping. The receiver of a ping
//! answers `pong(token)` with the same token.
//!
//! The driver does not read the clock per frame: it reports at each timer
//! expiry whether any frame arrived since the previous one, so a ping goes
//! out between `interval` and `2 × interval` after the last frame.

use std::time::Duration;

use web_time::Instant;

use super::clock::later;
use super::kind;
use super::value::enc;

/// The hello feature name that negotiates ping/pong.
pub const FEATURE: &str = "keepalive";

/// A complete ping frame: `[7, token]`.
pub fn ping(token: u32) -> Vec<u8> {
    frame(kind::PING, token)
}

/// A complete pong frame: `[8, token]`, echoing a ping's token.
pub fn pong(token: u32) -> Vec<u8> {
    frame(kind::PONG, token)
}

fn frame(k: u8, token: u32) -> Vec<u8> {
    let mut b = super::encode::begin(16);
    enc::array_len(&mut b, 2);
    enc::uint(&mut b, u64::from(k));
    enc::uint(&mut b, u64::from(token));
    super::encode::finish(&mut b);
    b
}

/// What the driver must do when the keepalive timer fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Nothing to send; wait until [`Keepalive::deadline`].
    Wait,
    /// Send this ping frame.
    Ping(Vec<u8>),
    /// The peer is lost: close with this reason.
    Lost(String),
}

/// Keepalive state of one connection (time comes in as arguments).
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Duration,
    timeout: Duration,
    /// When the next check is due.
    deadline: Instant,
    /// The ping waiting for an answer: its token and when it was sent.
    outstanding: Option<(u32, Instant)>,
    next_token: u32,
}

impl Keepalive {
    /// Starts the timer at `now` (the handshake's end).
    pub fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        Keepalive {
            interval,
            timeout,
            deadline: later(now, interval),
            outstanding: None,
            next_token: 1,
        }
    }

    /// When the driver must next call [`on_timer`](Keepalive::on_timer).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The token of the ping waiting for an answer, if any.
    pub fn outstanding(&self) -> Option<u32> {
        self.outstanding.map(|(t, _)| t)
    }

    /// A pong arrived. A token that is not the outstanding ping's is a late
    /// answer and changes nothing (the frame still counts as heard).
    pub fn on_pong(&mut self, token: u32) {
        if self.outstanding.map(|(t, _)| t) == Some(token) {
            self.outstanding = None;
        }
    }

    /// A ping that expects no answer, sent so that the peer hears from us
    /// while it cannot answer a ping, or we cannot read its answer: it is
    /// in the middle of sending us a frame (a pong cannot go inside its
    /// frame), or we do not read it for a while (our memory budget). Its
    /// keepalive then finds us alive; an answer is a late one, ignored.
    pub fn reassurance(&mut self) -> Vec<u8> {
        ping(self.fresh_token())
    }

    /// A token no ping of ours had lately.
    fn fresh_token(&mut self) -> u32 {
        let token = self.next_token;
        self.next_token = token.wrapping_add(1);
        token
    }

    /// The timer fired at `now`; `heard` says whether any frame arrived
    /// from the peer since the previous call (or since [`new`]).
    ///
    /// [`new`]: Keepalive::new
    pub fn on_timer(&mut self, now: Instant, heard: bool) -> KeepaliveAction {
        if heard {
            // The peer is alive: any frame answers an outstanding ping.
            self.outstanding = None;
            self.deadline = later(now, self.interval);
            return KeepaliveAction::Wait;
        }
        match self.outstanding {
            Some((_, sent)) if now >= later(sent, self.timeout) => KeepaliveAction::Lost(format!(
                "the peer did not answer a keepalive ping within keepalive_timeout = {:?}",
                self.timeout
            )),
            Some((_, sent)) => {
                self.deadline = later(sent, self.timeout);
                KeepaliveAction::Wait
            }
            None => {
                let token = self.fresh_token();
                self.outstanding = Some((token, now));
                self.deadline = later(now, self.timeout);
                KeepaliveAction::Ping(ping(token))
            }
        }
    }
}

/// `at + d`, saturating (a `Duration::MAX` knob means "never", not a panic).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_pings_after_silence_and_declares_the_peer_lost_after_the_timeout() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let (every, wait) = (Duration::from_secs(30), Duration::from_secs(10));
        let mut k = Keepalive::new(every, wait, t0);
        assert_eq!(k.deadline(), t0 + every);
        // Frames arrived: no ping, the next check is an interval later.
        let t1 = t0 + every;
        assert_eq!(k.on_timer(t1, true), KeepaliveAction::Wait);
        assert_eq!(k.deadline(), t1 + every);
        // Silence: a ping with a fresh token, answered by a matching pong.
        let t2 = t1 + every;
        assert_eq!(k.on_timer(t2, false), KeepaliveAction::Ping(ping(1)));
        assert_eq!(k.outstanding(), Some(1));
        assert_eq!(k.deadline(), t2 + wait);
        k.on_pong(99); // a stale token changes nothing
        assert_eq!(k.outstanding(), Some(1));
        k.on_pong(1);
        assert_eq!(k.outstanding(), None);
        // Another ping goes unanswered: lost once the timeout has passed.
        let t3 = t2 + wait;
        assert_eq!(k.on_timer(t3, false), KeepaliveAction::Ping(ping(2)));
        assert_eq!(k.on_timer(t3 + wait / 2, false), KeepaliveAction::Wait);
        assert_eq!(k.deadline(), t3 + wait);
        match k.on_timer(t3 + wait, false) {
            KeepaliveAction::Lost(m) => assert!(m.contains("keepalive_timeout = 10s"), "{m}"),
            other => panic!("expected Lost, got {other:?}"),
        }
    }
}
