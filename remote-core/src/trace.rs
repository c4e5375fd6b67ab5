//! The `tracing` spans and events of a connection (their names and fields
//! are listed in [`crate::observability`]). Field values are computed only
//! when a subscriber wants the span or event: with none installed, each
//! costs a check of a cached flag.
//!
//! Spans are made only after `tracing::enabled!` said a subscriber wants
//! them, else they are `Span::none()`: with tracing's `log` feature on (as
//! another crate in the build may turn it on) and no subscriber, a span
//! made by `span!` is still formatted for `log`, which cost an allocation
//! and some 750 instructions per call; `Span::none()` costs nothing to make,
//! enter or leave. Measured with `benches/callgrind.sh` (no subscriber):
//! 15,600 → 15,709 instructions per call (`ours`), 11,352 → 11,445
//! (`ours-64`), allocations per call unchanged; the rest is the counters of
//! `stats.rs`.

use tracing::{Level, Span};

use crate::proto::{CallId, ObjectId};

/// The transport named by a peer description (`tcp://..` → `tcp`;
/// `stdio`, a child process or an in-memory pair → `stream`).
fn transport_of(peer: &str) -> &str {
    match peer.split_once("://") {
        Some((scheme, _)) => scheme,
        None if peer == "stdio" => "stdio",
        None => "stream",
    }
}

/// A connection's span (`remote.connection`, level INFO): `user` and
/// `tls_client` are recorded once known.
pub(crate) fn connection_span(peer: &str, server_side: bool) -> Span {
    if !tracing::enabled!(Level::INFO) {
        return Span::none();
    }
    tracing::info_span!(
        "remote.connection",
        peer = %peer,
        transport = transport_of(peer),
        side = if server_side { "server" } else { "client" },
        user = tracing::field::Empty,
        tls_client = tracing::field::Empty,
    )
}

/// An incoming call's span (`remote.call`, level DEBUG), a child of its
/// connection's span; `Span::none()` unless a subscriber wants it (that
/// test inlined into the caller, the span made out of line).
#[inline]
pub(crate) fn call_span(
    conn: &Span,
    object: ObjectId,
    interface: &str,
    method: &str,
    id: CallId,
    timeout_ms: u32,
) -> Span {
    if !tracing::enabled!(Level::DEBUG) {
        return Span::none();
    }
    new_call_span(conn, object, interface, method, id, timeout_ms)
}

#[inline(never)]
fn new_call_span(
    conn: &Span,
    object: ObjectId,
    interface: &str,
    method: &str,
    id: CallId,
    timeout_ms: u32,
) -> Span {
    tracing::debug_span!(
        parent: conn,
        "remote.call",
        object = object.0,
        interface = interface,
        // Peer-chosen text: quoted and cut (control characters escaped).
        method = %crate::bounded::quote(method),
        call_id = id.0,
        timeout_ms = timeout_ms,
    )
}

/// Spawns `fut` inside `span`, or without one if `span` is `Span::none()`
/// (then its polls enter and leave nothing).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn spawn_in<F>(span: Span, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if span.is_none() {
        crate::rt::spawn(fut)
    } else {
        crate::rt::spawn(tracing::Instrument::instrument(fut, span))
    }
}

/// Spawns `fut` inside `span` on the page's event loop.
#[cfg(target_arch = "wasm32")]
pub(crate) fn spawn_in<F>(span: Span, fut: F) -> crate::rt::JoinHandle
where
    F: std::future::Future + 'static,
{
    if span.is_none() {
        crate::rt::spawn(fut)
    } else {
        crate::rt::spawn(tracing::Instrument::instrument(fut, span))
    }
}

/// A limit was hit (WARN): `limit` names it, the message says by what.
pub(crate) fn limit_hit(limit: &str, message: &str) {
    tracing::warn!(name: "remote.limit_exceeded", limit = limit, "{message}");
}

/// How many `remote.limit_exceeded` events one connection logs at WARN;
/// later ones are DEBUG (the counters of `stats.rs` still count every
/// refusal), so a peer flooding refused calls cannot flood the log.
pub(crate) const LIMIT_WARNINGS_PER_CONNECTION: u64 = 16;

/// A connection's `seen`-th limit hit (from 0): WARN for the first
/// [`LIMIT_WARNINGS_PER_CONNECTION`], the last of them saying so, then
/// DEBUG.
pub(crate) fn limit_hit_nth(limit: &str, message: &str, seen: u64) {
    let last = LIMIT_WARNINGS_PER_CONNECTION - 1;
    match seen.cmp(&last) {
        std::cmp::Ordering::Less => limit_hit(limit, message),
        std::cmp::Ordering::Equal => tracing::warn!(
            name: "remote.limit_exceeded",
            limit = limit,
            "{message} (the last limit warning of this connection at WARN level; later ones are DEBUG)"
        ),
        std::cmp::Ordering::Greater => {
            tracing::debug!(name: "remote.limit_exceeded", limit = limit, "{message}")
        }
    }
}

/// The limit named in a `limit exceeded: NAME = ...` message.
pub(crate) fn limit_name(message: &str) -> &str {
    message
        .strip_prefix("limit exceeded: ")
        .and_then(|rest| rest.split([' ', '=']).next())
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_and_limit_names_are_read_from_their_text() {
        assert_eq!(transport_of("tls://127.0.0.1:5"), "tls");
        assert_eq!(transport_of("wss://127.0.0.1:5/x"), "wss");
        assert_eq!(transport_of("stdio"), "stdio");
        assert_eq!(transport_of("child process 7"), "stream");
        assert_eq!(
            limit_name("limit exceeded: max_calls_in_flight = 1 (call 3 refused)"),
            "max_calls_in_flight"
        );
        assert_eq!(limit_name("something else"), "unknown");
    }
}
