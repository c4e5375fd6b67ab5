//! Object tables: what this side exported (counted sends) and what it
//! imported (counted receipts).
//!
//! The exporter counts how many times it sent each reference; the importer
//! counts how many times it received it, and releases with that count when
//! its last proxy is gone. A release that crosses a new send on the wire
//! leaves the count above zero, so a live reference is never freed. An
//! import received [`GIVE_BACK_AT`] times gives all its receipts but one
//! back while it lives, so neither side's count ever overflows, however
//! long a proxy is held.

use std::any::TypeId;
use std::cmp::Reverse;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use super::count_pool::PoolShare;
use super::{IdMap, ObjectId};

/// Identity of an exported object: its allocation and its interface, so the
/// same object exported twice reuses its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportKey {
    /// Address of the object's allocation.
    pub addr: usize,
    /// The interface it is exported as.
    pub interface: TypeId,
}

/// Hashed for the export index's fast hasher (keys are this side's own
/// allocations, never chosen by the peer): the address without the bits
/// its alignment keeps at zero, so keys spread over the table.
impl std::hash::Hash for ExportKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.interface.hash(state);
        state.write_u64((self.addr >> 4) as u64);
    }
}

#[derive(Debug)]
struct ExportEntry<O> {
    obj: O,
    key: Option<ExportKey>,
    /// Whether `holders` is told of it: a peer may cache what its
    /// interface's methods return, so a write pushes it invalidations.
    pushed: bool,
    count: u32,
    /// Of `count`, the sends counted by messages not queued yet: the peer
    /// was not sent them, so it may not use them (call, name or release
    /// the object for them). An object only such a message carries is
    /// unknown to the peer: one exported by a reply that is then refused
    /// (too large, too deep, a later reference over a limit) was callable
    /// by a peer guessing its id while the reply was encoded (found by a
    /// red-team pass).
    unsent: u32,
}

impl<O> ExportEntry<O> {
    /// Sends the peer was sent (or is about to be).
    fn sent(&self) -> u32 {
        self.count - self.unsent
    }
}

/// Objects this side has sent references to, indexed by [`ObjectId`].
///
/// Ids are allocated lowest-free-first from 1; id 0 is the root, which is
/// never counted or released, and [`ObjectId::RESERVED`] is never
/// allocated.
#[derive(Debug)]
pub struct ExportTable<O> {
    root: Option<O>,
    slots: Vec<Option<ExportEntry<O>>>,
    free: BinaryHeap<Reverse<u32>>,
    index: IdMap<ExportKey, ObjectId>,
    len: usize,
    max: usize,
    /// Where exports are counted with other connections' (a server's).
    pool: PoolShare,
    /// What is counted in `pool` now: [`units`] of the live entries and
    /// the slots kept.
    counted: usize,
    /// Told of each key this table starts and stops holding, if set.
    holders: Option<Arc<dyn ExportIndex>>,
}

/// Told of each object an export table starts and stops holding, by key:
/// an index of which tables hold an object, kept outside them
/// (`driver/invalidate.rs`, so a write's invalidation looks only at the
/// connections holding the object).
pub(crate) trait ExportIndex: Send + Sync + fmt::Debug {
    /// The table holds `key` now.
    fn added(&self, key: &ExportKey);
    /// The table no longer holds `key`.
    fn removed(&self, key: &ExportKey);
}

/// Why an export or a release was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// Too many exported objects.
    #[error("max_exports = {0} objects already exported on this connection")]
    Full(usize),
    /// Too many exported objects on all the connections sharing a pool
    /// (one server's), and this connection holds its reserve already.
    #[error("max_server_exports = {0} objects already exported on all connections of this server (freed ids below a live one count a quarter each)")]
    PoolFull(usize),
    /// Too many exported objects on the connections from this peer's
    /// address, and this connection holds its reserve already.
    #[error("max_exports_per_peer = {0} objects already exported on the connections from this peer's address (freed ids below a live one count a quarter each)")]
    PeerFull(usize),
    /// Too many distinct imports.
    #[error("max_imports = {0} distinct peer objects already imported on this connection")]
    ImportsFull(usize),
    /// A release named an id that is not exported.
    #[error("release of unknown object id {0}")]
    UnknownObject(ObjectId),
    /// A release's count exceeded the number of sends.
    #[error("release of object {id} with count {count}, but only {held} were sent")]
    Underflow {
        /// The object.
        id: ObjectId,
        /// Count in the release.
        count: u32,
        /// Outstanding sends.
        held: u32,
    },
    /// The root cannot be released.
    #[error("object 0 (the root) cannot be released")]
    Root,
    /// A count overflowed.
    #[error("reference count of object {0} overflowed")]
    Overflow(ObjectId),
}

impl<O> ExportTable<O> {
    /// An empty table holding at most `max` objects besides the root, and
    /// counting them in `pool`. Never more than the ids from 1 below
    /// [`ObjectId::RESERVED`]: allocated lowest first, the ids of `n`
    /// objects are at most `n`, so the reserved id is never reached.
    pub fn new(root: Option<O>, max: usize, pool: PoolShare) -> Self {
        ExportTable {
            root,
            slots: Vec::new(),
            free: BinaryHeap::new(),
            index: IdMap::default(),
            len: 0,
            max: max.min(ObjectId::RESERVED.0 as usize - 1),
            pool,
            counted: 0,
            holders: None,
        }
    }

    /// Tells `holders` of every key this table holds, now and from now on
    /// (`None`: no longer, and it is told each is gone).
    pub(crate) fn set_holders(&mut self, holders: Option<Arc<dyn ExportIndex>>) {
        if let Some(old) = self.holders.take() {
            self.pushed_keys().for_each(|k| old.removed(k));
        }
        if let Some(new) = &holders {
            self.pushed_keys().for_each(|k| new.added(k));
        }
        self.holders = holders;
    }

    /// The keys held whose entries the holders' index is told of.
    fn pushed_keys(&self) -> impl Iterator<Item = &ExportKey> {
        self.slots
            .iter()
            .flatten()
            .filter(|e| e.pushed)
            .filter_map(|e| e.key.as_ref())
    }

    /// Counts this table's exports in `pool` from now on (set before
    /// anything is exported).
    pub fn set_pool(&mut self, pool: PoolShare) {
        debug_assert_eq!(self.counted, 0, "pool changed after an export");
        self.pool = pool;
    }

    /// Replaces the root (object 0).
    pub fn set_root(&mut self, root: O) {
        self.root = Some(root);
    }

    /// The root, if one is served.
    pub fn root(&self) -> Option<&O> {
        self.root.as_ref()
    }

    /// Number of exported objects (not counting the root).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing besides the root is exported.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The object with this id, sent or not (this side's own lookups).
    pub fn get(&self, id: ObjectId) -> Option<&O> {
        if id == ObjectId::ROOT {
            return self.root.as_ref();
        }
        self.slots.get(id.0 as usize - 1)?.as_ref().map(|e| &e.obj)
    }

    /// The object with this id if the peer was sent it (or is being sent
    /// it: [`sent`](Self::sent)): what a peer's message may name.
    pub fn get_sent(&self, id: ObjectId) -> Option<&O> {
        if id == ObjectId::ROOT {
            return self.root.as_ref();
        }
        let e = self.slots.get((id.0 as usize).wrapping_sub(1))?.as_ref()?;
        (e.sent() > 0).then_some(&e.obj)
    }

    /// The id of the object with identity `key`, if it is exported (the
    /// root is not indexed by identity).
    pub fn id_of(&self, key: &ExportKey) -> Option<ObjectId> {
        self.index.get(key).copied()
    }

    /// How many sends of `id` are outstanding (0 if none).
    pub fn count(&self, id: ObjectId) -> u32 {
        if id == ObjectId::ROOT {
            return 0;
        }
        self.slots
            .get(id.0 as usize - 1)
            .and_then(|s| s.as_ref())
            .map_or(0, |e| e.count)
    }

    /// Records one send of the object with identity `key`, creating its
    /// entry with `make` if it is not exported yet; `pushed`: the holders'
    /// index is told of it (its interface has cached methods, so writes
    /// push their invalidations to the peer).
    pub fn export(
        &mut self,
        key: ExportKey,
        pushed: bool,
        make: impl FnOnce() -> O,
    ) -> Result<ObjectId, TableError> {
        if let Some(&id) = self.index.get(&key) {
            let e = self.slots[id.0 as usize - 1]
                .as_mut()
                .expect("indexed slot is occupied");
            e.count = e.count.checked_add(1).ok_or(TableError::Overflow(id))?;
            e.unsent += 1;
            return Ok(id);
        }
        if self.len >= self.max {
            return Err(TableError::Full(self.max));
        }
        let obj = make();
        let entry = ExportEntry {
            obj,
            key: Some(key),
            pushed,
            count: 1,
            unsent: 1,
        };
        // The lowest free id below the slots kept, if any (the ids past
        // them, `trim`'s, went with them).
        let hole = loop {
            match self.free.peek() {
                Some(&Reverse(id)) if id as usize > self.slots.len() => {
                    self.free.pop();
                }
                Some(&Reverse(id)) => break Some(id),
                None => break None,
            }
        };
        // Counted once made: nothing after this can fail (but allocation).
        let slots = self.slots.len() + usize::from(hole.is_none());
        let want = units(self.len + 1, slots);
        self.pool.take_n(self.counted, want - self.counted)?;
        self.counted = want;
        let id = match hole {
            Some(id) => {
                self.free.pop();
                self.slots[id as usize - 1] = Some(entry);
                ObjectId(id)
            }
            None => {
                self.slots.push(Some(entry));
                ObjectId(self.slots.len() as u32)
            }
        };
        self.index.insert(key, id);
        if let Some(holders) = self.holders.as_ref().filter(|_| pushed) {
            holders.added(&key);
        }
        self.len += 1;
        Ok(id)
    }

    /// One send of `id` counted by a message about to be queued: the peer
    /// may use it from now on.
    pub fn sent(&mut self, id: ObjectId) {
        if let Some(Some(e)) = self.slots.get_mut((id.0 as usize).wrapping_sub(1)) {
            e.unsent = e.unsent.saturating_sub(1);
        }
    }

    /// Takes back one send of `id` whose message was not queued (or, once
    /// [`sent`](Self::sent), failed to be: its connection is closing).
    /// Returns the object if that was its last send.
    pub fn unsend(&mut self, id: ObjectId) -> Result<Option<O>, TableError> {
        let e = self.entry(id)?;
        e.unsent = e.unsent.saturating_sub(1);
        self.take(id, 1)
    }

    /// Applies a peer's release of `count` receipts: of sends it was sent.
    /// Returns the object if this was its last outstanding send (drop it
    /// outside any lock).
    pub fn release(&mut self, id: ObjectId, count: u32) -> Result<Option<O>, TableError> {
        let e = self.entry(id)?;
        if count > e.sent() || count == 0 {
            return Err(TableError::Underflow {
                id,
                count,
                held: e.sent(),
            });
        }
        self.take(id, count)
    }

    /// `id`'s entry (not the root's).
    fn entry(&mut self, id: ObjectId) -> Result<&mut ExportEntry<O>, TableError> {
        if id == ObjectId::ROOT {
            return Err(TableError::Root);
        }
        self.slots
            .get_mut((id.0 as usize).wrapping_sub(1))
            .and_then(Option::as_mut)
            .ok_or(TableError::UnknownObject(id))
    }

    /// Takes `count` (at most its count) sends off `id`'s entry, freeing it
    /// with the last.
    fn take(&mut self, id: ObjectId, count: u32) -> Result<Option<O>, TableError> {
        let slot = &mut self.slots[id.0 as usize - 1];
        let e = slot.as_mut().ok_or(TableError::UnknownObject(id))?;
        e.count -= count.min(e.count);
        if e.count > 0 {
            return Ok(None);
        }
        let e = slot.take().expect("checked above");
        if let Some(key) = e.key {
            self.index.remove(&key);
            if let Some(holders) = self.holders.as_ref().filter(|_| e.pushed) {
                holders.removed(&key);
            }
        }
        self.free.push(Reverse(id.0));
        self.len -= 1;
        self.trim();
        Ok(Some(e.obj))
    }

    /// Gives back the room of freed entries: the slots after the highest
    /// live id (and their ids among the free ones), and the index's and
    /// the lists' spare capacity once they are mostly empty; and counts
    /// what is left ([`units`]). The table keeps the slots up to its
    /// highest live id only: a connection that once had 10,000 objects
    /// exported, all released, held 1.7 MB counted nowhere (red-team pass
    /// 50).
    fn trim(&mut self) {
        let had = self.slots.len();
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        let kept = self.slots.len();
        let now = units(self.len, kept);
        self.pool.give(self.counted - now);
        self.counted = now;
        if self.index.capacity() > 4 * self.len + 64 {
            self.index.shrink_to(2 * self.len);
        }
        if kept == had {
            return;
        }
        // Holes below the highest live id stay free; the ids above it are
        // dropped once they are most of the free list (popped lowest
        // first, they would otherwise stay).
        if self.free.len() > 2 * (kept - self.len) + 16 {
            self.free.retain(|&Reverse(id)| id as usize <= kept);
        }
        // Shrunk to twice what is left once four times over: growing and
        // shrinking again stay amortized.
        if self.slots.capacity() > 4 * kept + 16 {
            self.slots.shrink_to(2 * kept);
        }
        if self.free.capacity() > 4 * self.free.len() + 16 {
            self.free.shrink_to(2 * self.free.len());
        }
    }

    /// Empties the table (connection lost), returning every object so the
    /// caller drops them after releasing its locks.
    pub fn drain(&mut self) -> Vec<O> {
        // The index is told first, while the entries say which it holds.
        self.set_holders(None);
        self.pool.give(std::mem::take(&mut self.counted));
        let mut out: Vec<O> = self.slots.drain(..).flatten().map(|e| e.obj).collect();
        out.extend(self.root.take());
        self.free.clear();
        self.index.clear();
        self.len = 0;
        out
    }
}

/// What a table of `live` entries in `slots` slots counts in its export
/// pool: each live entry one, and each freed slot below the highest live
/// id (a hole, about 70 bytes against the ~360 of a live export and its
/// object) a quarter, rounded up. Counted as live, a client that kept the
/// last of 1,000 objects counted 1,000 for its address (a review).
fn units(live: usize, slots: usize) -> usize {
    live + (slots - live).div_ceil(4)
}

impl<O> Drop for ExportTable<O> {
    fn drop(&mut self) {
        // A table dropped without `drain` (its connection's state dropped
        // whole) gives its exports back to the pool too, and leaves the
        // index.
        self.pool.give(self.counted);
        self.set_holders(None);
    }
}

/// Where an import's release goes when its last proxy is dropped.
///
/// `release` runs inside `Drop`, wherever the last proxy is dropped:
/// implementations must not do I/O or wait for a lock that may be held
/// there. The driver records the release and queues its frame at once when
/// the connection's core lock is free, else queues it for the connection
/// task.
pub trait ReleaseSink: Send + Sync + 'static {
    /// The import `(id, generation)` is gone after `count` receipts.
    fn release(&self, id: ObjectId, generation: u64, count: u32);

    /// `count` receipts of the live import `id` are given back early (it
    /// was received [`GIVE_BACK_AT`] times): the peer is to be sent
    /// `Release(id, count)`, and the import stays, holding one receipt.
    /// Called from the import table (inside the connection's state):
    /// implementations queue the frame and return.
    fn give_back(&self, id: ObjectId, count: u32);
}

/// Receipts of one import after which all but one are given back while it
/// lives ([`ReleaseSink::give_back`]): a proxy held for days while the
/// peer keeps sending the same reference (a call that returns one shared
/// object) would otherwise overflow the exporter's `u32` count of sends
/// after 2^32 of them, and the calls returning it would fail. Half of
/// `u32::MAX`, so that sends crossing a give-back on the wire cannot
/// overflow the exporter's count either.
pub const GIVE_BACK_AT: u32 = 1 << 31;

/// One imported reference, shared by every proxy for it.
pub struct ImportInner {
    id: ObjectId,
    generation: u64,
    count: AtomicU32,
    sink: Arc<dyn ReleaseSink>,
}

/// A counted hold on an import.
pub type ImportRef = Arc<ImportInner>;

/// The imports one message refers to, one hold per distinct object: inline
/// (no allocation) for the one or two references a message usually holds.
pub type ImportRefs = smallvec::SmallVec<[ImportRef; 2]>;

impl ImportInner {
    /// The peer's object id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// Receipts counted so far.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ImportInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportInner")
            .field("id", &self.id)
            .field("generation", &self.generation)
            .field("count", &self.count())
            .finish()
    }
}

impl Drop for ImportInner {
    fn drop(&mut self) {
        self.sink
            .release(self.id, self.generation, *self.count.get_mut());
    }
}

/// References this side holds into the peer's export table.
pub struct ImportTable {
    /// By the peer's id. Ordered, not hashed: the peer chooses the ids, so
    /// a fast hasher could be made to collide, and SipHash costs more than
    /// a search of the few imports a connection usually holds.
    map: BTreeMap<ObjectId, (u64, Weak<ImportInner>)>,
    next_generation: u64,
    sink: Arc<dyn ReleaseSink>,
    max: usize,
    /// [`GIVE_BACK_AT`], lower in tests.
    give_back_at: u32,
}

impl fmt::Debug for ImportTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportTable")
            .field("len", &self.map.len())
            .field("max", &self.max)
            .finish()
    }
}

impl ImportTable {
    /// An empty table; releases go to `sink`. At most `max` distinct imports.
    pub fn new(sink: Arc<dyn ReleaseSink>, max: usize) -> Self {
        ImportTable {
            map: BTreeMap::new(),
            next_generation: 0,
            sink,
            max,
            give_back_at: GIVE_BACK_AT,
        }
    }

    /// Gives receipts back after `n` (at least 2) instead of
    /// [`GIVE_BACK_AT`]: tests reach it without 2^31 messages.
    #[doc(hidden)]
    pub fn give_back_at(&mut self, n: u32) {
        self.give_back_at = n.clamp(2, GIVE_BACK_AT);
    }

    /// Number of live imports.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Counts one receipt of `id`, returning the shared hold on it.
    pub fn receive(&mut self, id: ObjectId) -> Result<ImportRef, TableError> {
        let len = self.map.len();
        let entry = self.map.entry(id);
        if let Entry::Occupied(e) = &entry {
            if let Some(strong) = e.get().1.upgrade() {
                // Only this table (under `&mut`) and the last hold's drop
                // change the count: nothing runs between these.
                let n = strong.count.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= self.give_back_at {
                    strong.count.fetch_sub(n - 1, Ordering::AcqRel);
                    self.sink.give_back(id, n - 1);
                }
                return Ok(strong);
            }
        }
        // Either new, or the previous proxy is being dropped and its release
        // (with its own count) is still queued: start a new generation.
        if matches!(entry, Entry::Vacant(_)) && len >= self.max {
            return Err(TableError::ImportsFull(self.max));
        }
        self.next_generation += 1;
        let inner = Arc::new(ImportInner {
            id,
            generation: self.next_generation,
            count: AtomicU32::new(1),
            sink: self.sink.clone(),
        });
        let held = (self.next_generation, Arc::downgrade(&inner));
        match entry {
            Entry::Occupied(mut e) => *e.get_mut() = held,
            Entry::Vacant(v) => {
                v.insert(held);
            }
        }
        Ok(inner)
    }

    /// Handles a queued release: forgets the entry if it is still this
    /// generation. The caller sends `Release(id, count)` either way.
    pub fn released(&mut self, id: ObjectId, generation: u64) {
        if let Some((g, _)) = self.map.get(&id) {
            if *g == generation {
                self.map.remove(&id);
            }
        }
    }

    /// Forgets everything (connection lost): no releases are sent.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
