//! The serving side of `#[remote(memoize(..))]` ([`crate::memo`]): the
//! lookup generated code makes before decoding a call's arguments, and the
//! memo counters of a connection.

use std::sync::Arc;

use super::shared::Shared;
use crate::interface::{Args, CallCx, CallFuture, Interface};
use crate::memo::{Caller, MemoCache, MemoStats, MemoTicket};
use crate::proto::ExportKey;
use crate::Connection;

impl Shared {
    /// The memo cache: the server's, or this connection's own, made on
    /// first use.
    pub(crate) fn memo(&self) -> &Arc<MemoCache> {
        self.memo.get_or_init(|| {
            MemoCache::new(self.limits.memo_max_entries, self.limits.memo_max_bytes)
        })
    }
}

/// Generated code: looks a call to a memoised method up. A hit is answered
/// by the returned future without running the handler; a miss gives back
/// the context and the ticket to pass to [`CallCx::reply_memo`].
pub fn memo_lookup<T: ?Sized + Interface>(
    cx: CallCx,
    obj: &Arc<T>,
    method: &'static str,
    ttl_ms: u64,
    args: &Args<'_>,
) -> Result<(MemoTicket, CallCx), CallFuture> {
    // No memo in a page (wasm32): moka reads `std::time::Instant`, which
    // panics there. The handler just runs.
    if cfg!(target_arch = "wasm32") {
        return Ok((MemoTicket::none(), cx));
    }
    let Some(bytes) = args.plain_bytes() else {
        return Ok((MemoTicket::none(), cx));
    };
    let key = ExportKey {
        addr: Arc::as_ptr(obj) as *const () as usize,
        interface: std::any::TypeId::of::<T>(),
    };
    let weak = Arc::downgrade(obj);
    let alive = Arc::new(move || weak.strong_count() > 0);
    let ttl = std::time::Duration::from_millis(ttl_ms);
    // Per caller: a reply may depend on `Peer::current()`.
    let caller = Caller::of(&cx.peer());
    match cx
        .shared()
        .memo()
        .lookup(key, alive, method, caller, ttl, bytes)
    {
        Ok(value) => Err(Box::pin(async move { cx.reply_encoded(&value) })),
        Err(ticket) => Ok((ticket, cx)),
    }
}

impl Connection {
    /// The counters of the cache of `#[remote(memoize(..))]` replies this
    /// connection serves from (its server's, shared by all its
    /// connections).
    pub fn memo_stats(&self) -> MemoStats {
        self.shared.memo().stats()
    }
}
