//! A counting global allocator for the memory tests: [`live`] is what the
//! whole process holds (one test per binary, so nothing else counts).
//! Included by `#[path = "support/counting.rs"] mod counting;`.
#![allow(dead_code, unreachable_pub)]

use std::alloc::System;

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated in the whole process (`stats_alloc` already
/// adds a realloc's growth to `bytes_allocated`, and its shrinking to
/// `bytes_deallocated`).
pub fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}
