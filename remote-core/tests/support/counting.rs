//! A counting global allocator for the memory tests: [`live`] is what the
//! whole process holds, so nothing else may run while a test measures (one
//! test per binary, or each holding [`serial`]). Included by
//! `#[path = "support/counting.rs"] mod counting;`.
#![allow(dead_code, unreachable_pub)]

use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

/// The allocator, for `stats_alloc::Region`s.
#[global_allocator]
pub static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated in the whole process (`stats_alloc` already
/// adds a realloc's growth to `bytes_allocated`, and its shrinking to
/// `bytes_deallocated`).
pub fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// The tests of one binary measure one process-wide counter: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Held by a test while it measures, so its binary's other tests wait.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A runtime of two workers, as the machines of CI have, made and dropped
/// inside a measurement so that what it holds is not counted after it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a [`runtime`] of its own, holding [`serial`]: one measuring
/// test of a binary at a time.
pub fn measured<F: std::future::Future>(f: F) -> F::Output {
    let _serial = serial();
    runtime().block_on(f)
}
