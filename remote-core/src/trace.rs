//! The `tracing` spans and events of a connection (their names and fields
//! are listed in [`crate::observability`]). Field values are computed only
//! when a subscriber wants the span or event: with none installed, each
//! costs a check of a cached flag.

use tracing::Span;

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
/// connection's span; `Span::none()` unless a subscriber wants it.
pub(crate) fn call_span(
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

/// A limit was hit (WARN): `limit` names it, the message says by what.
pub(crate) fn limit_hit(limit: &str, message: &str) {
    tracing::warn!(name: "remote.limit_exceeded", limit = limit, "{message}");
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
