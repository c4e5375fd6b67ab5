//! Checks the examples' interfaces against a policy:
//! `cargo run -p remote-examples --bin policy -- --policy examples/policy/chat.toml`.
use remote_examples as _; // links the crate, and so its #[remote] descriptors

fn main() -> std::process::ExitCode {
    remote_policy::run_cli(remote_core::schema::collect())
}
