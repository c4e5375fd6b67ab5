//! The `worker` example's child process as a binary of its own, for the
//! tests: cargo builds a package's binaries (not its examples) before its
//! integration tests and tells them where (`CARGO_BIN_EXE_worker-child`).
//! It is the example's own code (`worker::child`), compiled once more.

#[allow(dead_code)]
#[path = "../worker.rs"]
pub mod worker;

#[tokio::main]
async fn main() -> remote_core::Result<()> {
    worker::child().await
}
