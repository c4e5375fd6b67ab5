//! An export table gives back the room of what was released: it keeps the
//! slots up to its highest live id only (a connection that once had 10,000
//! objects exported, all released, held 1.7 MB counted nowhere: red-team
//! pass 50), and counts in its pool each live entry one and each hole
//! below the highest live id a quarter, rounded up.

use super::*;

fn key(n: usize) -> ExportKey {
    ExportKey {
        addr: n,
        interface: std::any::TypeId::of::<()>(),
    }
}

/// A table of up to 1,000 exports in a pool of its own.
fn table() -> (ExportTable<usize>, Arc<CountPool>) {
    let pool = CountPool::with_reserve(usize::MAX, usize::MAX, 0);
    (ExportTable::new(None, 1000, pool.share(None)), pool)
}

/// Exports objects `from..=to` once each (sent), returning their ids.
fn export(t: &mut ExportTable<usize>, from: usize, to: usize) -> Vec<ObjectId> {
    (from..=to)
        .map(|n| {
            let id = t.export(key(n), false, || n).unwrap();
            t.sent(id);
            id
        })
        .collect()
}

#[test]
fn released_exports_give_their_slots_back() {
    let (mut t, pool) = table();
    let ids = export(&mut t, 1, 500);
    assert_eq!(pool.held(), 500);
    for &id in &ids {
        assert_eq!(t.release(id, 1).unwrap(), Some(id.0 as usize));
    }
    assert!(t.is_empty());
    assert_eq!(pool.held(), 0, "every slot given back");
    // Numbered from 1 again.
    assert_eq!(export(&mut t, 1001, 1001), [ObjectId(1)]);
    assert_eq!(pool.held(), 1);
}

#[test]
fn the_slots_up_to_the_highest_live_id_stay_counted() {
    let (mut t, pool) = table();
    let ids = export(&mut t, 1, 100);
    // The highest kept: the holes below it are the table's still.
    for &id in &ids[..99] {
        t.release(id, 1).unwrap();
    }
    assert_eq!(t.len(), 1);
    assert_eq!(pool.held(), 1 + 25, "99 holes below a live id count 25");
    // Holes are filled lowest first.
    assert_eq!(export(&mut t, 201, 202), [ObjectId(1), ObjectId(2)]);
    assert_eq!(pool.held(), 3 + 25, "97 holes count 25 still");
    t.release(ObjectId(100), 1).unwrap();
    assert_eq!(pool.held(), 2, "trimmed to the highest live id");
    // The ids above it, still among the free ones, are not handed out
    // again: the next is the next slot.
    assert_eq!(export(&mut t, 203, 203), [ObjectId(3)]);
    assert_eq!(pool.held(), 3);
    assert_eq!(t.get(ObjectId(3)), Some(&203));
    assert_eq!(t.get(ObjectId(1)), Some(&201));
}

#[test]
fn the_lowest_live_id_kept_leaves_the_rest_free() {
    let (mut t, pool) = table();
    let ids = export(&mut t, 1, 300);
    for &id in ids[1..].iter().rev() {
        t.release(id, 1).unwrap();
        assert_eq!(pool.held(), id.0 as usize - 1, "trimmed from the top");
    }
    assert_eq!(pool.held(), 1);
    for &id in ids[1..].iter() {
        t.release(id, 1).unwrap_err();
    }
    // Draining gives back what is left.
    assert_eq!(t.drain(), vec![1]);
    assert_eq!(pool.held(), 0);
}

#[test]
fn a_dropped_table_gives_its_slots_back() {
    let (mut t, pool) = table();
    let ids = export(&mut t, 1, 50);
    t.release(ids[10], 1).unwrap();
    assert_eq!(pool.held(), 49 + 1, "a hole counts a quarter, rounded up");
    drop(t);
    assert_eq!(pool.held(), 0);
}

/// Holes count a quarter of an export each, and every export, release and
/// reuse keeps the count at exactly that.
#[test]
fn the_count_follows_live_entries_and_holes() {
    let (mut t, pool) = table();
    let ids = export(&mut t, 1, 40);
    // Every other one released, from the bottom: the top stays live.
    for &id in ids.iter().step_by(2) {
        t.release(id, 1).unwrap();
    }
    assert_eq!(t.len(), 20);
    assert_eq!(pool.held(), 20 + 5);
    // Filling holes counts one each, less a quarter.
    export(&mut t, 100, 103);
    assert_eq!(pool.held(), 24 + 4);
    export(&mut t, 104, 119);
    assert_eq!(pool.held(), 40, "no hole left");
    export(&mut t, 120, 120);
    assert_eq!(pool.held(), 41, "a new slot counts one");
}
