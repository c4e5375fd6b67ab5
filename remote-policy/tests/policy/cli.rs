//! The standalone binary, end to end on schema files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn remote_policy(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remote-policy"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .expect("run remote-policy")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_fails_with_findings_and_writes_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let schema = fixture("chat.schema.json");
    let policy = fixture("chat.policy.toml");
    let out = remote_policy(
        &[
            "check",
            "--schema",
            schema.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--sarif",
            "out.sarif",
            "--json",
            "out.json",
            "--timings",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.ends_with(
            "remote-policy: 1 error, 0 warnings, 0 allowed (1 root, 3 interfaces, 6 methods)\n"
        ),
        "{stdout}"
    );
    // Reported once, with its shortest chain; the allow (via Admin.users)
    // covers another path only.
    assert!(
        stdout.contains(
            "   = chain: root Chat → Chat.history() → returns → [_] → Line → .author → User → .password_hash\n"
        ),
        "{stdout}"
    );
    // Where it crosses (the method), then where the field is declared.
    assert!(
        stdout.contains("  --> src/chat.rs:14:5\n  --> src/chat.rs:56:1\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("   = also crosses at 2 other method parts: chat::Admin.users->returns, chat::Listener.on_line(line)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("policy warning: [[allow]] entry 1 (rule `secret-flows-out`, at `chat::User.password_hash`) covers only some paths"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains(" ms"), "{}", text(&out.stderr));
    let sarif: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.sarif")).unwrap())
            .unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 1);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.json")).unwrap())
            .unwrap();
    assert_eq!(json["counts"]["errors"], 1);
}

#[test]
fn check_passes_when_every_finding_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = std::fs::read_to_string(fixture("chat.policy.toml")).unwrap();
    policy.push_str("\n[[allow]]\nrule = \"secret-flows-out\"\nat = \"chat::User.password_hash\"\nreason = \"test\"\n");
    std::fs::write(dir.path().join("remote-policy.toml"), policy).unwrap();
    // No --policy: remote-policy.toml in the current directory is used.
    let out = remote_policy(
        &[
            "--schema",
            fixture("chat.schema.json").to_str().unwrap(),
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["failed"], false);
    assert_eq!(json["counts"]["allowed"], 1);
}

#[test]
fn the_policy_is_found_in_cargo_manifest_dir() {
    let manifest = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        manifest.path().join("remote-policy.toml"),
        "[rules]\nsecret-flows-out = \"off\"\n\
         [[bound]]\nat = \"chat::Listener.on_line->error\"\nmax_bytes = 4096\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_remote-policy"))
        .args(["--schema", fixture("chat.schema.json").to_str().unwrap()])
        .current_dir(cwd.path())
        .env("CARGO_MANIFEST_DIR", manifest.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("remote-policy: no findings"));
}

#[test]
fn usage_errors_exit_with_two() {
    let dir = tempfile::tempdir().unwrap();
    let out = remote_policy(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no schema: pass --schema FILE"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        dir.path().join("bad.toml"),
        "[[capability]]\ninterface = \"x\"\nreachable = \"sometimes\"\n",
    )
    .unwrap();
    let schema = fixture("chat.schema.json");
    let out = remote_policy(
        &["--schema", schema.to_str().unwrap(), "--policy", "bad.toml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("in bad.toml: invalid policy:"), "{err}");
    assert!(err.contains("unknown variant `sometimes`"), "{err}");

    std::fs::write(
        dir.path().join("v3.json"),
        r#"{"format":"remote-schema","version":3}"#,
    )
    .unwrap();
    let out = remote_policy(&["--schema", "v3.json"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unsupported schema: format `remote-schema` version 3"));
}

#[test]
fn schema_export_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("chat.schema.json");
    let out = remote_policy(
        &[
            "schema",
            "--schema",
            input.to_str().unwrap(),
            "-o",
            "again.json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again = remote_policy::export::load(&dir.path().join("again.json")).unwrap();
    let original = remote_policy::export::load(&input).unwrap();
    assert_eq!(again, original);
    assert!(original.interfaces["chat::Chat"].methods[3].requires_auth);
    assert_eq!(
        original.interfaces["chat::Chat"].doc,
        "A chat server: a shared list users append to."
    );
}
