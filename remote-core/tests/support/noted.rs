//! A server of a map that notes why each of its connections closed, for
//! the tests of limits that close peers. Included by
//! `#[path = "support/noted.rs"] mod noted;`.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_core::collections::{RemoteMap, SharedMap};
use remote_core::{ConnectionBuilder, Error, Limits, Server, ServerEvent, ServerHandle};

/// Every reason a connection of the server closed for, as it is told.
pub type Reasons = Arc<Mutex<Vec<Error>>>;

/// Limits for tests of peers closed by their pace: a budget of `budget`
/// bytes, a peer judged after a second, nothing else closing a connection
/// for ten minutes, and room for 64 connections from 127.0.0.1.
pub fn judged(budget: usize) -> Limits {
    Limits {
        memory_budget: budget,
        pressure_stall_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(600),
        unauthenticated_idle_timeout: Duration::from_secs(600),
        max_connections_per_peer: 64,
        ..Limits::default()
    }
}

/// A server of `map` at `addr` with `limits`, noting why each connection
/// closed.
pub async fn serve(
    map: Arc<SharedMap<u32, String>>,
    limits: Limits,
    addr: &str,
) -> (ServerHandle, Reasons) {
    serve_on(Server::builder(), map, limits, addr).await
}

/// A `tls://` server of `map` with `limits` and `tls`, on 127.0.0.1,
/// noting why each connection closed.
#[cfg(feature = "tls")]
pub async fn serve_tls(
    map: Arc<SharedMap<u32, String>>,
    limits: Limits,
    tls: remote_core::TlsServerConfig,
) -> (ServerHandle, Reasons) {
    serve_on(Server::builder().tls(tls), map, limits, "tls://127.0.0.1:0").await
}

async fn serve_on(
    builder: remote_core::ServerBuilder,
    map: Arc<SharedMap<u32, String>>,
    limits: Limits,
    addr: &str,
) -> (ServerHandle, Reasons) {
    let reasons = Reasons::default();
    let r = reasons.clone();
    let server = builder
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

/// An honest client of `server` (serving the empty `map`) whose calls may
/// wait `deadline` inserts a 900 KiB value, a call that needs room in the
/// budget: it is answered, and the map then holds it.
pub async fn honest_large_insert(
    server: &ServerHandle,
    map: &Arc<SharedMap<u32, String>>,
    deadline: Duration,
) {
    let honest = ConnectionBuilder::new()
        .limits(Limits {
            default_deadline: deadline,
            ..Limits::default()
        })
        .connect(server.local_addr())
        .await
        .unwrap();
    let root = honest.root::<dyn RemoteMap<u32, String>>();
    root.insert(1, "w".repeat(900 << 10)).await.unwrap();
    assert_eq!(map.remote().len().await.unwrap(), 1);
}
