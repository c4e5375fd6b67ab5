//! The examples' checked-in schemas (`examples/schema/<name>.json`, what
//! each example's policy roots reach, without source locations) must match
//! the current build: `.ci/policy` runs `remote-policy diff` against them,
//! so a stale file would hide a wire change.
//!
//! Regenerate them after an intended interface change with
//! `REMOTE_POLICY_BLESS=1 cargo test -p remote-examples --test schema`
//! (and review the `git diff`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use remote_examples as _; // links the crate, and so its #[remote] descriptors

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The schema that `policy schema --reachable --no-locations --policy
/// <policy>` writes for one example.
fn export(policy: &Path, out: &Path) {
    let code = remote_policy::run_cli_with(
        [
            "policy".as_ref(),
            "schema".as_ref(),
            "--reachable".as_ref(),
            "--no-locations".as_ref(),
            "--policy".as_ref(),
            policy.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
        Some(remote_core::schema::collect()),
    );
    assert_eq!(
        code,
        ExitCode::SUCCESS,
        "exporting the schema for {}",
        policy.display()
    );
}

#[test]
fn checked_in_schemas_are_current() {
    let bless = std::env::var_os("REMOTE_POLICY_BLESS").is_some();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("examples-schema");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut policies: Vec<PathBuf> = std::fs::read_dir(examples_dir().join("policy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    policies.sort();
    assert!(policies.len() >= 5, "{policies:?}");
    let mut stale = Vec::new();
    for policy in &policies {
        let name = policy.file_stem().unwrap().to_str().unwrap();
        let fresh = tmp.join(format!("{name}.json"));
        export(policy, &fresh);
        let fresh = std::fs::read_to_string(&fresh).unwrap();
        let checked_in = examples_dir().join("schema").join(format!("{name}.json"));
        if bless {
            std::fs::write(&checked_in, &fresh).unwrap();
        } else if std::fs::read_to_string(&checked_in).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(checked_in.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale checked-in schemas: {stale:?}; if the interface change is intended, regenerate them with \
         `REMOTE_POLICY_BLESS=1 cargo test -p remote-examples --test schema` and review the diff \
         (`.ci/policy` reports what the change does to old clients and servers)"
    );
}
