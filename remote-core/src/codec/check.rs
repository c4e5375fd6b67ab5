//! What an encoded value is checked for before it is sent: its depth,
//! and that it carries the references its encode exported.

use std::cell::Cell;

use crate::proto::{FoundRef, ObjectId};
use crate::Error;

/// Refuses an encoded value nested deeper than `max_depth`.
pub(super) fn check_depth(encoded: &[u8], max_depth: usize, what: &str) -> Result<(), Error> {
    // Each level of nesting costs at least one byte: a shorter value cannot
    // be too deep, and the hot path (small values) skips the walk.
    if encoded.len() < max_depth {
        return Ok(());
    }
    walk_encoded(encoded, max_depth, what, &mut Vec::new())
}

/// How many references a list kept for the next [`check_carried`] may
/// hold (a message carrying more allocates its own).
const SPARE_REFS_MAX: usize = 64;

thread_local! {
    /// The list [`check_carried`] walks into, kept from one to the next: a
    /// message carrying references allocates none.
    static SPARE_REFS: Cell<Vec<FoundRef>> = const { Cell::new(Vec::new()) };
}

/// [`check_depth`] for a value whose encode exported `exported`: also
/// refuses it unless the references to our objects it carries are exactly
/// those. A `Remote<_>` serialized into another serializer inside a
/// `Serialize` impl (JSON, say) is exported without being carried: the
/// peer would never release it, and it stayed counted until the
/// connection closed (found by a red-team pass). (A reference written by
/// hand, never counted, is refused too when it comes with exports.)
pub(super) fn check_carried(
    encoded: &[u8],
    max_depth: usize,
    exported: &[ObjectId],
    what: &str,
) -> Result<(), Error> {
    let mut refs = SPARE_REFS.with(Cell::take);
    refs.clear();
    let r = walk_encoded(encoded, max_depth, what, &mut refs)
        .and_then(|()| carries(&refs, exported, what));
    if refs.capacity() <= SPARE_REFS_MAX {
        // `try_with`: a thread being torn down has no spare to keep.
        let _ = SPARE_REFS.try_with(|s| s.set(refs));
    }
    r
}

/// Whether the references `refs` found carry exactly `exported`.
fn carries(refs: &[FoundRef], exported: &[ObjectId], what: &str) -> Result<(), Error> {
    let carried = || refs.iter().filter_map(|&(ours, id)| ours.then_some(id));
    let same = carried().count() == exported.len()
        && match exported {
            // Most messages that export carry one reference.
            [one] => carried().all(|id| id == *one),
            _ => {
                let mut carried: Vec<ObjectId> = carried().collect();
                let mut exported = exported.to_vec();
                carried.sort_unstable();
                exported.sort_unstable();
                carried == exported
            }
        };
    if same {
        return Ok(());
    }
    Err(Error::Encode {
        what: "remote reference",
        message: format!(
            "the {what} carry {} references to this side's objects where {} were \
             serialized: a Remote<_> serialized into another serializer inside a \
             Serialize impl is not sent (serialize it into the serializer given)",
            carried().count(),
            exported.len()
        ),
    })
}

/// Walks an encoded value (depth at most `max_depth`), adding the
/// references it carries to `refs`.
fn walk_encoded(
    encoded: &[u8],
    max_depth: usize,
    what: &str,
    refs: &mut Vec<FoundRef>,
) -> Result<(), Error> {
    match crate::proto::Reader::new(encoded).skip_value(max_depth, refs) {
        Ok(_) => Ok(()),
        Err(m) if m.reason.starts_with(crate::proto::TOO_DEEP) => Err(Error::limit(
            "max_depth",
            max_depth as u64,
            format!("{what} nest arrays and maps deeper than the peer accepts"),
        )),
        Err(m) => Err(Error::Encode {
            what: "value",
            message: m.to_string(),
        }),
    }
}
