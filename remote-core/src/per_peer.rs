//! One value per peer address, shared by that address's connections and
//! forgotten with the last of them (the blocking slots of
//! `max_blocking_calls_per_peer`, the export count of
//! `max_exports_per_peer`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

/// The value of address `key` in `map`, made with `make` if no connection
/// from it holds one. Addresses none of whose connections is left are
/// forgotten whenever one is added, so the map holds the live addresses
/// and those gone since the last new one.
pub(crate) fn shared<T>(
    map: &Mutex<HashMap<IpAddr, Weak<T>>>,
    key: IpAddr,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = map.get(&key).and_then(Weak::upgrade) {
        return v;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let v = Arc::new(make());
    map.insert(key, Arc::downgrade(&v));
    v
}
