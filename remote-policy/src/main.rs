//! `remote-policy`: checks or converts an exported schema file.
//!
//! A crate's own descriptors are checked by the small binary it adds (see
//! the README); this one reads `--schema FILE`.
use std::process::ExitCode;

fn main() -> ExitCode {
    remote_policy::run_cli_with(std::env::args_os(), None)
}
