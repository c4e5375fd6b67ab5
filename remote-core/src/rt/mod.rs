//! The few runtime services the driver needs (spawning, timers, a clock),
//! from tokio on native targets and from the browser's event loop on
//! `wasm32` (where tokio has no timer and no task scheduler of its own).
//!
//! Every module compiled for both names these through `crate::rt` instead
//! of `tokio::spawn`/`tokio::time`, so the driver is the same code in both
//! builds. The names and signatures follow tokio's.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use tokio::{
    runtime::Handle as RuntimeHandle,
    spawn,
    task::{spawn_blocking, AbortHandle},
    time,
};

/// The runtime the connection was made on (blocking proxy calls run their
/// futures there).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn current_runtime() -> RuntimeHandle {
    tokio::runtime::Handle::current()
}

/// Whether a timer polled now registers the task's waker if it is not
/// due: tokio's cooperative budget can cut a poll short, returning
/// `Pending` with nothing registered (it wakes the task again instead).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn poll_registers() -> bool {
    tokio::task::coop::has_budget_remaining()
}

/// In a browser a timer is polled on every turn that waits (see the native
/// `poll_registers`).
#[cfg(target_arch = "wasm32")]
pub(crate) fn poll_registers() -> bool {
    false
}

/// Whether `rt` runs tasks on several worker threads (where a task woken
/// by one worker may run at once on another).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn is_multi_thread(rt: &RuntimeHandle) -> bool {
    rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
}

/// Whether `rt` runs tasks on several worker threads: never in a browser.
#[cfg(target_arch = "wasm32")]
pub(crate) fn is_multi_thread(_rt: &RuntimeHandle) -> bool {
    false
}

#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::RuntimeHandle;
#[cfg(target_arch = "wasm32")]
pub(crate) use web::{current_runtime, spawn, spawn_blocking, time, AbortHandle, JoinHandle};
