//! A `SharedMap`'s change log keeps at most `SUBSCRIBER_QUEUE_BYTES`
//! (16 MiB) of changes while a subscriber lags (here a peer that never
//! answers its notification), each weighed at what its clone holds. It
//! weighed them at their encoding (their bytes and 48 per item): a value
//! of `nil`s as `Option<[u64; 32]>`, 264 bytes each, held the log at 84 MB
//! (red-team pass 48). Now a change is weighed by its types too
//! (`codec::held_weight`).

#[path = "support/counting.rs"]
mod counting;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/serving.rs"]
mod serving;

use remote_core::collections::{RemoteMap, SharedMap, SUBSCRIBER_QUEUE_BYTES};
use remote_core::{ConnectionBuilder, Limits};

type Big = Vec<Option<[u64; 32]>>;

#[test]
fn a_maps_change_log_stays_within_its_byte_bound() {
    counting::measured(async {
        const ITEMS: usize = 20_000; // 20 KB on the wire, 5.3 MB held
        const CHANGES: usize = 40;
        let map = SharedMap::<u32, Big>::new();
        let served = map.clone();
        let server = serving::tcp(Limits::default(), move |_| served.remote()).await;
        // A subscriber that never answers its notifications.
        let mut silent = raw::opened(&server).await;
        raw::subscribe_listeners(&mut silent, 1).await;
        let client = ConnectionBuilder::new()
            .connect(server.local_addr())
            .await
            .unwrap();
        let remote = client.root::<dyn RemoteMap<u32, Big>>();
        // One entry, set once, then changed over and over.
        remote.insert(0, vec![None; ITEMS]).await.unwrap();
        let before = counting::live();
        for _ in 0..CHANGES {
            drop(remote.insert(0, vec![None; ITEMS]).await.unwrap());
        }
        let held = counting::live() - before;
        let one = (ITEMS * std::mem::size_of::<Option<[u64; 32]>>()) as isize;
        drop(silent);
        // The entry is replaced in place (the same size); what grew is the
        // log (and at most a notification in flight, and slack).
        let bound = SUBSCRIBER_QUEUE_BYTES as isize + 2 * one + (4 << 20);
        assert!(
            held <= bound,
            "the change log holds {held} bytes, its bound {SUBSCRIBER_QUEUE_BYTES}"
        );
    });
}
