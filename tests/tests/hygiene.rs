//! Hygiene of the generated code: the macros are used in modules under
//! `#![no_implicit_prelude]` that define their own `Result`, `Error`, `Box`,
//! `Future`, `Option`, `String`, `core`, `std`, ..., once with the default
//! crate path and once with `remote_core` renamed (`crate = "rc"`). The
//! tests then drive the generated clients and dispatchers over an in-memory
//! connection, so they check behaviour as well as compilation.

extern crate remote_core as rc;

#[path = "hygiene/hostile.rs"]
mod hostile;
#[path = "hygiene/renamed.rs"]
mod renamed;

#[path = "hygiene/calls.rs"]
mod calls;
#[path = "hygiene/schema.rs"]
mod schema;
