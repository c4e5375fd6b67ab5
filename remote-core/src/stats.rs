//! Counters for operators: calls served, error replies by kind, bytes in
//! and out, per connection ([`Connection::stats`](crate::Connection::stats))
//! and server-wide ([`ServerHandle::stats`](crate::ServerHandle::stats)).
//!
//! Counting is a relaxed atomic add per event (a call started, a reply
//! queued, a read or write of the transport) to the connection's own
//! counters; a snapshot reads them without stopping anything, so counters
//! read at one instant may be a few events apart from one another while
//! traffic flows. A server's totals are not a second set of counters every
//! connection adds to (one cache line written by every core on every call):
//! a snapshot sums its open connections' counters, and those of the closed
//! ones, added in as each closes.
//!
//! ```
//! use remote_core::collections::{RemoteList, SharedVec};
//! use remote_core::{Connection, Server};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> remote_core::Result<()> {
//! let list = SharedVec::<u32>::new();
//! let server = Server::bind("tcp://127.0.0.1:0").await?.serve(move |_| list.remote());
//! let client = Connection::connect(server.local_addr()).await?;
//! let remote = client.root::<dyn RemoteList<u32>>();
//! remote.push(1).await?;
//! remote.push(2).await?;
//!
//! let s = server.stats();
//! assert_eq!(s.connections_open, 1);
//! assert_eq!(s.calls.calls_started, 2);
//! assert_eq!(s.calls.calls_finished, 2);
//! assert_eq!(s.calls.errors_total(), 0);
//! assert!(s.calls.bytes_in > 0 && s.calls.bytes_out > 0);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Error kinds counted on their own (PROTOCOL.md §3.4); any other kind a
/// handler re-raises is counted under `"other"`.
pub const ERROR_KINDS: [&str; 18] = [
    "application",
    "panic",
    "unknown_object",
    "unknown_method",
    "bad_arguments",
    "unauthenticated",
    "limit_exceeded",
    "deadline_exceeded",
    "cancelled",
    "connection_lost",
    "protocol",
    "encode",
    "io",
    "address",
    "handshake",
    "tls",
    "blocking_in_async",
    "other",
];

/// The index of `kind` in [`ERROR_KINDS`] (`"other"` if not listed).
pub(crate) fn kind_index(kind: &str) -> usize {
    ERROR_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(ERROR_KINDS.len() - 1)
}

/// Adds `n` to a counter that has one writer at a time: a plain load and
/// store, no atomic read-modify-write (a `lock`-prefixed instruction,
/// costly next to the rest of a call) on every frame.
#[inline]
fn add_one_writer(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One connection's counters (a server's totals sum them: [`Totals`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls_started: AtomicU64,
    calls_finished: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Counters {
    fn snapshot(&self, exports: usize) -> Stats {
        let mut sum = Sums::default();
        self.add_to(&mut sum);
        sum.stats(exports)
    }

    /// Adds what these counters read now to `sum`.
    fn add_to(&self, sum: &mut Sums) {
        sum.calls_started += self.calls_started.load(Relaxed);
        sum.calls_finished += self.calls_finished.load(Relaxed);
        for (s, n) in sum.errors.iter_mut().zip(&self.errors) {
            *s += n.load(Relaxed);
        }
        sum.bytes_in += self.bytes_in.load(Relaxed);
        sum.bytes_out += self.bytes_out.load(Relaxed);
    }
}

/// Counters summed (plain numbers: a server's closed connections, or a
/// snapshot being made).
#[derive(Debug, Default, Clone)]
struct Sums {
    calls_started: u64,
    calls_finished: u64,
    errors: [u64; ERROR_KINDS.len()],
    bytes_in: u64,
    bytes_out: u64,
}

impl Sums {
    fn stats(&self, exports: usize) -> Stats {
        Stats {
            calls_started: self.calls_started,
            calls_finished: self.calls_finished,
            errors: ERROR_KINDS.iter().copied().zip(self.errors).collect(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            exports,
        }
    }
}

/// A server's call counters: its open connections' own counters, and the
/// sum of its closed ones'. Each connection registers on opening and adds
/// its counters to the sum when its last handle is gone (when nothing can
/// count into them any more), under the lock a snapshot takes, so the
/// totals never go back.
#[derive(Debug, Default)]
pub(crate) struct Totals(Mutex<TotalsInner>);

#[derive(Debug, Default)]
struct TotalsInner {
    closed: Sums,
    /// Open connections' counters (`None`: a free slot, listed in `free`).
    open: Vec<Option<Arc<Counters>>>,
    free: Vec<usize>,
}

impl Totals {
    fn lock(&self) -> std::sync::MutexGuard<'_, TotalsInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection's counters; returns its slot.
    fn open(&self, counters: &Arc<Counters>) -> usize {
        let mut t = self.lock();
        match t.free.pop() {
            Some(i) => {
                t.open[i] = Some(counters.clone());
                i
            }
            None => {
                t.open.push(Some(counters.clone()));
                t.open.len() - 1
            }
        }
    }

    /// The connection in `slot` is gone: its counters join the sum.
    fn close(&self, slot: usize) {
        let mut t = self.lock();
        let t = &mut *t;
        if let Some(c) = t.open.get_mut(slot).and_then(Option::take) {
            c.add_to(&mut t.closed);
            t.free.push(slot);
        }
        // A server that once had many connections open at once does not
        // keep their slots for ever.
        if t.free.len() == t.open.len() && t.open.capacity() > 64 {
            t.open = Vec::new();
            t.free = Vec::new();
        }
    }

    fn snapshot(&self, exports: usize) -> Stats {
        let t = self.lock();
        let mut sum = t.closed.clone();
        for c in t.open.iter().flatten() {
            c.add_to(&mut sum);
        }
        sum.stats(exports)
    }
}

/// A connection's counters (registered with its server's [`Totals`]).
#[derive(Debug, Default)]
pub(crate) struct Meter {
    own: Arc<Counters>,
    /// The server's totals and this connection's slot there.
    server: Option<(Arc<Totals>, usize)>,
    /// Limit hits of this connection so far (for the cap on warnings).
    limit_hits: AtomicU64,
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some((totals, slot)) = &self.server {
            totals.close(*slot);
        }
    }
}

impl Meter {
    /// Counters that also count in `server` (a server's totals).
    pub(crate) fn new(server: Option<Arc<Totals>>) -> Meter {
        let own = Arc::new(Counters::default());
        let server = server.map(|t| {
            let slot = t.open(&own);
            (t, slot)
        });
        Meter {
            own,
            server,
            limit_hits: AtomicU64::new(0),
        }
    }

    /// This connection hit `limit`: a `remote.limit_exceeded` event, at
    /// WARN for its first [`LIMIT_WARNINGS_PER_CONNECTION`] hits only.
    ///
    /// [`LIMIT_WARNINGS_PER_CONNECTION`]: crate::trace::LIMIT_WARNINGS_PER_CONNECTION
    pub(crate) fn limit_hit(&self, limit: &str, message: &str) {
        let seen = self.limit_hits.fetch_add(1, Relaxed);
        crate::trace::limit_hit_nth(limit, message, seen);
    }

    /// An incoming call arrived (served or refused at once).
    pub(crate) fn call_started(&self) {
        // Its one writer is the connection's reader.
        add_one_writer(&self.own.calls_started, 1);
    }

    /// A reply to an incoming call was queued: a return (`None`) or an
    /// error of kind `ERROR_KINDS[i]` (`Some(i)`). Called with the
    /// connection's output queue locked, which makes it these counters'
    /// one writer at a time (`Shared::send_reply`).
    pub(crate) fn replied_queued(&self, error: Option<usize>) {
        let c = &self.own;
        add_one_writer(&c.calls_finished, 1);
        if let Some(i) = error {
            add_one_writer(&c.errors[i], 1);
        }
    }

    /// `n` bytes were read from the transport (by the connection's
    /// reader, the counter's one writer).
    pub(crate) fn read(&self, n: usize) {
        add_one_writer(&self.own.bytes_in, n as u64);
    }

    /// The bytes read from the transport so far (a count that only grows):
    /// read by the connection's reader, the counter's one writer.
    pub(crate) fn bytes_in(&self) -> u64 {
        self.own.bytes_in.load(Relaxed)
    }

    /// `n` bytes were written to the transport (by the write token's
    /// holder, the counter's one writer: the token passes under a lock).
    pub(crate) fn wrote(&self, n: usize) {
        add_one_writer(&self.own.bytes_out, n as u64);
    }

    /// This connection's counters, with `exports` objects exported now.
    pub(crate) fn snapshot(&self, exports: usize) -> Stats {
        self.own.snapshot(exports)
    }
}

/// What a connection (or, summed, a server) has done so far: a snapshot
/// of its counters. Calls are the *incoming* calls this side served; bytes
/// are those of the protocol stream (frames, the handshake included) as
/// read from and written to the transport (inside TLS and WebSocket
/// framing).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Incoming calls received, including those refused at once (over a
    /// limit, unknown object).
    pub calls_started: u64,
    /// Incoming calls answered (a return or an error was queued for the
    /// caller). `calls_started - calls_finished` are running, or were cut
    /// off by the connection closing.
    pub calls_finished: u64,
    /// Error replies sent, by kind: every kind in [`ERROR_KINDS`] is a key
    /// (zero if none was sent), so `errors["limit_exceeded"]` is always
    /// valid.
    pub errors: BTreeMap<&'static str, u64>,
    /// Bytes read from the peer.
    pub bytes_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
    /// Objects exported to the peer now (references it holds; the root,
    /// object 0, is not counted).
    pub exports: usize,
}

impl Stats {
    /// Error replies of every kind.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A server's counters: its connections, and the [`Stats`] of every
/// connection it accepted summed (`exports` over the open ones).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now (in their handshake or serving).
    pub connections_open: usize,
    /// Connections accepted since the server started (refused ones
    /// excluded).
    pub connections_total: u64,
    /// Connections refused at once for `max_connections` or
    /// `max_connections_per_peer`.
    pub connections_refused: u64,
    /// Calls, errors and bytes of all connections, closed ones included.
    pub calls: Stats,
}

/// A server's totals (its connections register in `calls`).
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    pub(crate) calls: Arc<Totals>,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl ServerCounters {
    pub(crate) fn snapshot(&self, open: usize, exports: usize) -> ServerStats {
        ServerStats {
            connections_open: open,
            connections_total: self.accepted.load(Relaxed),
            connections_refused: self.refused.load(Relaxed),
            calls: self.calls.snapshot(exports),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_counts_into_its_own_counters_and_its_servers() {
        let server = Arc::new(Totals::default());
        let a = Meter::new(Some(server.clone()));
        let b = Meter::new(Some(server.clone()));
        a.call_started();
        a.replied_queued(None);
        b.call_started();
        b.replied_queued(Some(kind_index("limit_exceeded")));
        b.call_started();
        b.replied_queued(Some(kind_index("something new")));
        a.read(10);
        b.wrote(7);
        let sa = a.snapshot(3);
        assert_eq!((sa.calls_started, sa.calls_finished), (1, 1));
        assert_eq!((sa.bytes_in, sa.bytes_out, sa.exports), (10, 0, 3));
        assert_eq!(sa.errors_total(), 0);
        let sb = b.snapshot(0);
        assert_eq!(sb.errors["limit_exceeded"], 1);
        assert_eq!(sb.errors["other"], 1);
        assert_eq!(sb.errors.len(), ERROR_KINDS.len());
        let total = server.snapshot(0);
        assert_eq!((total.calls_started, total.calls_finished), (3, 3));
        assert_eq!((total.bytes_in, total.bytes_out), (10, 7));
        assert_eq!(total.errors_total(), 2);
        // A closed connection's counts stay in the totals; its slot is
        // taken by the next one, which starts from zero.
        drop(b);
        let c = Meter::new(Some(server.clone()));
        c.call_started();
        let total = server.snapshot(0);
        assert_eq!((total.calls_started, total.calls_finished), (4, 3));
        assert_eq!(total.errors["limit_exceeded"], 1);
        assert_eq!(c.snapshot(0).calls_started, 1);
        drop((a, c));
        assert_eq!(server.snapshot(0).calls_started, 4);
        assert!(server.lock().open.iter().all(Option::is_none));
    }
}
