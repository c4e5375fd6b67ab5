//! Resource limits. Every limit has a finite default; breaking one gets the
//! offender an error naming the limit, or a closed connection, and nobody
//! else notices.
//!
//! ```
//! use remote_core::{Error, Limits};
//! // Change what you need; keep the other defaults.
//! let strict = Limits { max_frame_len: 64 << 10, ..Limits::default() };
//! assert!(strict.max_frame_len < Limits::default().max_frame_len);
//! // An error from a limit names it.
//! let e = Error::LimitExceeded { limit: "max_frame_len", value: 65536, detail: "frame of 70000 bytes".into() };
//! assert_eq!(e.limit_name(), Some("max_frame_len"));
//! assert_eq!(e.to_string(), "limit exceeded: max_frame_len = 65536 (frame of 70000 bytes)");
//! ```

use std::time::Duration;

/// Per-connection and per-server limits.
///
/// ```
/// use std::time::Duration;
/// use remote_core::Limits;
/// let limits = Limits { max_calls_in_flight: 16, ..Limits::default() };
/// assert_eq!(limits.max_frame_len, 1 << 20);
/// assert_eq!(limits.default_deadline, Duration::from_secs(10));
/// ```
///
/// Fields are public so a limit is changed with struct update syntax;
/// new limits arrive in minor releases of this 0.x crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted after the handshake, in bytes (default 1 MiB).
    /// A larger length prefix closes the connection before anything is
    /// allocated for it. Our own frames are checked too: a call or reply
    /// too large fails with `limit_exceeded`, error text is cut to fit.
    pub max_frame_len: usize,
    /// Largest frame accepted before the handshake completes (default 4 KiB).
    /// A `tls://` or `wss://` client may also send this and 20 KiB before
    /// the TLS handshake ends (its hello and certificate chain): raise it
    /// for client certificate chains over about 20 KiB.
    pub max_handshake_frame_len: usize,
    /// Deepest nesting of arrays and maps in a value (default 64). A value
    /// of ours nested deeper fails its own call (`limit_exceeded`) before
    /// it is sent; one from the peer is a protocol violation.
    pub max_depth: usize,
    /// Incoming calls running at once on one connection (default 128).
    /// Calls beyond it are answered at once with a `limit_exceeded` error.
    /// A call stops counting when its handler's reply is sent (a handler
    /// still stopping after its reply counts against twice this limit);
    /// a cancelled call counts until its handler has really stopped.
    pub max_calls_in_flight: usize,
    /// Outgoing calls waiting for replies on one connection (default 1024).
    /// A cancelled call counts until the peer's reply to it arrives (every
    /// call gets exactly one reply; its id is not reused before).
    pub max_outgoing_calls: usize,
    /// Objects exported to one peer at once (default 10,000).
    pub max_exports: usize,
    /// Objects exported at once on all the connections of one server
    /// together (default 100,000), so what peers can make a server hold
    /// for them is bounded server-wide (a standalone connection has only
    /// `max_exports`). Each connection may still export its first 64 (a
    /// reserve the others cannot use up), so a server holds at most
    /// `max_server_exports + 64 × max_connections`. A reply that would
    /// export past it fails with `limit_exceeded` naming this limit, as
    /// one past `max_exports` does. An id a connection freed below one
    /// it still exports keeps its table's slot until reused (ids are
    /// reused lowest first), and counts a quarter of an export here and
    /// in `max_exports_per_peer` meanwhile.
    pub max_server_exports: usize,
    /// Objects exported at once on the connections of one server from one
    /// peer address (default 25,000, a quarter of `max_server_exports`),
    /// keyed as `max_connections_per_peer` keys addresses, besides each
    /// connection's reserve of 64: one address cannot take every export
    /// the server allows. Unix-socket peers are not counted per peer.
    pub max_exports_per_peer: usize,
    /// Answers of pipelined calls kept *in full* at once on all the
    /// connections of one server together (default 4,096; PROTOCOL.md
    /// §3.10). A peer's kept-answer call keeps its answer until the peer's
    /// finish, as long as it likes, so what they hold is bounded by their
    /// count, not by `memory_budget`, which paces reading and would be
    /// held shut by them. In full, a failed call's error is copied (cut:
    /// about 2.5 KB per answer at most); past this limit an answer is kept
    /// *slim*, with only its error's kind (about 100 bytes), and calls on
    /// it fail with that kind and a message saying the rest was not kept.
    /// Each connection keeps its first 4 in full whatever the others hold.
    /// So a server holds at most about `(max_kept_answers + 4 ×
    /// max_connections) × 2.5 KB` in full (20 MB at the defaults) and
    /// `max_connections × max_calls_in_flight × 100` bytes slim (13 MB).
    /// Pipelining is never refused for it.
    pub max_kept_answers: usize,
    /// Answers kept in full at once on the connections of one server from
    /// one peer address (default 1,024, a quarter of `max_kept_answers`),
    /// keyed as `max_connections_per_peer` keys addresses, besides each
    /// connection's first 4; past it they are kept slim. Unix-socket peers
    /// are not counted per peer.
    pub max_kept_answers_per_peer: usize,
    /// Distinct peer objects imported at once (default 10,000).
    pub max_imports: usize,
    /// Connections a server holds at once (default 1,024). Further ones are
    /// sent a goodbye naming the limit and closed. A closed connection
    /// counts until its socket is gone: its close reads what the peer
    /// still sends and writes the goodbye for up to 5 s each.
    pub max_connections: usize,
    /// Connections a server holds at once from one peer address (default
    /// 32): TCP, TLS and WebSocket peers are keyed by IP address (IPv6 by
    /// its /64 prefix), not port. Further ones are sent a goodbye naming
    /// the limit and closed. Behind a reverse proxy every client has the
    /// proxy's address: raise it there.
    /// Unix-socket peers are not counted per peer (the socket file's
    /// permissions decide who connects); only `max_connections` applies.
    pub max_connections_per_peer: usize,
    /// Blocking methods running at once on one connection (default 8).
    /// Further ones wait for a slot until their deadline. A blocking
    /// method's closure keeps its slot (and its call keeps counting in
    /// `max_calls_in_flight`) until it returns, even after a cancel.
    pub max_blocking_calls: usize,
    /// Blocking methods running at once on all the connections of one
    /// server, or of one standalone connection (default 64). Further ones
    /// wait for a slot until their deadline.
    pub max_server_blocking_calls: usize,
    /// Blocking methods running at once on all the connections of one
    /// server from one peer address (default 16, a quarter of
    /// `max_server_blocking_calls`), keyed as `max_connections_per_peer`
    /// keys addresses. Further ones wait for a slot until their deadline,
    /// so one address cannot hold every server slot. Unix-socket peers are
    /// not counted per peer.
    pub max_blocking_calls_per_peer: usize,
    /// Method handlers being polled at once on all the connections of one
    /// server, or of one standalone connection (default: the machine's
    /// available parallelism less one, at least 1; see
    /// [`default_running_handlers`]). Every poll of a handler, its first
    /// one on the connection's reader included, takes one of these run
    /// turns and gives it back when the poll returns (never across an
    /// `await`). While all are taken, waiting handlers get turns by
    /// [`Priority`](crate::Priority) class, highest first, and within a
    /// class round-robin between connections, so a connection flooding
    /// calls cannot starve the others. A call waiting for a turn counts in
    /// `max_calls_in_flight` and still ends at its deadline or cancel.
    /// Keep it below the runtime's worker threads, so some are always free
    /// to read every connection's calls and queue them fairly.
    pub max_running_handlers: usize,
    /// Time for a peer to complete the handshake (default 10 s). On a
    /// server it counts from the accept: the TLS handshake of `tls://` and
    /// `wss://`, the WebSocket upgrade, the hello and the authentication
    /// exchange all end within it together. A client bounds its TLS
    /// handshake, its upgrade and then its hello by it one after another.
    pub handshake_timeout: Duration,
    /// A connection with no traffic, no calls in flight and no references
    /// held either way for this long is closed; so is one whose partial
    /// frame stalls this long (default 300 s).
    pub idle_timeout: Duration,
    /// Bytes queued for one peer (default 16 MiB). Over it, the connection
    /// stops being read (no new calls start) until the peer has read enough;
    /// replies of handlers already running are still queued, so the queue
    /// can exceed it by at most `max_calls_in_flight × max_frame_len`.
    pub max_write_queue: usize,
    /// A peer with output queued that reads nothing for this long is sent a
    /// goodbye naming this limit and closed (default 30 s). Over a
    /// transport that buffers (TLS, WebSocket), what it holds must be
    /// flushed within this time.
    pub write_stall_timeout: Duration,
    /// On a server whose memory budget is short (used up, or something
    /// waiting for room in it), a peer over TCP (plain, TLS or WebSocket)
    /// with output queued that reads nothing for this long is closed as
    /// `write_stall_timeout` closes it, naming this limit (default 5 s):
    /// what it holds goes to the connections waiting, instead of staying
    /// until `write_stall_timeout`. "Nothing" is less than 32 KiB (half the
    /// `TCP_NOTSENT_LOWAT` a server sets on Linux, where the kernel then
    /// wakes the writer): a peer reading steadily faster than about 7 KB/s
    /// is not closed for it, and nobody is while the budget has room.
    /// Elsewhere (Unix sockets, systems without the option) and on a
    /// standalone connection, whose budget is its own, it never applies.
    /// Zero closes such a peer at once while the budget is short. The same
    /// holds for a peer that sent the length prefix of a frame (its room is
    /// then reserved in the budget) and then less than 32 KiB of the rest
    /// (or not all of it, if less is left) in this long, and for what the
    /// WebSocket or TLS layer holds of a peer's input before it is
    /// delivered (PROTOCOL.md §9).
    pub pressure_stall_timeout: Duration,
    /// Bytes of queued output, buffered input (partly received frames,
    /// reserved when their length prefix is read) and the arguments of
    /// running handlers (at their decoded size, estimated) held for all
    /// connections of one server together; a standalone connection has its
    /// own (default 64 MiB). Over it, connections holding output or running
    /// handlers start no more calls, and large frames and calls with large
    /// arguments wait for room; nobody is disconnected for it.
    /// The default suits a small machine (512 MiB–1 GiB): it is a few full
    /// write queues, and leaves most memory to the application.
    pub memory_budget: usize,
    /// On a server, a connection that did not authenticate, holds no
    /// references either way and has no calls in flight is closed after
    /// this long without traffic (default 30 s), instead of `idle_timeout`.
    pub unauthenticated_idle_timeout: Duration,
    /// Send a keepalive ping when nothing was heard from the peer for this
    /// long (default 30 s; `None` disables pinging). Only sent to peers that
    /// listed the `keepalive` feature in their hello.
    pub keepalive_interval: Option<Duration>,
    /// A peer that sends nothing (no pong, no other frame) for this long
    /// after a ping is declared lost: every pending call fails (default 30 s).
    pub keepalive_timeout: Duration,
    /// Deadline of a call made without one (default 10 s).
    pub default_deadline: Duration,
    /// Longest deadline a peer may ask for on a call we serve (default 600 s).
    pub max_deadline: Duration,
    /// Entries kept from a remote error's `chain` (default 32). Further
    /// entries of a received error are skipped without being stored, and
    /// the last kept entry says how many were omitted; errors we send are
    /// cut the same way.
    pub max_error_chain: usize,
    /// Bytes of text kept from a remote error: kind, type, message, chain
    /// and backtrace together (default 64 KiB). Text past it is cut at a
    /// character boundary and marked with `…`, on receipt and when sending.
    pub max_error_text: usize,
    /// Subscriptions one connection's listeners hold on one shared
    /// collection ([`collections`](crate::collections)) at once (default 16).
    /// Further `subscribe` calls fail with `limit_exceeded`; subscribing a
    /// listener that is already subscribed is a no-op and counts once.
    pub max_subscriptions_per_connection: usize,
    /// Entries one connection's cache of `#[remote(cache(..))]` results
    /// holds (default 10,000); the least useful are evicted past it.
    pub cache_max_entries: usize,
    /// Bytes (encoded arguments and results, and 320 per entry for what
    /// the cache holds besides) one connection's cache holds (default
    /// 8 MiB). Each entry also counts `cache_max_bytes / cache_max_entries`
    /// of it, so both bounds hold at once.
    pub cache_max_bytes: usize,
    /// Bytes the caches of all of a server's connections hold together,
    /// where the server calls cached methods on objects its clients pass
    /// it (default 32 MiB): each entry's encoded arguments and result, and
    /// 320 bytes for what the cache holds for it besides (counted as bytes
    /// alone, entries of a few bytes held 5.7 MB per connection against
    /// 30 KB counted, a red-team pass). A result
    /// that would take them past it is not cached (the call still goes to
    /// the peer); each connection's cache still keeps within
    /// `cache_max_bytes`. A standalone connection has only its own bound.
    pub server_cache_max_bytes: usize,
    /// How long a `#[remote(invalidates(..))]` write (or
    /// [`cache::invalidate`](crate::cache::invalidate)) waits for the other
    /// connections holding the object to acknowledge the invalidation
    /// before its reply goes anyway (default 2 s). A connection that missed
    /// it is counted as lagging and not waited for again until it catches
    /// up (see CACHING.md).
    pub invalidation_ack_timeout: Duration,
    /// How many `invalidation_ack_timeout`s' worth (less an eighth each)
    /// of late acknowledgements one connection's allowance holds (default
    /// 3: 5.25 s). An acknowledgement within an eighth of the timeout is
    /// prompt and free; a wait past that reserves from the allowance a
    /// 64th of the timeout at a time (31.25 ms; up to the rest of the
    /// timeout, or what is left) and gives back what it did not use. The
    /// allowance refills at an eighth of wall time; once a wait found it
    /// short of the rest of its timeout (what other waits under way hold
    /// counted as left), writes do not wait for the connection (it still
    /// gets every invalidation) until one timeout's worth is back.
    /// So a peer that acknowledges each one late, just after the timeout
    /// or just before it, holds writes up over a span T by at most this
    /// many timeouts plus T/8 in total beyond an eighth of one per write
    /// (0: writes never wait). A server keeps one per peer address too,
    /// across its TCP, TLS and WebSocket connections, charged once per
    /// write: a peer that reconnects starts with no fresh allowance, and
    /// peers behind one NAT share one. The same allowance, and the same
    /// timeout as a subscriber's patience, pay for the time writes to a
    /// [`SharedMap`](crate::collections::SharedMap) wait for a lagging
    /// subscriber (its module doc): with 0, those writes never wait either,
    /// and a subscriber that falls behind the change log's bounds is
    /// dropped.
    pub invalidation_max_missed_acks: u32,
    /// Entries a server's cache of `#[remote(memoize(..))]` replies holds
    /// (default 10,000), shared by its connections.
    pub memo_max_entries: usize,
    /// Bytes (encoded arguments and replies) a server's memo cache holds
    /// (default 16 MiB). Each entry also counts `memo_max_bytes /
    /// memo_max_entries` of it, so both bounds hold at once.
    pub memo_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_len: 1 << 20,
            max_handshake_frame_len: 4 << 10,
            max_depth: 64,
            max_calls_in_flight: 128,
            max_outgoing_calls: 1024,
            max_exports: 10_000,
            max_server_exports: 100_000,
            max_exports_per_peer: 25_000,
            max_kept_answers: 4096,
            max_kept_answers_per_peer: 1024,
            max_imports: 10_000,
            max_connections: 1024,
            max_connections_per_peer: 32,
            max_blocking_calls: 8,
            max_server_blocking_calls: 64,
            max_blocking_calls_per_peer: 16,
            max_running_handlers: default_running_handlers(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_write_queue: 16 << 20,
            write_stall_timeout: Duration::from_secs(30),
            pressure_stall_timeout: Duration::from_secs(5),
            memory_budget: 64 << 20,
            unauthenticated_idle_timeout: Duration::from_secs(30),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(30),
            default_deadline: Duration::from_secs(10),
            max_deadline: Duration::from_secs(600),
            max_error_chain: 32,
            max_error_text: 64 << 10,
            max_subscriptions_per_connection: 16,
            cache_max_entries: 10_000,
            cache_max_bytes: 8 << 20,
            server_cache_max_bytes: 32 << 20,
            invalidation_ack_timeout: Duration::from_secs(2),
            invalidation_max_missed_acks: 3,
            memo_max_entries: 10_000,
            memo_max_bytes: 16 << 20,
        }
    }
}

/// The default of [`Limits::max_running_handlers`]: the machine's
/// available parallelism (what a default multi-thread tokio runtime has as
/// worker threads) less one, at least 1, so one worker stays free to read
/// connections while handlers use the others. Read once per process.
pub fn default_running_handlers() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_finite_and_explicit() {
        let l = Limits::default();
        let sizes = [
            ("max_frame_len", l.max_frame_len, 1 << 20),
            ("max_handshake_frame_len", l.max_handshake_frame_len, 4096),
            ("max_depth", l.max_depth, 64),
            ("max_calls_in_flight", l.max_calls_in_flight, 128),
            ("max_outgoing_calls", l.max_outgoing_calls, 1024),
            ("max_exports", l.max_exports, 10_000),
            ("max_server_exports", l.max_server_exports, 100_000),
            ("max_exports_per_peer", l.max_exports_per_peer, 25_000),
            ("max_kept_answers", l.max_kept_answers, 4096),
            (
                "max_kept_answers_per_peer",
                l.max_kept_answers_per_peer,
                1024,
            ),
            ("max_imports", l.max_imports, 10_000),
            ("max_connections", l.max_connections, 1024),
            ("max_connections_per_peer", l.max_connections_per_peer, 32),
            ("max_blocking_calls", l.max_blocking_calls, 8),
            ("max_server_blocking_calls", l.max_server_blocking_calls, 64),
            (
                "max_blocking_calls_per_peer",
                l.max_blocking_calls_per_peer,
                16,
            ),
            (
                "max_running_handlers",
                l.max_running_handlers,
                default_running_handlers(),
            ),
            ("max_write_queue", l.max_write_queue, 16 << 20),
            ("max_error_chain", l.max_error_chain, 32),
            ("max_error_text", l.max_error_text, 64 << 10),
            (
                "max_subscriptions_per_connection",
                l.max_subscriptions_per_connection,
                16,
            ),
            ("memory_budget", l.memory_budget, 64 << 20),
            ("cache_max_entries", l.cache_max_entries, 10_000),
            ("cache_max_bytes", l.cache_max_bytes, 8 << 20),
            ("server_cache_max_bytes", l.server_cache_max_bytes, 32 << 20),
            ("memo_max_entries", l.memo_max_entries, 10_000),
            ("memo_max_bytes", l.memo_max_bytes, 16 << 20),
            (
                "invalidation_max_missed_acks",
                l.invalidation_max_missed_acks as usize,
                3,
            ),
        ];
        for (name, got, want) in sizes {
            assert_eq!(got, want, "{name}");
            assert!(got > 0 && got < usize::MAX / 2, "{name} must be finite");
        }
        for (name, d, want) in [
            ("handshake_timeout", l.handshake_timeout, 10),
            ("idle_timeout", l.idle_timeout, 300),
            ("default_deadline", l.default_deadline, 10),
            ("max_deadline", l.max_deadline, 600),
            ("write_stall_timeout", l.write_stall_timeout, 30),
            ("pressure_stall_timeout", l.pressure_stall_timeout, 5),
            (
                "unauthenticated_idle_timeout",
                l.unauthenticated_idle_timeout,
                30,
            ),
            (
                "keepalive_interval",
                l.keepalive_interval.unwrap_or_default(),
                30,
            ),
            ("keepalive_timeout", l.keepalive_timeout, 30),
            ("invalidation_ack_timeout", l.invalidation_ack_timeout, 2),
        ] {
            assert_eq!(d, Duration::from_secs(want), "{name}");
        }
        // A frame can never exceed what a u32 length prefix can say.
        assert!(l.max_frame_len <= u32::MAX as usize);
        assert!(l.max_handshake_frame_len < l.max_frame_len);
        // A bounded error always fits in a frame.
        assert!(l.max_error_text < l.max_frame_len / 2);
        // One peer cannot take every connection or blocking slot, and the
        // blocking slots stay below tokio's blocking pool (512 threads).
        assert!(l.max_connections_per_peer < l.max_connections);
        assert!(l.max_blocking_calls < l.max_server_blocking_calls);
        assert!(l.max_blocking_calls_per_peer < l.max_server_blocking_calls);
        assert!(l.max_server_blocking_calls < 512);
        // Run turns: at least one, and fewer than the machine's threads
        // where there are two or more (one stays free for reading).
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(l.max_running_handlers >= 1);
        assert!(l.max_running_handlers < cpus || cpus == 1);
    }
}
