//! `cargo remote-policy` on one of this workspace's packages (the examples):
//! it generates, builds (offline, with the workspace's lockfile and target
//! directory) and runs the policy binary, with nothing added to the package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn cargo_remote_policy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-remote-policy"))
        // As cargo runs a subcommand: the subcommand's name comes first.
        .arg("remote-policy")
        .args(args)
        .current_dir(workspace())
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .expect("run cargo-remote-policy")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn checks_a_package_with_nothing_added_to_it() {
    let ws = workspace();
    let policy = ws.join("examples/policy/worker.toml");
    let out = cargo_remote_policy(&[
        "-p",
        "remote-examples",
        "--offline",
        "--",
        "--policy",
        policy.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], false);
    assert_eq!(report["counts"]["allowed"], 2);
    assert_eq!(
        report["surface"]["roots"][0]["root"],
        "remote_examples::worker::Worker"
    );

    // The same package without the policy's allowances fails (exit 1), and
    // diff subcommands pass through.
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, "roots = [\"remote_examples::worker::Worker\"]\n").unwrap();
    let out = cargo_remote_policy(&[
        "--manifest-path",
        ws.join("examples/Cargo.toml").to_str().unwrap(),
        "--offline",
        "--",
        "--policy",
        strict.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("error[unbounded-input]"),
        "{}",
        text(&out.stdout)
    );
    let out = cargo_remote_policy(&[
        "-p",
        "remote-examples",
        "--offline",
        "--",
        "diff",
        "--against",
        ws.join("examples/schema/worker.json").to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("no changes"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_unknown_package_is_an_error() {
    let out = cargo_remote_policy(&["-p", "no-such-package", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no package `no-such-package`"),
        "{}",
        text(&out.stderr)
    );
}
