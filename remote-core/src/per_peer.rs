//! One value per peer address, shared by that address's connections and
//! forgotten with the last of them (the blocking slots of
//! `max_blocking_calls_per_peer`, the export count of
//! `max_exports_per_peer`, the stream items held for the address's next
//! pulls), and the key an address is known by ([`peer_key`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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

/// The key a peer's connections are counted under: the IP address of a TCP
/// peer (its /64 prefix for IPv6, where one host often holds a whole /64),
/// not its port, over TCP, TLS or WebSocket (`ws://` and `wss://`). `None`
/// (not counted per peer) for other transports.
pub(crate) fn peer_key(peer: &str) -> Option<IpAddr> {
    let rest = ["tcp://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| peer.strip_prefix(scheme))?;
    let addr: SocketAddr = rest.split('/').next()?.parse().ok()?;
    Some(match addr.ip().to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    })
}
