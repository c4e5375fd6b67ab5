//! A server of a map that notes why each of its connections closed, for
//! the tests of limits that close peers. Included by
//! `#[path = "support/noted.rs"] mod noted;`.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use remote_core::collections::SharedMap;
use remote_core::{Error, Limits, Server, ServerEvent, ServerHandle};

/// Every reason a connection of the server closed for, as it is told.
pub type Reasons = Arc<Mutex<Vec<Error>>>;

/// A server of `map` at `addr` with `limits`, noting why each connection
/// closed.
pub async fn serve(
    map: Arc<SharedMap<u32, String>>,
    limits: Limits,
    addr: &str,
) -> (ServerHandle, Reasons) {
    let reasons = Reasons::default();
    let r = reasons.clone();
    let server = Server::builder()
        .limits(limits)
        .on_event(move |e| {
            if let ServerEvent::Closed { reason, .. } = e {
                r.lock().unwrap().push(reason);
            }
        })
        .bind(addr)
        .await
        .unwrap()
        .serve(move |_| map.remote());
    (server, reasons)
}

/// How many connections closed naming `limit` (the reason is the
/// connection's loss, its text the limit's error).
pub fn closed_for(reasons: &Reasons, limit: &str) -> usize {
    let named = format!("limit exceeded: {limit} =");
    let reasons = reasons.lock().unwrap();
    reasons
        .iter()
        .filter(|e| e.to_string().contains(&named))
        .count()
}
