//! Integration tests of the checker on hand-written schemas (the
//! `#[remote]`-derived fixtures are in `tests/derived.rs`).

mod allow;
mod capabilities;
mod clean;
mod cli;
mod fixtures;
mod leaks;
mod reports;
mod review;
mod stubs;
mod unbounded;
