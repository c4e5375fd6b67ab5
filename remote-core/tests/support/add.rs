//! The smallest served interface, for tests about what happens below the
//! calls (transports, memory): one `add` method, and a server of it.
//! Included by `#[path = "support/add.rs"] mod add;`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle};

/// Adds.
#[remote]
pub trait Add {
    /// `a + b`.
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
}

/// The implementation.
pub struct Impl;

#[remote]
impl Add for Impl {
    async fn add(&self, a: i64, b: i64) -> Result<i64, Error> {
        Ok(a + b)
    }
}

/// A server of [`Add`] with `limits`, bound to `addr`.
pub async fn serve(addr: &str, limits: Limits) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .bind(addr)
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Add>))
}
