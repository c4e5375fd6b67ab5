//! Counting a server's open connections per peer address
//! (`max_connections_per_peer`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub(super) type PeerCounts = HashMap<IpAddr, usize>;

pub(super) use crate::per_peer::peer_key;

/// One open connection counted for its peer address; uncounted on drop.
pub(super) struct PeerSlot {
    counts: Arc<Mutex<PeerCounts>>,
    key: IpAddr,
}

impl PeerSlot {
    /// Counts a connection from `key`, or `None` if it has `max` already.
    pub(super) fn take(
        counts: &Arc<Mutex<PeerCounts>>,
        key: IpAddr,
        max: usize,
    ) -> Option<PeerSlot> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                // Only peers with open connections stay in the map.
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_keyed_by_address_not_port() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(peer_key("tcp://10.1.2.3:4000"), Some(v4));
        assert_eq!(peer_key("tcp://10.1.2.3:4001"), Some(v4));
        // An IPv4 peer on a dual-stack listener counts as its IPv4 address.
        assert_eq!(peer_key("tcp://[::ffff:10.1.2.3]:5"), Some(v4));
        // IPv6 by /64 prefix.
        assert_eq!(
            peer_key("tcp://[2001:db8:1:2:aaaa::1]:80"),
            peer_key("tcp://[2001:db8:1:2:bbbb::2]:81")
        );
        assert_ne!(
            peer_key("tcp://[2001:db8:1:2::1]:80"),
            peer_key("tcp://[2001:db8:1:3::1]:80")
        );
        assert_eq!(peer_key("unix:///tmp/s.sock"), None);
        // Over WebSocket too, the path after the address aside (`ws://`
        // peers went uncounted: a red-team pass).
        assert_eq!(peer_key("ws://10.1.2.3:4000/calc"), Some(v4));
        assert_eq!(peer_key("wss://10.1.2.3:4000/"), Some(v4));
    }

    #[test]
    fn a_peer_slot_is_given_back_on_drop() {
        let counts = Arc::new(Mutex::new(PeerCounts::new()));
        let key: IpAddr = "127.0.0.1".parse().unwrap();
        let a = PeerSlot::take(&counts, key, 2).unwrap();
        let _b = PeerSlot::take(&counts, key, 2).unwrap();
        assert!(PeerSlot::take(&counts, key, 2).is_none());
        drop(a);
        let _c = PeerSlot::take(&counts, key, 2).unwrap();
        drop((_b, _c));
        assert!(counts.lock().unwrap().is_empty());
    }
}
