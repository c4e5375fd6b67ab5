//! Compile-time diagnostics of `#[remote]` and `#[derive(Wire)]` (trybuild).
//! Each `ui/<mistake>.rs` must fail with exactly its committed `.stderr`;
//! each `ui/pass/*.rs` must compile. Regenerate with `TRYBUILD=overwrite`
//! and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
    t.pass("ui/pass/*.rs");
}
