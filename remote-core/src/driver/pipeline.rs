//! Promise pipelining, serving side (PROTOCOL.md §3.10): the answer of a
//! kept-answer call, and the object that calls addressed to it
//! (`[call_id]` targets) are dispatched on.
//!
//! The state machine keeps one [`PromiseTarget`] per kept answer until the
//! caller's finish. The kept call's reply sets the [`Answer`] (the object
//! its `Ok` value refers to, or its error) just before the reply is
//! queued, so a pipelined call arriving after the caller saw the reply
//! finds it set. A pipelined call arriving earlier runs as an ordinary
//! incoming call whose handler first waits for the answer: it counts in
//! `max_calls_in_flight`, ends at its deadline or cancel, and is aborted
//! with the connection, like any handler.

use std::any::Any;
use std::sync::Arc;

use tokio::sync::watch;

use super::call::{Args, CallCx};
use super::shared::Shared;
use crate::interface::{CallFuture, Dispatch};
use crate::proto::{CallId, Message, ObjectId};
use crate::{Error, RemoteError};

type Resolved = Result<Arc<dyn Dispatch>, Arc<RemoteError>>;

/// The answer of one kept-answer call: unset while the call runs, then
/// the object its reply refers to or the error it ended with (first set
/// wins).
pub(crate) struct Answer {
    cell: watch::Sender<Option<Resolved>>,
}

impl Answer {
    pub(crate) fn new() -> Arc<Answer> {
        Arc::new(Answer {
            cell: watch::Sender::new(None),
        })
    }

    fn get(&self) -> Option<Resolved> {
        self.cell.borrow().clone()
    }

    fn set(&self, r: Resolved) {
        self.cell.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(r);
                true
            } else {
                false
            }
        });
    }

    /// Sets the answer from the reply about to be queued for call `id`
    /// (`payload`: the message, without its length prefix).
    pub(crate) fn on_reply(&self, shared: &Shared, id: CallId, payload: &[u8]) {
        if self.cell.borrow().is_some() {
            return;
        }
        let mut refs = Vec::new();
        let r = match Message::parse(payload, &shared.limits, &mut refs) {
            Ok(Message::Return { value, .. }) => match &payload[value] {
                [0xd6, 1, a, b, c, d] => {
                    let oid = ObjectId(u32::from_be_bytes([*a, *b, *c, *d]));
                    shared.core().exports().get(oid).cloned().ok_or_else(|| {
                        not_a_capability(format!(
                            "the answer of call {id} (object {oid}) is no longer exported"
                        ))
                    })
                }
                [0xd6, 2, ..] => Err(not_a_capability(format!(
                    "the answer of call {id} is the caller's own object (ext type 2): \
                     call it directly"
                ))),
                _ => Err(not_a_capability(format!(
                    "the answer of call {id} is not a capability (its value is not one \
                     reference to an object), so it cannot be called"
                ))),
            },
            Ok(Message::Error { error, .. }) => Err(RemoteError {
                kind: error.kind.into_owned(),
                type_name: error.type_name.into_owned(),
                message: error.message.into_owned(),
                chain: error.chain.into_iter().map(|s| s.into_owned()).collect(),
                backtrace: error.backtrace.map(|s| s.into_owned()),
                data: error.data.map(|r| payload[r].to_vec()),
            }),
            _ => Err(ended(id)),
        };
        self.set(r.map_err(Arc::new));
    }

    /// Sets the answer to `e` unless it is set.
    pub(crate) fn fail(&self, e: &RemoteError) {
        if self.cell.borrow().is_none() {
            self.set(Err(Arc::new(e.clone())));
        }
    }

    async fn wait(&self) -> Resolved {
        let mut rx = self.cell.subscribe();
        let r = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            // Unreachable: `self` holds the sender.
            Err(_) => None,
        };
        r.unwrap_or_else(|| Err(Arc::new(ended(CallId(0)))))
    }
}

/// The error of a call answering with a value that is not one object.
fn not_a_capability(message: String) -> RemoteError {
    RemoteError::new("not_a_capability", "remote_core::Error", message)
}

/// The answer of a kept-answer call that ended without a reply of its own.
fn ended(id: CallId) -> RemoteError {
    RemoteError::new(
        "cancelled",
        "remote_core::Error",
        format!("call {id} ended without an answer (it was cancelled or stopped)"),
    )
}

/// Held by a kept-answer call's handler: however it ends (an abort by a
/// cancel or the connection's close included), its answer is set, so the
/// pipelined calls waiting on it end too.
pub(crate) struct KeepGuard(pub(crate) Option<Arc<Answer>>, pub(crate) CallId);

impl KeepGuard {
    /// Sets the answer to the call's error `e` (unless it is set).
    pub(crate) fn fail(&self, e: &RemoteError) {
        if let Some(a) = &self.0 {
            a.fail(e);
        }
    }
}

impl Drop for KeepGuard {
    fn drop(&mut self) {
        if let Some(a) = &self.0 {
            a.fail(&ended(self.1));
        }
    }
}

/// What a kept answer's `[call_id]` names: calls to it wait for the answer,
/// then run on its object, or fail with the kept call's own error.
pub(crate) struct PromiseTarget(pub(crate) Arc<Answer>);

impl Dispatch for PromiseTarget {
    fn interface_name(&self) -> &'static str {
        match self.0.get() {
            Some(Ok(o)) => o.interface_name(),
            _ => "a promised object",
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn call(&self, method: &str, args: Args, cx: CallCx) -> Result<CallFuture, Error> {
        match self.0.get() {
            Some(Ok(o)) => o.call(method, args, cx),
            // The kept call's own error, as it was (PROTOCOL.md §3.10).
            Some(Err(e)) => Err(Error::Remote(Box::new((*e).clone()))),
            None => {
                let answer = self.0.clone();
                let method = method.to_owned();
                Ok(Box::pin(async move {
                    let reply = cx.duplicate();
                    match answer.wait().await {
                        Ok(o) => match o.call(&method, args, cx) {
                            Ok(fut) => fut.await,
                            Err(e) => reply.reply_remote(&super::conn::dispatch_error(
                                &e,
                                o.interface_name(),
                                &method,
                            )),
                        },
                        Err(e) => reply.reply_remote(&e),
                    }
                }))
            }
        }
    }

    fn method_priority(&self, method: &str) -> Option<crate::Priority> {
        match self.0.get() {
            Some(Ok(o)) => o.method_priority(method),
            _ => None,
        }
    }
}
