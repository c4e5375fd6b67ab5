//! `[[allow]]` entries, rule levels and unchecked types.

use remote_core::schema::Ty;
use remote_policy::policy::Level;
use remote_policy::testing::*;
use remote_policy::{check, Policy};

use crate::fixtures::*;

fn leaky() -> remote_core::schema::Schema {
    schema(
        vec![iface(
            "app::Api",
            vec![
                method("get", vec![], secret_ty()),
                method("debug", vec![], secret_ty()),
                method("post", vec![("text", string())], Ty::Unit),
            ],
        )],
        vec![],
    )
}

#[test]
fn an_allowed_finding_is_reported_with_its_reason_and_does_not_fail() {
    let policy = r#"
[[allow]]
rule = "secret-flows-out"
at = "app::Secret"
via = "app::Api.debug"
reason = "debug is compiled out of release builds"
[[allow]]
rule = "unbounded-input"
at = "Api.post(*)"
reason = "frame limit"
"#;
    let report = run(&leaky(), policy);
    // The secret is reported once, with its first shortest chain (get); the
    // allow covers only the debug path, so it fails.
    assert_eq!(
        rows(&report),
        [
            row(
                "secret-flows-out",
                "app::Secret",
                "root Api → Api.get() → returns → Secret",
                "app.rs:100"
            ),
            row(
                "allowed unbounded-input",
                "app::Api.post(text)",
                "root Api → Api.post() → arg text",
                "fixtures.rs:2"
            ),
        ]
    );
    assert_eq!(report.findings[0].also, 1);
    assert_eq!(report.findings[0].also_at, ["app::Api.debug->returns"]);
    assert!(report.failed(), "the get() leak is not allowed");
    assert_eq!(report.counts(), (1, 0, 1));
    // Allowing the get path as well accepts the secret: every path is covered.
    let both = format!(
        "{policy}\n[[allow]]\nrule = \"secret-flows-out\"\nat = \"app::Secret\"\nvia = \"app::Api.get\"\nreason = \"get is admin-only\""
    );
    let report = run(&leaky(), &both);
    assert_eq!(
        report.findings[0].allowed.as_deref(),
        Some("get is admin-only")
    );
    assert!(!report.failed());
    let text = remote_policy::report::text::render(&report);
    assert!(text.contains("allowed[secret-flows-out]"), "{text}");
    assert!(text.contains("   = allowed: get is admin-only\n"), "{text}");
    // Only one of them covers the chain the finding is reported with.
    assert_eq!(report.counts(), (0, 0, 2));
}

#[test]
fn allowing_everything_passes_and_unused_allows_are_warned_about() {
    let policy = r#"
[[allow]]
rule = "*"
at = "*"
reason = "prototype"
[[allow]]
rule = "forbidden-capability"
at = "app::Admin"
reason = "never used"
"#;
    let report = run(&leaky(), policy);
    assert!(!report.failed());
    assert!(report
        .findings
        .iter()
        .all(|f| f.allowed.as_deref() == Some("prototype")));
    assert_eq!(
        report.warnings,
        ["[[allow]] entry 2 (rule `forbidden-capability`, at `app::Admin`) matches no finding"]
    );
}

#[test]
fn allow_root_must_match() {
    let policy = "[[allow]]\nrule = \"*\"\nat = \"*\"\nroot = \"app::Other\"\nreason = \"r\"";
    let report = run(&leaky(), policy);
    assert!(report.findings.iter().all(|f| f.allowed.is_none()));
}

#[test]
fn levels_turn_rules_into_warnings_or_off() {
    let report = run(
        &leaky(),
        "[rules]\nsecret-flows-out = \"warning\"\nunbounded-input = \"off\"",
    );
    assert_eq!(report.findings.len(), 1, "one finding per secret");
    assert!(report.findings.iter().all(|f| f.level == Level::Warning));
    assert!(!report.failed());
    assert_eq!(report.counts(), (0, 1, 0));
}

#[test]
fn opaque_and_missing_types_are_unchecked() {
    let s = schema(
        vec![iface(
            "app::Api",
            vec![
                method(
                    "blob",
                    vec![],
                    Ty::Opaque {
                        name: "vendor::Blob".into(),
                        declared: None,
                    },
                ),
                method("lost", vec![("x", option(named("app::Lost")))], Ty::Unit),
            ],
        )],
        vec![],
    );
    let report = run(&s, "");
    assert_eq!(
        rows(&report),
        [
            row(
                "unchecked-type",
                "app::Lost",
                "root Api → Api.lost() → arg x → Some → Lost",
                "fixtures.rs:2"
            ),
            row(
                "unchecked-type",
                "vendor::Blob",
                "root Api → Api.blob() → returns",
                "fixtures.rs:2"
            ),
        ]
    );
    assert!(report.findings[1]
        .message
        .starts_with("type `vendor::Blob` implements Wire without describing itself"));
}

#[test]
fn policy_entries_that_match_nothing_are_errors() {
    // A typo in [secrets] or [[capability]] would turn the rule off, so the
    // check refuses to run (exit status 2) instead of warning.
    let policy = r#"
[secrets]
types = ["app::Scret"]
fields = ["app::Secret.kye"]
[[capability]]
interface = "app::Amdin"
reachable = "never"
"#;
    let policy = Policy::from_toml(&format!(
        "roots = [\"app::Api\"]\n{policy}[rules]\nunbounded-input = \"off\"\nsecret-flows-out = \"off\""
    ))
    .unwrap();
    let err = check(&leaky(), &policy).unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy patterns match nothing in the schema (a typo would turn a rule off): \
         [secrets] type `app::Scret` matches no type of the schema; \
         [secrets] field `app::Secret.kye` matches no field of the schema; \
         [[capability]] `app::Amdin` matches no interface of the schema"
    );
}
