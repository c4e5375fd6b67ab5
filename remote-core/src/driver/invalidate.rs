//! Pushed cache invalidation (PROTOCOL.md §3.9, CACHING.md): the serving
//! side sends `invalidate(token, object, methods)` to every other
//! connection holding the object and waits, bounded by
//! [`Limits::invalidation_ack_timeout`](crate::Limits::invalidation_ack_timeout),
//! for their acknowledgements before the write's reply goes; the receiving
//! side drops the entries and acknowledges.
//!
//! What is held, and its bounds: a process-wide set of the open
//! connections that negotiated the feature (one entry per connection,
//! removed when it closes) and an index of the objects they export and
//! serve as their root ([`BY_KEY`]: an entry per export, bounded as
//! exports are, removed with it), and per connection two counters (last
//! token sent, last token acknowledged) and a bucket of lateness, plus
//! what is held back while its output queue has no room (`pushes.rs`:
//! merged per object, counted in the budget); per server, a bucket per
//! peer address not full (`lateness.rs`: at most 4,096), and per write
//! one reservation per peer address among its holders. Acknowledgements
//! are cumulative, so a peer that never acknowledges makes the server hold
//! nothing per invalidation: a waiting writer holds a watch receiver for
//! at most the timeout, and a connection that missed it is "lagging" and
//! not waited for again until it acknowledges that token (its frames
//! still go out; a peer that stops reading them is closed by
//! `write_stall_timeout`).
//!
//! Lateness is budgeted, not only misses (`lateness.rs`): an
//! acknowledgement within an eighth of the timeout (250 ms by default) is
//! prompt and costs the peer nothing; a wait that goes on past that
//! reserves from the connection's allowance and its peer address's a
//! slice (a 64th of the timeout, 31.25 ms by default) at a time, up to
//! the rest of the timeout (at most 56 slices), stops at the end of a
//! reservation that came up short, and gives back what it did not use.
//! The allowances hold
//! [`Limits::invalidation_max_missed_acks`](crate::Limits::invalidation_max_missed_acks)
//! timeouts' worth (less the prompt part) and refill at an eighth of wall
//! time; one that a wait found short of the rest of its timeout (what
//! other waits under way hold counted as left) is drained, and writes do
//! not wait for the peer until it refilled one timeout's worth. So over
//! any span of time T one holder (one address) holds writes up, summed
//! over all of them and however many run at once, by at most the
//! allowance plus T/8 beyond a prompt acknowledgement each, however it
//! times its acknowledgements: one that acknowledged each push just
//! before the timeout (never missing one) held every write up by the full
//! timeout for as long as it stayed connected (a red-team pass). An honest peer
//! slower than the prompt part is waited for while its lateness averages
//! under T/8, and after a burst beyond that is lagging until it refilled
//! (never for good).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::lateness::AddrWait;
use super::pushes::Pushed;
use super::shared::Shared;
use crate::interface::Dispatch;
use crate::proto::{encode_invalidated, ExportIndex, ExportKey, IdMap, ObjectId};

/// Process-wide counters of pushed invalidation ([`push_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Invalidations pushed to peers: one per holding connection per write.
    pub pushed: u64,
    /// Waits that ended with the peer's acknowledgement (or its close).
    pub acknowledged: u64,
    /// Waits that hit `invalidation_ack_timeout` (or the end of what they
    /// could reserve from the holder's allowance for lateness): the reply
    /// went without the acknowledgement, and the connection became
    /// lagging.
    pub lagged: u64,
    /// Waits that ended with the acknowledgement, but after the prompt
    /// part of the timeout (an eighth of it): what they took beyond it
    /// was paid from the holder's allowance (counted in `acknowledged`
    /// too).
    pub late: u64,
    /// Pushes to a lagging connection, sent without waiting.
    pub not_waited: u64,
    /// Pushes held back, merged per object, because the holder's output
    /// queue had no room (sent once it has, and waited for like any
    /// other).
    pub held_back: u64,
    /// Connections looked at to find an object's holders: those that
    /// export it or serve it as their root, not every connection.
    pub examined: u64,
}

static PUSHED: AtomicU64 = AtomicU64::new(0);
static ACKNOWLEDGED: AtomicU64 = AtomicU64::new(0);
static LAGGED: AtomicU64 = AtomicU64::new(0);
static LATE: AtomicU64 = AtomicU64::new(0);
static NOT_WAITED: AtomicU64 = AtomicU64::new(0);
static HELD_BACK: AtomicU64 = AtomicU64::new(0);
static EXAMINED: AtomicU64 = AtomicU64::new(0);

/// The counters of invalidations pushed by every connection of this
/// process since it started.
pub fn push_stats() -> PushStats {
    PushStats {
        pushed: PUSHED.load(Ordering::Relaxed),
        acknowledged: ACKNOWLEDGED.load(Ordering::Relaxed),
        lagged: LAGGED.load(Ordering::Relaxed),
        late: LATE.load(Ordering::Relaxed),
        not_waited: NOT_WAITED.load(Ordering::Relaxed),
        held_back: HELD_BACK.load(Ordering::Relaxed),
        examined: EXAMINED.load(Ordering::Relaxed),
    }
}

/// Open connections that negotiated the feature, by address.
static HOLDERS: LazyLock<Mutex<HashMap<usize, Weak<Shared>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn holders() -> std::sync::MutexGuard<'static, HashMap<usize, Weak<Shared>>> {
    HOLDERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connections an index entry names: a connection or two per object,
/// inline, so an export allocates nothing more (`tests/call_allocs.rs`).
type Conns = smallvec::SmallVec<[usize; 2]>;

/// Part of the index, keyed by our own objects' addresses (never the
/// peer's choice: the export table's fast hasher).
type Index<K> = Mutex<IdMap<K, Conns>>;

/// Parts of [`BY_KEY`]: every export and release of a registered
/// connection takes one.
const SHARDS: usize = 32;

/// Of the registered connections, which export each object (by key; a
/// superset of those whose peer was sent it): with [`ROOTS`], what a write
/// looks at. (Scanning every connection, a thousand idle ones added 47 µs
/// to each write: a red-team pass.)
static BY_KEY: LazyLock<[Index<ExportKey>; SHARDS]> =
    LazyLock::new(|| std::array::from_fn(|_| Index::default()));

/// Which serve each object as their root, by its address (`None`: a root
/// that does not tell it, `Dispatch::object_addr`, looked at for every
/// write).
static ROOTS: LazyLock<Index<Option<usize>>> = LazyLock::new(Index::default);

fn by_key(key: &ExportKey) -> std::sync::MutexGuard<'static, IdMap<ExportKey, Conns>> {
    // Allocations are 16-byte aligned at least: the bits above spread.
    let shard = &BY_KEY[(key.addr >> 4) % SHARDS];
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

fn roots() -> std::sync::MutexGuard<'static, IdMap<Option<usize>, Conns>> {
    ROOTS.lock().unwrap_or_else(|p| p.into_inner())
}

fn add_to<K: std::hash::Hash + Eq>(map: &mut IdMap<K, Conns>, k: K, conn: usize) {
    map.entry(k).or_default().push(conn);
}

fn remove_from<K: std::hash::Hash + Eq>(map: &mut IdMap<K, Conns>, k: &K, conn: usize) {
    if let Some(conns) = map.get_mut(k) {
        if let Some(i) = conns.iter().position(|&c| c == conn) {
            conns.swap_remove(i);
        }
        if conns.is_empty() {
            map.remove(k);
        }
    }
}

/// A registered connection, as its export table tells [`BY_KEY`].
#[derive(Debug)]
struct Holder(usize);

impl ExportIndex for Holder {
    fn added(&self, key: &ExportKey) {
        add_to(&mut by_key(key), *key, self.0);
    }

    fn removed(&self, key: &ExportKey) {
        remove_from(&mut by_key(key), key, self.0);
    }
}

/// Adds a connection whose handshake completed, if both peers listed the
/// `invalidate` feature (a peer that did not is never sent one).
///
/// Today `disconnect` (which unregisters) runs only on the reader task,
/// spawned after this, or on set-up paths before it; the closed check is
/// still made under the registry's lock (`disconnect` marks the connection
/// closed before it takes the lock to unregister), so a later caller of
/// `disconnect` on another task cannot leave an entry behind (its `Weak`
/// would pin the connection's allocation for the life of the process).
pub(crate) fn register(shared: &Arc<Shared>) {
    if !shared.core().invalidate_negotiated() {
        return;
    }
    let conn = Arc::as_ptr(shared) as usize;
    let mut all = holders();
    if !shared.is_closed() {
        all.insert(conn, Arc::downgrade(shared));
        let mut core = shared.core();
        if let Some(root) = core.exports().get(ObjectId::ROOT) {
            add_to(&mut roots(), root.object_addr(), conn);
        }
        core.set_export_holders(Some(Arc::new(Holder(conn))));
    }
}

/// Removes a closing connection.
pub(crate) fn unregister(shared: &Shared) {
    let conn = shared as *const Shared as usize;
    if holders().remove(&conn).is_some() {
        let mut core = shared.core();
        core.set_export_holders(None);
        if let Some(root) = core.exports().get(ObjectId::ROOT) {
            remove_from(&mut roots(), &root.object_addr(), conn);
        }
    }
    shared.drop_held_back();
}

impl Shared {
    /// The peer's `invalidate`: drops the named methods' entries of its
    /// object (only methods this side has cached: the names cannot grow
    /// the cache's bookkeeping), then acknowledges, unless the output
    /// queued for the peer leaves no room (`share.rs`): invalidates are
    /// read whatever the queue holds, so a peer that floods them and reads
    /// nothing would otherwise grow it by an acknowledgement each. A
    /// skipped acknowledgement is covered by the next one (they are
    /// cumulative, PROTOCOL.md §3.9); until then the sender counts this
    /// side as lagging, as it would a peer that reads too slowly.
    pub(super) fn on_invalidate(&self, token: u64, object: ObjectId, methods: &[&str]) {
        if let Some(cache) = self.cache.get() {
            cache.invalidate_known(object, methods);
        }
        let room = super::share::queue_has_room(
            self.queued_output(),
            self.limits.max_write_queue,
            &self.budget,
        );
        if room {
            let _ = self.send(&encode_invalidated(token));
        }
    }

    /// The peer's acknowledgement: `Err` (a protocol violation) for a
    /// token never sent; an old token is ignored.
    pub(super) fn on_invalidated(&self, token: u64) -> Result<(), String> {
        let sent = self.pushes.sent();
        if token > sent {
            return Err(format!(
                "acknowledgement of invalidation {token}, but only {sent} were sent"
            ));
        }
        self.pushes.acked.send_if_modified(|a| {
            let newer = token > *a;
            if newer {
                *a = token;
            }
            newer
        });
        Ok(())
    }

    /// Waits until the peer acknowledged the push (for one held back:
    /// once sent) or closed, for at most its `invalidation_ack_timeout`;
    /// past the prompt part of the timeout, for at most what it reserved
    /// from its connection's and its peer address's allowance (`addr`:
    /// this write's waits behind that address; `lateness.rs`), and one
    /// that stops without the acknowledgement makes it lagging. Whether
    /// it acknowledged (or closed).
    async fn await_ack(self: Arc<Self>, pushed: Pushed, addr: Option<&AddrWait>) -> bool {
        let mut acked = self.pushes.acked.subscribe();
        let mut flushed = self.pushes.flushed.subscribe();
        let wait = async {
            let token = match pushed {
                Pushed::Sent(token) => token,
                Pushed::HeldBack(flushes) => match flushed.wait_for(|&(n, _)| n > flushes).await {
                    Ok(sent) => sent.1,
                    Err(_) => return,
                },
            };
            let _ = acked.wait_for(|a| *a >= token).await;
        };
        let done = async {
            tokio::select! {
                _ = wait => {}
                _ = self.closed_token().cancelled() => {}
            }
        };
        tokio::pin!(done);
        // The common case, a prompt acknowledgement, costs one timer, as
        // a single wait for the whole timeout would.
        let start = crate::rt::time::Instant::now();
        let prompt = self.prompt_ack();
        if crate::rt::time::timeout_at(start + prompt, done.as_mut())
            .await
            .is_ok()
        {
            ACKNOWLEDGED.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // Late: every moment from here on is paid from the allowance, so
        // the wait reserves a slice of it (a 64th of the timeout) at a
        // time, up to the rest of the timeout, and stops when a
        // reservation comes up short (at most 56 of them, and as many
        // timers); what it does not use is given back when `late` is
        // dropped (here, or if the write is). Reserving the whole rest up
        // front, a few overlapping writes held an honest holder's
        // allowance while they used a sliver of it, and the next one did
        // not wait for it (review of a5f3e43); reserving the prompt part
        // at a time, bursts of them did (review of 0bf23a4).
        let mut late = self.go_late(addr, start + prompt);
        let answered = loop {
            let until = start + (prompt + late.limit);
            if crate::rt::time::timeout_at(until, done.as_mut())
                .await
                .is_ok()
            {
                break true;
            }
            if !late.extend() {
                break false;
            }
        };
        let limit = prompt + late.limit;
        drop(late);
        if answered {
            ACKNOWLEDGED.fetch_add(1, Ordering::Relaxed);
            LATE.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // Lagging until it acknowledges the push: the token that carried
        // it, or for one still held back the next token, which the send
        // of what is held back starts with.
        let token = match pushed {
            Pushed::Sent(token) => token,
            Pushed::HeldBack(flushes) => match *self.pushes.flushed.borrow() {
                (n, sent) if n > flushes => sent,
                _ => self.pushes.sent() + 1,
            },
        };
        LAGGED.fetch_add(1, Ordering::Relaxed);
        self.missed_ack(token);
        tracing::debug!(
            peer = %self.peer(),
            "no acknowledgement of invalidation {token} within {limit:?} \
             (invalidation_ack_timeout = {:?})",
            self.limits.invalidation_ack_timeout
        );
        self.is_closed()
    }
}

/// The connections (other than `except`) holding the object `key` (or
/// serving it as their root, `is_root`), with its id on each: looked for
/// among those the index names only ([`BY_KEY`], [`ROOTS`]).
fn holders_of(
    key: &ExportKey,
    is_root: &dyn Fn(&Arc<dyn Dispatch>) -> bool,
    except: Option<&Shared>,
) -> Vec<(Arc<Shared>, ObjectId)> {
    let mut conns: Vec<usize> = by_key(key).get(key).map_or_else(Vec::new, |c| c.to_vec());
    {
        let roots = roots();
        let addrs = [Some(key.addr), None];
        conns.extend(addrs.iter().filter_map(|a| roots.get(a)).flatten());
    }
    conns.sort_unstable();
    conns.dedup();
    let all: Vec<Weak<Shared>> = {
        let all = holders();
        conns.iter().filter_map(|c| all.get(c).cloned()).collect()
    };
    EXAMINED.fetch_add(all.len() as u64, Ordering::Relaxed);
    let mut found = Vec::new();
    for weak in all {
        let Some(shared) = weak.upgrade() else {
            continue;
        };
        if except.is_some_and(|e| std::ptr::eq(e, &*shared)) {
            continue;
        }
        let id = {
            let core = shared.core();
            let exports = core.exports();
            // Only an object the peer was sent: one whose message is still
            // being encoded (and may yet be refused) is not the peer's to
            // know of (PROTOCOL.md §4).
            let sent = exports
                .id_of(key)
                .filter(|&id| exports.get_sent(id).is_some());
            sent.or_else(|| {
                exports
                    .get(ObjectId::ROOT)
                    .filter(|root| is_root(root))
                    .map(|_| ObjectId::ROOT)
            })
        };
        if let Some(id) = id {
            found.push((shared, id));
        }
    }
    found
}

/// What one invalidation reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvalidationReport {
    /// Connections that were sent an `invalidate`.
    pub notified: usize,
    /// Of those, connections that did not acknowledge within
    /// `invalidation_ack_timeout` (or were already lagging).
    pub unacknowledged: usize,
    /// Of those, connections the write waited for until
    /// `invalidation_ack_timeout` (the others were lagging, and not
    /// waited for).
    pub timed_out: usize,
}

/// Pushes the invalidation of `methods` of the object `key` to every
/// connection (but `except`) holding it, then waits for their
/// acknowledgements (each bounded by its `invalidation_ack_timeout`).
pub(crate) async fn push(
    key: ExportKey,
    is_root: &(dyn Fn(&Arc<dyn Dispatch>) -> bool + Sync),
    methods: &[&str],
    except: Option<&Shared>,
) -> InvalidationReport {
    let mut report = InvalidationReport::default();
    if methods.is_empty() {
        return report;
    }
    // The holders to wait for, and this write's waits per peer address
    // (one reservation each, `lateness.rs`): those of one address are
    // charged the largest lateness among them, not its sum.
    let mut targets = Vec::new();
    let mut addrs: Vec<AddrWait> = Vec::new();
    let mut addr_of: HashMap<(usize, std::net::IpAddr), usize> = HashMap::new();
    for (shared, id) in holders_of(&key, is_root, except) {
        let lagging = shared.push_lagging();
        let Some(pushed) = shared.push_invalidation(id, methods) else {
            continue;
        };
        PUSHED.fetch_add(1, Ordering::Relaxed);
        if let Pushed::HeldBack(_) = pushed {
            HELD_BACK.fetch_add(1, Ordering::Relaxed);
        }
        report.notified += 1;
        if lagging {
            NOT_WAITED.fetch_add(1, Ordering::Relaxed);
            report.unacknowledged += 1;
            continue;
        }
        let addr = AddrWait::key_of(&shared).map(|k| {
            *addr_of.entry(k).or_insert_with(|| {
                addrs.extend(AddrWait::of(&shared));
                addrs.len() - 1
            })
        });
        targets.push((shared, pushed, addr));
    }
    let waits = targets
        .into_iter()
        .map(|(shared, pushed, addr)| shared.await_ack(pushed, addr.map(|i| &addrs[i])));
    let acked = futures_util::future::join_all(waits).await;
    report.timed_out = acked.iter().filter(|&&a| !a).count();
    report.unacknowledged += report.timed_out;
    report
}

/// The identity of a served object: its allocation and its interface.
fn key_of<T: ?Sized + crate::Interface>(obj: &Arc<T>) -> ExportKey {
    ExportKey {
        addr: Arc::as_ptr(obj) as *const () as usize,
        interface: std::any::TypeId::of::<T>(),
    }
}

/// Invalidates `methods` of `obj` everywhere: entries cached for it by
/// every peer holding it (except the connection `except`).
async fn invalidate_except<T: ?Sized + crate::Interface>(
    obj: &Arc<T>,
    methods: &[&str],
    except: Option<&Shared>,
) -> InvalidationReport {
    invalidate_key::<T>(key_of(obj), methods, except).await
}

/// For an implementation that invalidates its own methods on every write,
/// local or remote (`SharedVec::push`): `this` is the object served as a
/// `T` (the address an `Arc<T>` of it points to).
pub(crate) async fn invalidate_served<T: ?Sized + crate::Interface, S>(
    this: &S,
    methods: &[&str],
) -> InvalidationReport {
    let key = ExportKey {
        addr: this as *const S as *const () as usize,
        interface: std::any::TypeId::of::<T>(),
    };
    invalidate_key::<T>(key, methods, None).await
}

async fn invalidate_key<T: ?Sized + crate::Interface>(
    key: ExportKey,
    methods: &[&str],
    except: Option<&Shared>,
) -> InvalidationReport {
    crate::memo::invalidate(key, methods);
    let addr = key.addr;
    let is_root = move |d: &Arc<dyn Dispatch>| {
        T::from_dispatch(d).is_some_and(|o| Arc::as_ptr(&o) as *const () as usize == addr)
    };
    push(key, &is_root, methods, except).await
}

/// Drops the cached results of `methods` (wire names) of the served object
/// `obj` in every connected peer that holds it, as a reply to a
/// `#[remote(invalidates(..))]` method does: for writes that reach the
/// object another way. Returns once every such peer acknowledged (or its
/// `invalidation_ack_timeout` passed), so a read that starts after this
/// returns never sees the old entries (CACHING.md).
///
/// `obj` is the object as it is served (`Arc<dyn Trait>`, the same
/// allocation the peers were sent).
pub async fn invalidate<T: ?Sized + crate::Interface>(
    obj: &Arc<T>,
    methods: &[&str],
) -> InvalidationReport {
    invalidate_except(obj, methods, None).await
}

/// Generated code: a `#[remote(invalidates(..))]` method on `obj` finished;
/// invalidate the named methods at every other peer before its reply (its
/// own caller drops its entries when the reply arrives).
pub async fn invalidated<T: ?Sized + crate::Interface>(
    cx: &crate::interface::CallCx,
    obj: &Arc<T>,
    methods: &'static [&'static str],
) {
    invalidate_except(obj, methods, Some(cx.shared())).await;
}
