//! The renderings of a [`DiffReport`]: text, JSON
//! (`"format": "remote-policy-diff"`, version 1) and SARIF 2.1.0, like the
//! check's.
//!
//! ```text
//! error[method-removed]: `app::Chat.post`: post(text: String) -> Result<u64, remote_core::Error> → -
//!   --> src/chat.rs:12:5
//!    = verdict: breaks-old-clients
//!    = why: old callers of `post` get unknown_method
//! ```

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use super::{Change, ChangeKind, DiffReport, Verdict};

/// The report for people: breaking changes first, then safe ones.
///
/// ```
/// let text = remote_policy::diff::render::text(&Default::default());
/// assert_eq!(text, "remote-policy diff: no changes\n");
/// ```
pub fn text(report: &DiffReport) -> String {
    let mut out = String::new();
    let mut ordered: Vec<&Change> = report.changes.iter().collect();
    ordered.sort_by_key(|c| c.verdict == Verdict::Safe);
    for c in ordered {
        let label = match (&c.allowed, c.verdict) {
            (Some(_), _) => "allowed",
            (None, Verdict::Safe) => "safe",
            (None, _) => "error",
        };
        let _ = writeln!(
            out,
            "{label}[{}]: `{}`: {} → {}",
            c.kind, c.at, c.old, c.new
        );
        if let Some(loc) = &c.location {
            let _ = writeln!(out, "  --> {}:{}:{}", loc.file, loc.line, loc.column);
        }
        let _ = writeln!(out, "   = verdict: {}", c.verdict);
        let _ = writeln!(out, "   = why: {}", c.why);
        if let Some(reason) = &c.allowed {
            let _ = writeln!(out, "   = allowed: {reason}");
        }
        out.push('\n');
    }
    for w in &report.warnings {
        let _ = writeln!(out, "policy warning: {w}");
    }
    if !report.warnings.is_empty() {
        out.push('\n');
    }
    let (failing, allowed, safe) = report.counts();
    if report.changes.is_empty() {
        out.push_str("remote-policy diff: no changes\n");
    } else {
        let _ = writeln!(
            out,
            "remote-policy diff: {failing} breaking, {allowed} allowed, {safe} safe"
        );
    }
    out
}

/// Version of the JSON diff report format.
pub const DIFF_REPORT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Json<'a> {
    format: &'static str,
    version: u32,
    failed: bool,
    counts: Counts,
    changes: &'a [Change],
    warnings: &'a [String],
}

#[derive(Serialize)]
struct Counts {
    breaking: usize,
    allowed: usize,
    safe: usize,
}

/// The machine-readable report.
///
/// ```
/// let v: serde_json::Value =
///     serde_json::from_str(&remote_policy::diff::render::json(&Default::default())).unwrap();
/// assert_eq!(v["format"], "remote-policy-diff");
/// ```
pub fn json(report: &DiffReport) -> String {
    let (breaking, allowed, safe) = report.counts();
    let v = Json {
        format: "remote-policy-diff",
        version: DIFF_REPORT_VERSION,
        failed: report.failed(),
        counts: Counts {
            breaking,
            allowed,
            safe,
        },
        changes: &report.changes,
        warnings: &report.warnings,
    };
    let mut s = serde_json::to_string_pretty(&v).expect("a report always serializes");
    s.push('\n');
    s
}

/// The report as a SARIF 2.1.0 log: one rule per change kind, one result
/// per change (safe ones as `note`).
///
/// ```
/// let log: serde_json::Value =
///     serde_json::from_str(&remote_policy::diff::render::sarif(&Default::default())).unwrap();
/// assert_eq!(log["runs"][0]["automationDetails"]["id"], "remote-policy/diff/");
/// ```
pub fn sarif(report: &DiffReport) -> String {
    let rules: Vec<Value> = ChangeKind::ALL
        .iter()
        .map(|k| {
            json!({
                "id": k.id(),
                "name": super::super::report::sarif::camel(k.id()),
                "shortDescription": { "text": format!("Wire-compatibility change: {}", k.id()) },
                "fullDescription": { "text": format!("A `{}` change between two schema versions, judged by what it does to old clients and old servers on the wire (PROTOCOL.md §2).", k.id()) },
                "helpUri": super::super::report::sarif::help_uri("wire-compatibility-diff"),
                "help": { "text": "Keep the old shape (an Option field, the old wire name with #[remote(name)], a new method instead of a changed one), or accept the change with an [[allow]] entry and a reason." },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .changes
        .iter()
        .map(|c| {
            let rule_index = ChangeKind::ALL.iter().position(|k| *k == c.kind).unwrap_or(0);
            let level = if c.verdict == Verdict::Safe { "note" } else { "error" };
            let mut r = json!({
                "ruleId": c.kind.id(),
                "ruleIndex": rule_index,
                "level": level,
                "message": { "text": format!("`{}`: {} → {} ({}): {}", c.at, c.old, c.new, c.verdict, c.why) },
                "partialFingerprints": { "remotePolicyDiff/v1": c.fingerprint() },
                "properties": { "at": c.at, "verdict": c.verdict, "old": c.old, "new": c.new },
            });
            let mut loc = json!({
                "logicalLocations": [{ "fullyQualifiedName": c.at }],
            });
            if let Some(l) = &c.location {
                loc["physicalLocation"] = super::super::report::sarif::physical(l);
            }
            r["locations"] = json!([loc]);
            if let Some(reason) = &c.allowed {
                r["suppressions"] =
                    json!([{ "kind": "external", "status": "accepted", "justification": reason }]);
            }
            r
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": super::super::report::sarif::driver("remote-policy diff: wire-compatibility check between schema versions", rules) },
            "automationDetails": { "id": "remote-policy/diff/" },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&log).expect("a SARIF log always serializes");
    s.push('\n');
    s
}
