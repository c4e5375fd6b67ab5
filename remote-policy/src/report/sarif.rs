//! The report as SARIF 2.1.0, for code-scanning dashboards.
//!
//! Each finding is a `result` with the method where the value crosses as
//! its location (the interface, for capability rules), the declaration of
//! the offending field or type as a related location, and the chain from
//! the root as a `codeFlow`. `partialFingerprints` hold the rule and subject
//! (no line numbers), so a finding keeps its identity across commits;
//! `automationDetails.id` is `remote-policy/check/`. An allowed finding carries an
//! `external` suppression whose justification is the policy's reason.
//! Paths are relative to the workspace root (`%SRCROOT%`), as `file!()`
//! gives them.

use remote_core::schema::{Location, Schema};
use serde_json::{json, Value};

use super::Report;
use crate::graph::hop_location;
use crate::policy::Level;
use crate::rules::{Finding, Rule};

/// Renders the report as a SARIF 2.1.0 log. `schema` gives the source
/// locations of the hops in each chain.
///
/// ```
/// use remote_core::schema::Schema;
/// let schema = Schema::default();
/// let report = remote_policy::check(&schema, &Default::default()).unwrap();
/// let log: serde_json::Value =
///     serde_json::from_str(&remote_policy::report::sarif::render(&report, &schema)).unwrap();
/// assert_eq!(log["version"], "2.1.0");
/// assert_eq!(log["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap().len(), 5);
/// ```
pub fn render(report: &Report, schema: &Schema) -> String {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": camel(r.id()),
                "shortDescription": { "text": r.summary() },
                "fullDescription": { "text": format!("{} {}", r.summary(), r.help()) },
                "helpUri": help_uri("rules"),
                "help": { "text": r.help() },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let results: Vec<Value> = report.findings.iter().map(|f| result(f, schema)).collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": driver("remote-policy: security lint of remote interfaces", rules) },
            "automationDetails": { "id": "remote-policy/check/" },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&log).expect("a SARIF log always serializes");
    s.push('\n');
    s
}

/// The `tool.driver` object of a log.
pub(crate) fn driver(full_name: &str, rules: Vec<Value>) -> Value {
    json!({
        "name": "remote-policy",
        "fullName": full_name,
        "version": env!("CARGO_PKG_VERSION"),
        "semanticVersion": env!("CARGO_PKG_VERSION"),
        "informationUri": env!("CARGO_PKG_REPOSITORY"),
        "rules": rules,
    })
}

/// Where a rule is documented: a section of the crate's README.
pub(crate) fn help_uri(section: &str) -> String {
    format!(
        "{}/blob/main/remote-policy/README.md#{section}",
        env!("CARGO_PKG_REPOSITORY")
    )
}

pub(crate) fn camel(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|h| h.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

pub(crate) fn physical(loc: &Location) -> Value {
    let mut region = json!({ "startLine": loc.line.max(1) });
    if loc.column > 0 {
        region["startColumn"] = json!(loc.column);
    }
    json!({
        "artifactLocation": artifact(&loc.file),
        "region": region,
    })
}

/// A SARIF `artifactLocation` for `file!()`'s text: a URI reference
/// (RFC 3986), percent-encoded, relative to the source root, or a `file:`
/// URI for an absolute path (a dependency's `file!()` from cargo's
/// registry): written verbatim, `src/api v2/#gen.rs` was not a URI, its
/// `#` starting a fragment (a review).
fn artifact(file: &str) -> Value {
    let path = file.replace('\\', "/");
    let windows_drive =
        path.as_bytes().get(1) == Some(&b':') && path.as_bytes()[0].is_ascii_alphabetic();
    if path.starts_with('/') || windows_drive {
        let root = if windows_drive { "/" } else { "" };
        json!({ "uri": format!("file://{root}{}", encode_path(&path)) })
    } else {
        json!({ "uri": encode_path(&path), "uriBaseId": "%SRCROOT%" })
    }
}

/// Percent-encodes what a URI path may not hold as is: all but RFC 3986's
/// unreserved characters, `/`, and the sub-delimiters and `:` `@` a path
/// segment allows (UTF-8 bytes one by one).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn location(loc: Option<&Location>, message: Option<String>) -> Value {
    let mut v = json!({});
    if let Some(loc) = loc.filter(|l| !l.file.is_empty()) {
        v["physicalLocation"] = physical(loc);
    }
    if let Some(m) = message {
        v["message"] = json!({ "text": m });
    }
    v
}

fn result(f: &Finding, schema: &Schema) -> Value {
    let level = match f.level {
        Level::Warning => "warning",
        _ => "error",
    };
    let rule_index = Rule::ALL.iter().position(|r| *r == f.rule).unwrap_or(0);
    let mut r = json!({
        "ruleId": f.rule.id(),
        "ruleIndex": rule_index,
        "level": level,
        "message": { "text": format!("{} (chain: {})", f.message, f.chain_text()) },
        "partialFingerprints": { "remotePolicy/v2": f.stable_id() },
        "properties": { "at": f.at, "root": f.root, "preAuth": f.pre_auth, "alsoCrossesAt": f.also },
    });
    if let Some(site) = &f.site {
        r["properties"]["site"] = json!(site);
    }
    if let Some(loc) = &f.location {
        r["locations"] = json!([location(Some(loc), None)]);
    }
    if let Some(def) = &f.definition {
        r["relatedLocations"] = json!([{
            "id": 1,
            "physicalLocation": physical(def),
            "message": { "text": format!("`{}` is declared here", f.at) },
        }]);
    }
    let steps: Vec<Value> = f
        .chain
        .iter()
        .map(|h| json!({ "location": location(hop_location(schema, h), Some(h.to_string())) }))
        .collect();
    r["codeFlows"] = json!([{ "threadFlows": [{ "locations": steps }] }]);
    if let Some(reason) = &f.allowed {
        r["suppressions"] =
            json!([{ "kind": "external", "status": "accepted", "justification": reason }]);
    }
    r
}
