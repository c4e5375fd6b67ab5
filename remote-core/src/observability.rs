//! Observability: `tracing` spans and events, and counters.
//!
//! # Tracing
//!
//! The runtime reports through [`tracing`](https://docs.rs/tracing): one
//! span per connection, one per incoming call, and events for what an
//! operator must see (limits hit, protocol violations, failed handshakes
//! and authentications, connections opened and closed). Nothing is
//! printed unless the application installs a subscriber; without one (or
//! with a filter that leaves a span or event out) each costs a check of a
//! cached flag, and field values are not computed. All targets start with
//! `remote_core`, so one directive covers them: `remote_core=info` for the
//! connection lifecycle and the warnings, `remote_core=debug` to add a span
//! per call.
//!
//! With `tracing-subscriber` (features `fmt` and `env-filter`), showing
//! each call's span as one line when it ends, with its duration:
//!
//! ```
//! use tracing_subscriber::fmt::format::FmtSpan;
//! use tracing_subscriber::EnvFilter;
//!
//! let filter = EnvFilter::try_from_default_env() // RUST_LOG, if set
//!     .unwrap_or_else(|_| EnvFilter::new("remote_core=debug"));
//! let _ = tracing_subscriber::fmt()
//!     .with_env_filter(filter)
//!     .with_span_events(FmtSpan::CLOSE)
//!     .try_init();
//! ```
//!
//! `cargo run --example observability` runs a server with it: an
//! authenticated client's calls, a client with a wrong key, a frame over
//! `max_frame_len`, then the server's counters. A line looks like
//!
//! ```text
//! WARN remote.connection{peer=tcp://127.0.0.1:49712 transport="tcp" side="server" user="bob"}:
//!      remote_core::trace: frame of 10016 bytes exceeds max_frame_len = 4096 limit="max_frame_len"
//! ```
//!
//! ## Spans
//!
//! | name | level | fields |
//! |---|---|---|
//! | `remote.connection` | INFO | `peer` (the address, e.g. `tcp://1.2.3.4:5678`), `transport` (`tcp`, `tls`, `unix`, `ws`, `wss`, `stdio`, or `stream` for any other byte stream), `side` (`server` for a connection a server accepted, else `client`), `user` (the authenticated user name, recorded once the peer proved it), `tls_client` (the common name of the peer's verified client certificate, if any) |
//! | `remote.call` | DEBUG | `object` (the target's object id, 0 for the root), `interface` (its interface name), `method` (the wire name, quoted and cut to 128 bytes), `call_id` (the caller's id), `timeout_ms` (the caller's deadline, capped at `max_deadline`). A child of its connection's span; it lasts until the handler's reply is queued |
//!
//! Everything a connection does runs inside its span: its reader and
//! writer tasks, handlers run inline by the reader, and handlers' own
//! tasks (inside the `remote.call` span when that is enabled), so events an
//! application's handler emits carry the peer and user too.
//!
//! ## Events
//!
//! | name | level | fields | when |
//! |---|---|---|---|
//! | `remote.connection.opened` | INFO | — | the handshake (and authentication) completed |
//! | `remote.connection.closed` | INFO | `reason` | an open connection closed (the same reason as [`Connection::closed`](crate::Connection::closed)) |
//! | `remote.handshake_failed` | WARN | `error` (and `peer` when the TLS handshake failed, before the connection span exists) | the hello, the authentication exchange (a wrong key, an unknown user, a missing challenge) or the TLS handshake failed; the connection is closed |
//! | `remote.limit_exceeded` | WARN | `limit` (the name of the [`Limits`](crate::Limits) field, or `max_connections`, `write_stall_timeout`, ...), and the message | a peer's frame over `max_frame_len`, a call over `max_calls_in_flight`, a reply over `max_frame_len`/`max_depth`/`max_exports`/`max_server_exports`/`max_exports_per_peer`, a peer that reads nothing for `write_stall_timeout` (or `pressure_stall_timeout` while a server's budget is short), a connection refused for `max_connections` or `max_connections_per_peer`. One connection's first 16 are WARN (the 16th says so), later ones DEBUG |
//! | `remote.protocol_violation` | WARN | the message | the peer broke the protocol; it gets a goodbye naming the violation and the connection closes |
//! | `remote.accept_failed` | WARN | the message | a server's `accept` failed (e.g. out of file descriptors); it retries after 50 ms |
//! | `remote.destructor_panicked` | ERROR | `peer`, the message | an object's destructor panicked when the connection dropped it |
//! | `remote.error_data_dropped` | DEBUG | the message | a re-raised error's `data` was not one reference-free value and was sent as nil (PROTOCOL.md §3.4) |
//!
//! Peers can cause warnings (a client with a wrong key, one sending
//! oversized frames). Those that cost the peer its connection come at most
//! once per connection; `remote.limit_exceeded` for refusals that leave
//! the connection open (a flood of calls over `max_calls_in_flight`, of
//! replies over a limit) is WARN for a connection's first 16 only, then
//! DEBUG, so a peer sending a few bytes per refused call cannot flood the
//! log (the [counters](#counters) still count every refusal). A peer can
//! still open many connections: rate-limit warnings in the subscriber if
//! hostile peers are expected.
//!
//! # Counters
//!
//! [`Connection::stats`](crate::Connection::stats) and
//! [`ServerHandle::stats`](crate::ServerHandle::stats) give snapshots
//! ([`Stats`](crate::Stats), [`ServerStats`](crate::ServerStats)) of
//! counters kept as relaxed atomics: incoming calls started and finished,
//! error replies by kind, bytes in and out, objects exported now, and for
//! a server its connections open, accepted and refused. See
//! [`crate::stats`].
