//! The proxy side of caching ([`crate::cache`]): calls with a
//! [`CacheRole`], and the cache counters of a handle or connection. The
//! cache is consulted once before a call is prepared and updated once when
//! its reply arrives; the call path in between is the uncached one.

use serde::Serialize;

use super::control::{Held, Incoming};
use super::heavy_reply::{self, Charged, Decoded};
use super::shared::Shared;
use crate::cache::{CacheRole, CacheStats, ClientCache, Lookup, Ticket};
use crate::interface::BoxFuture;
use crate::proto::ObjectId;
use crate::{codec, Connection, Handle, RemoteErrorType, Wire};

impl Shared {
    fn client_cache(&self) -> &ClientCache {
        self.cache.get_or_init(|| {
            ClientCache::new(
                self.limits.cache_max_entries,
                self.limits.cache_max_bytes,
                self.cache_pool.clone(),
            )
        })
    }

    fn cache_stats(&self) -> CacheStats {
        self.cache.get().map(ClientCache::stats).unwrap_or_default()
    }
}

impl Handle {
    /// [`call`](Handle::call) for a method with a [`CacheRole`]: a cached
    /// method is answered from this connection's cache while its entry
    /// lives; a reply to an invalidating method drops the named methods'
    /// entries on this object before the caller sees it.
    pub fn call_with<A, T, E>(
        &self,
        method: &'static str,
        role: &'static CacheRole,
        args: A,
    ) -> BoxFuture<'static, Result<T, E>>
    where
        A: Serialize + Send + 'static,
        T: Wire,
        E: RemoteErrorType,
    {
        let call = super::outgoing::CallFuture::with_role(self.clone(), method, Some(role), args);
        let Some(p) = self
            .promise()
            .filter(|p| p.resolved_id().is_none())
            .cloned()
        else {
            return Box::pin(call);
        };
        // A promise whose object is not known yet (`promise.rs`).
        let handle = self.clone();
        Box::pin(async move {
            // Without pipelining, its calls wait for the object, as in
            // `Handle::call`.
            if p.must_wait() {
                p.wait().await;
            }
            let r = call.await;
            if let CacheRole::Invalidates(methods) = role {
                // The peer runs a pipelined call as soon as the answer is
                // set, so its reply may come before the first call's: the
                // entries to drop are the object's, known once the promise
                // has settled (at the first call's reply, deadline or the
                // connection's loss).
                p.wait().await;
                handle.invalidate_cached(methods);
            }
            r
        })
    }

    /// Like [`call_with`](Handle::call_with), blocking the current thread.
    pub fn call_blocking_with<A, T, E>(
        &self,
        method: &'static str,
        role: &'static CacheRole,
        args: A,
    ) -> Result<T, E>
    where
        A: Serialize + Send + 'static,
        T: Wire,
        E: RemoteErrorType,
    {
        crate::blocking::block_on_call(&self.shared().runtime, self.call_with(method, role, args))
    }

    /// Drops this object's cached results of `methods` (wire names), as
    /// `#[remote(invalidates(..))]` does: for a client that learns of a
    /// change another way (a listener the server calls, see CACHING.md).
    pub fn invalidate_cached(&self, methods: &[&str]) {
        if let Some(cache) = self.shared().cache.get() {
            cache.invalidate(self.target_id(), methods);
        }
    }

    /// The counters of the cache of this handle's connection.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared().cache_stats()
    }

    /// Looks a cached call up before it is prepared (`None`: not cached).
    pub(super) fn cache_lookup(
        &self,
        method: &'static str,
        role: &CacheRole,
        args: &dyn codec::Encode,
    ) -> Option<Lookup> {
        let CacheRole::Cached { ttl_ms } = role else {
            return None;
        };
        // No client cache in a page (wasm32): moka reads
        // `std::time::Instant`, which panics there. Every call goes out.
        if cfg!(target_arch = "wasm32") {
            return None;
        }
        let ttl = std::time::Duration::from_millis(*ttl_ms);
        let shared = self.shared();
        if shared.is_closed() || self.target_id() == ObjectId::RESERVED {
            // Never answered from a cache of a closed connection, nor for
            // a promise whose object is not known yet.
            return None;
        }
        shared
            .client_cache()
            .lookup(self.target_id(), method, ttl, args)
    }

    /// Updates the cache once the call has ended: stores a miss's result,
    /// or invalidates what the method invalidates (whatever its outcome: a
    /// write that timed out may still have happened).
    pub(super) fn cache_after(
        &self,
        role: &CacheRole,
        ticket: Option<Ticket>,
        inc: Option<&Incoming>,
    ) {
        match role {
            CacheRole::Invalidates(methods) => {
                if let Some(cache) = self.shared().cache.get() {
                    cache.invalidate(self.target_id(), methods);
                }
            }
            CacheRole::Cached { .. } => {
                let (Some(ticket), Some(inc)) = (ticket, inc) else {
                    return;
                };
                // Errors are not cached, nor results holding references,
                // nor those whose items weigh much more than their bytes:
                // a hit is decoded with nothing counted but the cache's
                // bytes (`heavy_reply.rs`), and one cached reply of a
                // million empty strings decoded 27 MB at each hit (a
                // red-team pass).
                let amplifies = inc.heavy.as_ref().is_some_and(|h| h.amplifies());
                // What a hit counts while held: the reply's weight.
                let weight = inc.heavy.as_ref().map_or(0, |h| h.weight());
                if let Ok(range) = &inc.result {
                    if inc.refs.is_empty() && inc.owns.is_empty() && !amplifies {
                        self.shared().client_cache().store(
                            ticket,
                            &inc.frame[range.clone()],
                            weight,
                        );
                    }
                }
            }
        }
    }

    /// Decodes a result of `method` served from the cache, counted as its
    /// reply was while the value is held (`held::hold`): its `weight` if
    /// the reply was heavy (its bytes and `DECODED_ITEM` per item), and
    /// what its types take beyond that (weighed if it may hold a
    /// collection: `heavy_reply::decoded`). `None` if the budget has no
    /// room for it: the call goes to the peer instead, and its reply
    /// waits for room as any does.
    ///
    /// (Counted at nothing but the cache's bytes, once, a hit decoded in
    /// each of 100 handlers that held it on held 103 MB against a 16 MiB
    /// budget: a review.)
    pub(super) fn finish_cached<T: Wire, E: RemoteErrorType>(
        &self,
        method: &str,
        bytes: &[u8],
        weight: usize,
    ) -> Option<Result<T, E>> {
        let shared = self.shared();
        // A hit starts and ends here: it lets go of what the caller
        // decoded before (held with nothing let go, hits read in a loop
        // piled up until the budget was full: a review).
        let since = crate::held::since_now();
        let mut counted = match weight {
            0 => None,
            n => Some(Charged::if_room(&shared.budget, n)?),
        };
        let decode = || {
            let mut slot = None::<T>;
            codec::decode_into(
                shared,
                bytes,
                Held::default(),
                "cached return value",
                &mut slot,
            )
            .map_err(E::from_error)?;
            codec::decoded(slot, "cached return value").map_err(E::from_error)
        };
        if !heavy_reply::may_hold_collections(bytes) {
            let value = decode();
            heavy_reply::hold(counted, since);
            return Some(value);
        }
        match heavy_reply::decoded(shared, method, 0, decode) {
            Decoded::Done(value, held) => {
                counted = match (counted, held) {
                    (Some(mut c), Some(h)) => {
                        c.absorb(h);
                        Some(c)
                    }
                    (c, h) => c.or(h),
                };
                heavy_reply::hold(counted, since);
                Some(value)
            }
            Decoded::Refused(e) => Some(Err(E::from_error(e))),
            Decoded::Short(_) => None,
        }
    }
}

impl Connection {
    /// Drops every cached result of this connection (counters are kept).
    pub fn clear_cache(&self) {
        if let Some(cache) = self.shared.cache.get() {
            cache.clear();
        }
    }

    /// The counters of this connection's cache of
    /// `#[remote(cache(..))]` results.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache_stats()
    }
}
