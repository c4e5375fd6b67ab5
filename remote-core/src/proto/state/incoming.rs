//! Processing one frame from the peer: the handshake, then calls, replies,
//! releases, cancels and the negotiated extras.

use super::event::Event;
use super::refs::RefError;
use super::{Phase, State, Violation};
use crate::proto::msg::{Message, PROTOCOL_VERSION};
use crate::proto::{encode, invalidate, ping, pipeline, ArgsWalk, CallId, CallTarget};
use crate::{Limits, RemoteError};

pub(super) fn reject(id: CallId, kind: &str, message: String, limits: &Limits) -> Vec<u8> {
    encode::error(
        id,
        &RemoteError::new(kind, "remote_core::Error", message),
        limits,
    )
}

impl<O: Clone, W> State<O, W> {
    /// An incoming call (kind 1, or kind 12 if `keep`): admitted and
    /// counted, or answered at once with an error.
    #[inline]
    fn incoming_call<'a>(
        &mut self,
        id: CallId,
        target: CallTarget,
        method: &'a str,
        timeout_ms: u32,
        (args, items): (std::ops::Range<usize>, u32),
        keep: bool,
    ) -> Result<Event<'a, O, W>, Violation> {
        if self.incoming.contains_key(&id) {
            return Err(Violation(format!("call id {id} is already in flight")));
        }
        if keep && self.answers.contains_key(&id) {
            return Err(Violation(format!(
                "kept-answer call id {id} names an answer not yet finished"
            )));
        }
        let (refs, owns) = match self.take_refs() {
            Ok(r) => r,
            Err(RefError::UnknownOwn(m)) => {
                return Ok(Event::Reject {
                    frame: reject(id, "unknown_object", m, &self.limits),
                    kind: "unknown_object",
                    limit: None,
                })
            }
            Err(RefError::Violation(v)) => return Err(v),
        };
        // Kept answers count as calls in flight until finished; handlers
        // past their own reply count against twice the limit only
        // (`calls.rs`, `replied`).
        let max = self.limits.max_calls_in_flight;
        let answers = self.answers.settled();
        if self.running + answers >= max || self.handlers_held() + answers >= max.saturating_mul(2)
        {
            let msg = format!(
                "limit exceeded: max_calls_in_flight = {} (call {id} refused)",
                self.limits.max_calls_in_flight
            );
            return Ok(Event::Reject {
                frame: reject(id, "limit_exceeded", msg, &self.limits),
                kind: "limit_exceeded",
                limit: Some("max_calls_in_flight"),
            });
        }
        let (obj, object) = match self.resolve_target(id, target) {
            Ok(found) => found,
            Err(frame) => {
                return Ok(Event::Reject {
                    frame,
                    kind: "unknown_object",
                    limit: None,
                })
            }
        };
        let cap = u32::try_from(self.limits.max_deadline.as_millis()).unwrap_or(u32::MAX);
        let seq = self.next_seq;
        self.next_seq += 1;
        if keep {
            self.answers.admit(id, seq);
        }
        // Counted (`admit`) by `handle_frame`, or by the driver once the
        // handler is found to run on past this frame.
        Ok(Event::Call {
            id,
            seq,
            target: obj,
            object,
            method,
            timeout_ms: timeout_ms.min(cap),
            args,
            items,
            refs,
            owns,
            keep,
        })
    }

    /// The event of a reply (return or error) to call `id`: to its waiter
    /// with `result` (made only then) and the reply's references, or
    /// nothing for a call we cancelled (its one reply, ignored; the id is
    /// free again, and the references are released as `refs` drops). Any
    /// other id is a violation, found before the references are counted:
    /// replies are read whatever our output queue holds, and every
    /// reference in an ignored reply is released with a frame of ours, so
    /// a peer that floods replies to calls never made, and reads nothing,
    /// would grow that queue without bound (tests/attack_wire7.rs).
    #[inline]
    fn reply<'a>(
        &mut self,
        id: CallId,
        items: u32,
        result: impl FnOnce() -> Result<std::ops::Range<usize>, Box<RemoteError>>,
    ) -> Result<Event<'a, O, W>, Violation> {
        let waiter = match self.outgoing.remove(&id) {
            Some(waiter) => Some(waiter),
            None if self.cancelled.remove(&id).is_some() => None,
            None => {
                return Err(Violation(format!(
                    "reply to call {id}, which is neither waiting for a reply nor cancelled"
                )))
            }
        };
        match self.take_refs() {
            Ok((refs, owns)) => Ok(match waiter {
                Some(waiter) => Event::Reply {
                    waiter,
                    result: result(),
                    items,
                    refs,
                    owns,
                },
                None => Event::Nothing,
            }),
            Err(e) => {
                // The connection closes: the waiter goes back, to fail
                // with the others.
                if let Some(w) = waiter {
                    self.outgoing.insert(id, w);
                }
                Err(e.into())
            }
        }
    }

    /// Processes one frame from the peer. A `Call` event's call is running
    /// (counted in `max_calls_in_flight`, its id in use) until
    /// [`call_done`](Self::call_done).
    pub fn handle_frame<'a>(&mut self, frame: &'a [u8]) -> Result<Event<'a, O, W>, Violation> {
        let ev = self.handle_frame_unadmitted(frame);
        if let Ok(Event::Call { id, seq, .. }) = &ev {
            self.admit(*id, *seq);
        }
        ev
    }

    /// [`handle_frame`](Self::handle_frame), except that a `Call` event's
    /// call is not counted yet: the caller either runs its handler to the
    /// end before it handles another frame (nothing to count: no other
    /// frame can name the call meanwhile, and it was within the limit when
    /// admitted here) or calls [`admit`](Self::admit) before that. The
    /// driver does this so a handler that finishes at once costs no table
    /// insert and removal.
    pub fn handle_frame_unadmitted<'a>(
        &mut self,
        frame: &'a [u8],
    ) -> Result<Event<'a, O, W>, Violation> {
        self.handle_frame_walked(frame, None)
    }

    /// [`handle_frame_unadmitted`](Self::handle_frame_unadmitted), a
    /// call's arguments taken from `walked` if it is a walk of this
    /// frame's ([`ArgsWalk`]) rather than walked again.
    pub(crate) fn handle_frame_walked<'a>(
        &mut self,
        frame: &'a [u8],
        walked: Option<&ArgsWalk>,
    ) -> Result<Event<'a, O, W>, Violation> {
        if self.phase == Phase::Closed {
            return Ok(Event::Nothing);
        }
        self.scratch.clear();
        let msg = Message::parse_walked(frame, &self.limits, &mut self.scratch, walked)?;
        if self.phase == Phase::AwaitingHello {
            let Message::Hello(h) = msg else {
                return Err(Violation(
                    "expected a handshake (message kind 0) first".into(),
                ));
            };
            let version = h.max_version.min(PROTOCOL_VERSION);
            if version < h.min_version.max(PROTOCOL_VERSION) {
                return Err(Violation(format!(
                    "no common protocol version: peer speaks {}..={}, we speak {PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                    h.min_version, h.max_version
                )));
            }
            self.phase = Phase::Open(version);
            // Unknown names are ignored; the enabled set is the intersection.
            let known = [ping::FEATURE, invalidate::FEATURE, pipeline::FEATURE];
            let mut features: Vec<String> = Vec::new();
            for f in known {
                if h.features.contains(&f) {
                    features.push(f.to_owned());
                }
            }
            self.keepalive = features.iter().any(|f| f == ping::FEATURE);
            self.invalidate = features.iter().any(|f| f == invalidate::FEATURE);
            self.pipeline = features.iter().any(|f| f == pipeline::FEATURE);
            return Ok(Event::Opened {
                version,
                auth: h.auth,
                features,
            });
        }
        match msg {
            Message::Hello(_) => Err(Violation("handshake sent twice".into())),
            Message::Call {
                id,
                target,
                method,
                timeout_ms,
                args,
                items,
            } => self.incoming_call(
                id,
                CallTarget::Object(target),
                method,
                timeout_ms,
                (args, items),
                false,
            ),
            Message::Pipelined {
                keep,
                id,
                target,
                method,
                timeout_ms,
                args,
                items,
            } if self.pipeline => {
                self.incoming_call(id, target, method, timeout_ms, (args, items), keep)
            }
            Message::Finish { id } if self.pipeline => Ok(self.finish(id)),
            Message::Pipelined { .. } | Message::Finish { .. } => Err(Violation(
                "pipelining message (kind 12 or 13, or a [call_id] promise target) without the \
                 negotiated pipeline feature"
                    .into(),
            )),
            Message::Return { id, value, items } => self.reply(id, items, || Ok(value)),
            Message::Error { id, error, items } => {
                self.reply(id, items, || Err(Box::new(error.into_remote(frame))))
            }
            Message::Release { id, count } => {
                let obj = self
                    .exports
                    .release(id, count)
                    .map_err(|e| Violation(e.to_string()))?;
                Ok(Event::Released(obj))
            }
            Message::Cancel { id } => {
                if let Some(seq) = self.incoming.remove(&id) {
                    // Its kept answer, if any, counts from now on: left
                    // marked as its running call's, a cancelled kept call
                    // counted nowhere once its handler stopped, and a peer
                    // that cancelled each kept 200 answers at a limit of 4
                    // (a review).
                    self.answers.stopped(id, seq);
                    let reply = reject(
                        id,
                        "cancelled",
                        format!("call {id} was cancelled by the caller"),
                        &self.limits,
                    );
                    Ok(Event::Cancel { seq, reply })
                } else {
                    Ok(Event::Nothing)
                }
            }
            Message::Goodbye { reason } => {
                self.phase = Phase::Closed;
                Ok(Event::Goodbye(reason.into_owned()))
            }
            Message::Ping { token } if self.keepalive => Ok(Event::Ping(token)),
            Message::Pong { token } if self.keepalive => Ok(Event::Pong(token)),
            Message::Ping { .. } | Message::Pong { .. } => Err(Violation(
                "keepalive message (kind 7 or 8) without the negotiated keepalive feature".into(),
            )),
            Message::Invalidate {
                token,
                object,
                methods,
            } if self.invalidate => Ok(Event::Invalidate {
                token,
                object,
                methods,
            }),
            Message::Invalidated { token } if self.invalidate => Ok(Event::Invalidated(token)),
            Message::Invalidate { .. } | Message::Invalidated { .. } => Err(Violation(
                "invalidation message (kind 10 or 11) without the negotiated invalidate feature"
                    .into(),
            )),
        }
    }
}
