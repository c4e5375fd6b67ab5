//! A service whose handler holds its decoded arguments until a gate
//! lets it end, and the raw frame of a call that decodes far larger than
//! it is. Included by `#[path = "support/holder.rs"] mod holder;` next to
//! `gate`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use remote_core::proto::{encode, CallId, ObjectId};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};

use super::gate::Gate;

#[remote]
pub trait Holder {
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error>;
    /// Holds the decoded strings until the test lets go.
    async fn hold(&self, v: Vec<String>) -> Result<u32, Error>;
}

/// Serves `Holder`; `hold` waits on the gate.
pub struct Impl(pub Arc<Gate>);

#[remote]
impl Holder for Impl {
    async fn add(&self, a: u64, b: u64) -> Result<u64, Error> {
        Ok(a + b)
    }
    async fn hold(&self, v: Vec<String>) -> Result<u32, Error> {
        self.0.pass().await;
        Ok(v.len() as u32)
    }
}

/// A call frame of `hold` carrying `n` empty strings (array32 of 0xa0).
pub fn hold_frame(id: u32, n: usize) -> Vec<u8> {
    let mut f = encode::begin(n + 64);
    encode::call_head(&mut f, CallId(id), ObjectId(0), "hold", 600_000);
    f.push(0x91); // args: [v]
    f.push(0xdd); // array32
    f.extend_from_slice(&(n as u32).to_be_bytes());
    f.resize(f.len() + n, 0xa0);
    encode::finish(&mut f);
    f
}

/// A server of `Holder` on an ephemeral loopback port, its `hold`
/// handlers waiting on `gate`.
pub async fn serve(limits: Limits, gate: Arc<Gate>) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(Arc::new(Impl(gate.clone())) as Arc<dyn Holder>))
}

/// The arguments `[v]`, `v` being an array of `n` copies of the msgpack
/// byte `item` (`0xa0`: empty strings, `hold`'s).
pub fn array_args(n: usize, item: u8) -> Vec<u8> {
    let mut a = vec![0x91, 0xdd];
    a.extend_from_slice(&(n as u32).to_be_bytes());
    a.resize(a.len() + n, item);
    a
}
