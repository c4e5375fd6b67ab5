//! A service whose every call calls its caller back before it returns, and
//! the raw calls a hostile peer sends it: calls that hold the memory
//! budget for as long as the peer leaves the callbacks unanswered, so that
//! the readers behind them wait for room. Included by
//! `#[path = "support/asks_back.rs"] mod asks_back;`.
#![allow(dead_code, unreachable_pub)]

use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{remote, Error, Limits, Remote};

/// The server's memory budget in these tests.
pub const BUDGET: usize = 4 << 20;
/// Bytes of padding in each call.
pub const PAD: usize = 60 << 10;
/// Calls each hostile connection sends.
pub const CALLS: u32 = 16;

#[remote]
pub trait Svc {
    async fn ask(&self, cb: Remote<dyn Lister>, pad: String) -> Result<u32, Error>;
}

#[remote]
pub trait Lister {
    async fn list(&self) -> Result<Vec<u32>, Error>;
}

/// Calls `cb` back and counts what it lists.
pub struct Impl;

#[remote]
impl Svc for Impl {
    async fn ask(&self, cb: Remote<dyn Lister>, _pad: String) -> Result<u32, Error> {
        Ok(cb.list().await?.len() as u32)
    }
}

/// A call of `ask` (callback: the caller's object 1) with `pad` bytes of
/// string, deadline 600 s.
pub fn ask(id: u32, pad: usize) -> Vec<u8> {
    let mut b = encode::begin(pad + 64);
    encode::call_head(&mut b, CallId(id), ObjectId(0), "ask", 600_000);
    b.extend_from_slice(&[0x92, 0xd6, 0x01, 0, 0, 0, 1, 0xda]);
    b.extend_from_slice(&(pad as u16).to_be_bytes());
    b.resize(b.len() + pad, b'p');
    encode::finish(&mut b);
    b
}

/// `CALLS` calls of `ask`, ids from `first` on.
pub fn asks(first: u32) -> Vec<u8> {
    (first..first + CALLS).flat_map(|id| ask(id, PAD)).collect()
}

/// The budget [`BUDGET`], and room for the many connections of one peer.
pub fn limits() -> Limits {
    Limits {
        memory_budget: BUDGET,
        max_connections_per_peer: 1024,
        ..Limits::default()
    }
}
