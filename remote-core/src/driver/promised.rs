//! Replies promised by running handlers: what handlers that await will
//! queue when they finish, counted server-wide and per peer address, so
//! that the shares of many connections hold in sum (PROTOCOL.md §9,
//! "Shares in sum").
//!
//! Each connection bounds its own output and its running handlers'
//! estimated replies by its share ([`share`](super::share)), but a share
//! is an eighth of the budget, and connections that start handlers at
//! once, while the budget is still empty, each fill one: sixteen peers
//! that pipelined calls and read nothing (or a trickle) held 143 MiB
//! against the default 64 MiB (a red-team pass). So a handler's reply is
//! *promised* at its connection's estimate from when it starts until it
//! stops (its reply, if any, then counts as queued output), and a
//! connection starts a handler that would promise only while what the
//! budget holds, what is promised and the new promise fit under the
//! budget ([`Budget::may_promise`](super::Budget::may_promise)).
//!
//! Two kinds of handler promise nothing, so that no connection is ever
//! stopped by the others' promises from making progress: the one handler
//! of a connection that runs nothing else, and a handler lent the room of
//! one of ours that awaits a call of ours to the peer (a handler calling
//! its caller back, whose callback calls us again before it answers: the
//! nested call must start, or both wait until their deadlines; found by
//! a red-team pass, which deadlocked 40 such clients when every handler
//! promised).
//!
//! One address's connections may promise at most a quarter of the budget
//! between them ([`PEER_PART`]): a peer that opens connections running
//! handlers that merely await holds promises, not memory (a red-team
//! pass held 64 MiB of promises with about 100 KB, 15 connections of one
//! address, and every other connection running a handler was cut to one
//! at a time). It takes peers of four addresses now.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The part of the budget one peer address's connections may promise
/// between them: a quarter.
pub(crate) const PEER_PART: usize = 4;

/// The replies promised on every connection of a server, and per peer
/// address.
#[derive(Debug, Default)]
pub(crate) struct Promises {
    all: AtomicUsize,
    /// Each address's count, while a connection from it holds it.
    peers: Mutex<HashMap<IpAddr, Weak<AtomicUsize>>>,
}

/// One connection's place in [`Promises`]: its peer address's count, if
/// it has one (a TCP or WebSocket connection of a server).
#[derive(Debug, Default)]
pub(crate) struct PeerPromises(Option<Arc<AtomicUsize>>);

impl Promises {
    /// What is promised on every connection.
    pub(crate) fn all(&self) -> usize {
        self.all.load(Ordering::Acquire)
    }

    /// The count of the connections from `peer` (none without an address).
    pub(crate) fn of_peer(&self, peer: Option<IpAddr>) -> PeerPromises {
        PeerPromises(
            peer.map(|key| crate::per_peer::shared(&self.peers, key, AtomicUsize::default)),
        )
    }

    /// Whether `n` bytes more fit beside what `peer`'s connections promised,
    /// under `peer_max`.
    pub(crate) fn peer_fits(peer: &PeerPromises, n: usize, peer_max: usize) -> bool {
        peer.0
            .as_ref()
            .is_none_or(|p| p.load(Ordering::Acquire).saturating_add(n) <= peer_max)
    }

    /// Counts `n` bytes promised on a connection from `peer`.
    pub(crate) fn add(&self, n: usize, peer: &PeerPromises) {
        self.all.fetch_add(n, Ordering::AcqRel);
        if let Some(p) = &peer.0 {
            p.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Takes back `n` bytes promised on a connection from `peer`.
    pub(crate) fn sub(&self, n: usize, peer: &PeerPromises) {
        self.all.fetch_sub(n, Ordering::AcqRel);
        if let Some(p) = &peer.0 {
            p.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_counts_what_all_its_connections_promise() {
        let ps = Promises::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let (a1, a2) = (ps.of_peer(Some(a)), ps.of_peer(Some(a)));
        let b = ps.of_peer(Some("192.0.2.2".parse().unwrap()));
        let none = ps.of_peer(None);
        ps.add(300, &a1);
        ps.add(500, &a2);
        assert!(Promises::peer_fits(&a1, 200, 1000));
        assert!(!Promises::peer_fits(&a2, 201, 1000), "800 of a's 1000 held");
        assert!(Promises::peer_fits(&b, 1000, 1000));
        assert!(Promises::peer_fits(&none, usize::MAX, 0), "no address");
        ps.add(7, &none);
        assert_eq!(ps.all(), 807);
        ps.sub(300, &a1);
        assert!(Promises::peer_fits(&a2, 500, 1000));
        ps.sub(500, &a2);
        ps.sub(7, &none);
        assert_eq!(ps.all(), 0);
    }
}
