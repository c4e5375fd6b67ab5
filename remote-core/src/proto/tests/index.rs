//! The export index hook ([`ExportIndex`]): told of every key a table
//! starts and stops holding, in any order of exports, sends taken back,
//! releases, the hook set and unset, and the table's end, so the
//! process-wide index fed by it (`driver/invalidate.rs`) names no
//! connection for an object it no longer exports (an entry left behind
//! would grow the index for the life of the process).

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// How many hooks hold each key (by address): 0 or 1 at every moment.
#[derive(Debug, Default)]
struct Recorder(Mutex<HashMap<usize, u32>>);

impl ExportIndex for Recorder {
    fn added(&self, key: &ExportKey) {
        let mut held = self.0.lock().unwrap();
        let n = held.entry(key.addr).or_default();
        assert_eq!(*n, 0, "key {} added twice", key.addr);
        *n = 1;
    }

    fn removed(&self, key: &ExportKey) {
        let mut held = self.0.lock().unwrap();
        let n = held.entry(key.addr).or_default();
        assert_eq!(*n, 1, "key {} removed but not held", key.addr);
        *n = 0;
    }
}

impl Recorder {
    fn held(&self) -> Vec<usize> {
        let held = self.0.lock().unwrap();
        let mut keys: Vec<usize> = held
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(&k, _)| k)
            .collect();
        keys.sort_unstable();
        keys
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Export object `n`, and mark the send sent (queued) or not.
    Export(usize, bool),
    /// Take back a send of object `n` not queued yet.
    Undo(usize),
    /// The peer releases one send of object `n`.
    Release(usize),
    /// The hook unset, or set again.
    Hook(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, any::<bool>()).prop_map(|(n, sent)| Op::Export(n, sent)),
        (0..6usize).prop_map(Op::Undo),
        (0..6usize).prop_map(Op::Release),
        any::<bool>().prop_map(Op::Hook),
    ]
}

/// Whether the object `n` is of an interface with cached methods (told to
/// the index): those below 4.
fn pushed(n: usize) -> bool {
    n < 4
}

/// The keys the table exports now that the index is told of.
fn exported(s: &S) -> Vec<usize> {
    (0..6)
        .filter(|&n| pushed(n) && s.exports().id_of(&key(n)).is_some())
        .collect()
}

proptest! {
    #[test]
    fn the_index_hook_follows_the_table(
        ops in proptest::collection::vec(op(), 0..48),
        close in any::<bool>(),
    ) {
        let (mut s, _) = state();
        let rec = Arc::new(Recorder::default());
        s.set_export_holders(Some(rec.clone()));
        let mut hooked = true;
        // Sends made and not yet queued, per object: what `Undo` may take.
        let mut unsent: HashMap<usize, u32> = HashMap::new();
        for op in ops {
            match op {
                Op::Export(n, sent) => {
                    let id = s.export(key(n), pushed(n), || "obj").unwrap();
                    if sent {
                        s.export_sent(id);
                    } else {
                        *unsent.entry(n).or_default() += 1;
                    }
                }
                Op::Undo(n) => {
                    let left = unsent.entry(n).or_default();
                    if *left > 0 {
                        *left -= 1;
                        let id = s.exports().id_of(&key(n)).unwrap();
                        s.undo_export(id).unwrap();
                    }
                }
                Op::Release(n) => {
                    let id = s.exports().id_of(&key(n));
                    if let Some(id) = id.filter(|&id| s.exports().get_sent(id).is_some()) {
                        s.handle_frame(&payload(encode::release(id, 1))).unwrap();
                    }
                }
                Op::Hook(on) => {
                    s.set_export_holders(on.then(|| rec.clone() as Arc<dyn ExportIndex>));
                    hooked = on;
                }
            }
            let want = if hooked { exported(&s) } else { vec![] };
            prop_assert_eq!(rec.held(), want);
        }
        // The connection's end (closed, or its state dropped whole) tells
        // the hook every key is gone.
        if close {
            let _ = s.close();
            prop_assert_eq!(rec.held(), Vec::<usize>::new());
        }
        drop(s);
        prop_assert_eq!(rec.held(), Vec::<usize>::new());
    }
}
