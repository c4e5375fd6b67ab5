//! References: the export and import tables, and resolving the references
//! a message carries (imports counted, our own objects held).

use super::{Phase, State, Violation};
use crate::proto::tables::{ExportKey, ExportTable, ImportRefs, ImportTable, TableError};
use crate::proto::{encode, ObjectId};

/// Why the references in a message could not all be resolved.
#[derive(Debug)]
pub(super) enum RefError {
    /// A type-2 reference names none of our objects: the call is refused.
    UnknownOwn(String),
    /// Connection-level (import limit, reference to object 0).
    Violation(Violation),
}

impl From<RefError> for Violation {
    fn from(e: RefError) -> Self {
        match e {
            RefError::UnknownOwn(m) => Violation(m),
            RefError::Violation(v) => v,
        }
    }
}

/// Sorts `v` by `key` and keeps one element per key.
fn sort_dedup<T>(v: &mut Vec<T>, key: impl Fn(&T) -> ObjectId) {
    if v.len() > 1 {
        v.sort_unstable_by_key(&key);
        v.dedup_by(|a, b| key(a) == key(b));
    }
}

impl<O: Clone, W> State<O, W> {
    /// The export table.
    pub fn exports(&self) -> &ExportTable<O> {
        &self.exports
    }

    /// The import table.
    pub fn imports(&self) -> &ImportTable {
        &self.imports
    }

    /// Records one send of an object (`pushed`: see
    /// [`ExportTable::export`]).
    pub fn export(
        &mut self,
        key: ExportKey,
        pushed: bool,
        make: impl FnOnce() -> O,
    ) -> Result<ObjectId, TableError> {
        self.exports.export(key, pushed, make)
    }

    /// Takes back one send of `id` that never left (its message was not
    /// sent). Returns the object if that was its last send.
    pub fn undo_export(&mut self, id: ObjectId) -> Result<Option<O>, TableError> {
        self.exports.unsend(id)
    }

    /// One send of `id`, counted by a message about to be queued, may be
    /// used by the peer from now on (until then it may not: PROTOCOL.md
    /// §4).
    pub fn export_sent(&mut self, id: ObjectId) {
        self.exports.sent(id);
    }

    /// Imports give their receipts back after `n` instead of
    /// [`GIVE_BACK_AT`](crate::proto::GIVE_BACK_AT): tests reach
    /// it without 2^31 messages.
    #[doc(hidden)]
    pub fn give_back_at(&mut self, n: u32) {
        self.imports.give_back_at(n);
    }

    /// Handles a queued release of an import; returns the release frame.
    pub fn import_released(
        &mut self,
        id: ObjectId,
        generation: u64,
        count: u32,
    ) -> Option<Vec<u8>> {
        self.import_forget(id, generation)
            .then(|| encode::release(id, count))
    }

    /// Handles the release of an import (generation `generation`, its last
    /// proxy gone): `true` if its release frame is to be sent, `false` once
    /// the connection closed.
    pub fn import_forget(&mut self, id: ObjectId, generation: u64) -> bool {
        if self.phase == Phase::Closed {
            return false;
        }
        self.imports.released(id, generation);
        true
    }

    /// Resolves the references found in a message, in message order: imports
    /// are counted, and our own objects handed back are held, so a release
    /// processed before the value is decoded cannot free them.
    #[allow(clippy::type_complexity)]
    pub(super) fn take_refs(&mut self) -> Result<(ImportRefs, Vec<(ObjectId, O)>), RefError> {
        // Most messages carry no reference: nothing to resolve or sort.
        if self.scratch.is_empty() {
            return Ok((ImportRefs::new(), Vec::new()));
        }
        let found = std::mem::take(&mut self.scratch);
        let mut refs = ImportRefs::new();
        let mut owns = Vec::new();
        let mut first_error = None;
        // Every reference of the sender's is counted even after an error:
        // the sender counted each send, and dropping `refs` releases them.
        for &(sender_export, id) in &found {
            if sender_export {
                if id == ObjectId::ROOT {
                    first_error.get_or_insert(RefError::Violation(Violation(
                        "a reference (ext type 1) to object 0: the root is never sent as a reference".into(),
                    )));
                    continue;
                }
                if id == ObjectId::RESERVED {
                    first_error.get_or_insert(RefError::Violation(Violation(format!(
                        "a reference (ext type 1) to object {id}: that id names no object"
                    ))));
                    continue;
                }
                match self.imports.receive(id) {
                    Ok(r) => refs.push(r),
                    Err(e) => {
                        // Too many imports is connection-level, whatever the message.
                        first_error = Some(RefError::Violation(Violation(e.to_string())));
                    }
                }
            } else {
                match self.exports.get_sent(id) {
                    Some(o) => owns.push((id, o.clone())),
                    None => {
                        first_error.get_or_insert(RefError::UnknownOwn(format!(
                            "reference to unknown object id {id} of ours"
                        )));
                    }
                }
            }
        }
        self.scratch = found;
        self.scratch.clear();
        // One hold per distinct object, sorted by id, so decoding looks each
        // reference up in O(log n): the counts live in the holds, so
        // duplicates add nothing.
        if refs.len() > 1 {
            refs.sort_unstable_by_key(|r| r.id());
            refs.dedup_by(|a, b| a.id() == b.id());
        }
        sort_dedup(&mut owns, |(id, _)| *id);
        match first_error {
            Some(e) => Err(e),
            None => Ok((refs, owns)),
        }
    }
}
