//! `remote-policy diff`: one fixture pair per change kind, with the exact
//! changes and verdicts it must produce (the table in
//! [`every_change_gets_its_kind_and_verdict`]), then allow entries, the
//! reports and the command line.

use remote_core::schema::{MethodDef, Schema, Ty, TypeDef};
use remote_policy::diff::{diff, ChangeKind, Verdict};
use remote_policy::testing::*;
use remote_policy::Policy;

#[path = "diff/cases.rs"]
mod cases;
use cases::{cases, Want};

/// `app::Api` with `methods`, and `types`.
fn api(methods: Vec<MethodDef>, types: Vec<TypeDef>) -> Schema {
    schema_with(vec![iface("app::Api", methods)], types)
}

/// A change as the tests compare it: kind, key, verdict.
type Found = (ChangeKind, String, Verdict);

fn changes(old: &Schema, new: &Schema, policy: &Policy) -> Vec<Found> {
    diff(old, new, policy)
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.kind, c.at, c.verdict))
        .collect()
}

fn u32_ty() -> Ty {
    Ty::Int {
        bits: 32,
        signed: false,
    }
}

fn get(arg: Ty, returns: Ty) -> MethodDef {
    method("get", vec![("id", arg)], returns)
}

#[test]
fn every_change_gets_its_kind_and_verdict() {
    let mut failed = Vec::new();
    let cases = cases();
    for c in &cases {
        let policy = if c.roots.is_empty() {
            Policy::default()
        } else {
            let roots: Vec<String> = c.roots.iter().map(|r| format!("{r:?}")).collect();
            Policy::from_toml(&format!("roots = [{}]", roots.join(", "))).unwrap()
        };
        let got = changes(&c.old, &c.new, &policy);
        let ok = match &c.want {
            Want::Exactly(want) => {
                let want: Vec<Found> = want
                    .iter()
                    .map(|&(k, at, v)| (k, at.to_owned(), v))
                    .collect();
                got == want
            }
            Want::Includes(k, at, v) => got.contains(&(*k, (*at).to_owned(), *v)),
        };
        if !ok {
            failed.push(format!("{}: got {got:?}", c.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    // Every kind a fixture pair can produce has one here.
    let covered: std::collections::BTreeSet<String> = cases
        .iter()
        .flat_map(|c| match &c.want {
            Want::Exactly(w) => w.iter().map(|(k, ..)| format!("{k:?}")).collect::<Vec<_>>(),
            Want::Includes(k, ..) => vec![format!("{k:?}")],
        })
        .collect();
    assert_eq!(covered.len(), ChangeKind::ALL.len(), "{covered:?}");
}

#[test]
fn allow_entries_accept_changes_with_their_reason() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(vec![], vec![]);
    let policy = Policy::from_toml(
        "[[allow]]\nrule = \"method-removed\"\nat = \"Api.get\"\nreason = \"no client calls it since 1.2\"\n\
         [[allow]]\nrule = \"field-removed\"\nat = \"app::Nope.*\"\nreason = \"r\"",
    )
    .unwrap();
    let report = diff(&old, &new, &policy).unwrap();
    assert!(!report.failed());
    assert_eq!(
        report.changes[0].allowed.as_deref(),
        Some("no client calls it since 1.2")
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("entry 2"),
        "{:?}",
        report.warnings
    );
    // A check of the same policy does not warn about the diff entries.
    let checked = remote_policy::check(&new, &policy).unwrap();
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
}

#[test]
fn reports_render_in_three_formats() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(vec![], vec![]);
    let report = diff(&old, &new, &Policy::default()).unwrap();
    let text = remote_policy::diff::render::text(&report);
    assert_eq!(
        text,
        "error[method-removed]: `app::Api.get`: get(id: u32) -> Result<u32, remote_core::Error> → -
  --> fixtures.rs:2:1
   = verdict: breaks-old-clients
   = why: old callers of `get` get unknown_method

remote-policy diff: 1 breaking, 0 allowed, 0 safe
"
    );
    let v: serde_json::Value =
        serde_json::from_str(&remote_policy::diff::render::json(&report)).unwrap();
    assert_eq!(v["failed"], true);
    assert_eq!(v["changes"][0]["kind"], "method-removed");
    assert_eq!(v["changes"][0]["verdict"], "breaks-old-clients");
    let log: serde_json::Value =
        serde_json::from_str(&remote_policy::diff::render::sarif(&report)).unwrap();
    let r = &log["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "method-removed");
    assert_eq!(r["level"], "error");
    assert_eq!(
        r["partialFingerprints"]["remotePolicyDiff/v1"],
        "method-removed|app::Api.get|get(id: u32) -> Result<u32, remote_core::Error>|-"
    );
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), ChangeKind::ALL.len());
    assert!(rules
        .iter()
        .all(|r| r["helpUri"].is_string() && r["fullDescription"]["text"].is_string()));
}

/// The standalone binary: `diff OLD NEW` and `diff --against OLD --schema NEW`.
#[test]
fn cli_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let old = api(
        vec![get(u32_ty(), u32_ty()), method("ping", vec![], Ty::Unit)],
        vec![],
    );
    let same = dir.path().join("same.json");
    let old_path = dir.path().join("old.json");
    let new_path = dir.path().join("new.json");
    let safe_path = dir.path().join("safe.json");
    std::fs::write(&old_path, remote_policy::export::to_json(&old)).unwrap();
    std::fs::write(&same, remote_policy::export::to_json(&old)).unwrap();
    let new = api(vec![get(u32_ty(), u32_ty())], vec![]);
    std::fs::write(&new_path, remote_policy::export::to_json(&new)).unwrap();
    let mut safe = old.clone();
    safe.interfaces
        .get_mut("app::Api")
        .unwrap()
        .methods
        .push(method("pong", vec![], Ty::Unit));
    std::fs::write(&safe_path, remote_policy::export::to_json(&safe)).unwrap();
    let run = |args: &[&std::path::Path]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_remote-policy"))
            .arg("diff")
            .args(args)
            .current_dir(dir.path())
            .env_remove("CARGO_MANIFEST_DIR")
            .output()
            .unwrap()
    };
    let out = run(&[&old_path, &same]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&[&old_path, &safe_path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("safe[method-added]"));
    let out = run(&[&old_path, &new_path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[method-removed]: `app::Api.ping`"));
    let out = run(&[
        "--against".as_ref(),
        &old_path,
        "--schema".as_ref(),
        &new_path,
        "--sarif".as_ref(),
        "d.sarif".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("d.sarif")).unwrap())
            .unwrap();
    assert_eq!(log["runs"][0]["results"][0]["ruleId"], "method-removed");
    let out = run(&[&old_path, &dir.path().join("missing.json")]);
    assert_eq!(out.status.code(), Some(2));
}
