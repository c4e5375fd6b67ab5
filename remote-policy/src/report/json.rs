//! The machine-readable report (`"format": "remote-policy-report"`).
//!
//! ```json
//! {
//!   "format": "remote-policy-report",
//!   "version": 1,
//!   "failed": true,
//!   "counts": { "errors": 1, "warnings": 0, "allowed": 0 },
//!   "findings": [ { "rule": "secret-flows-out", "level": "error", "message": "...",
//!                   "at": "app::Token", "site": "app::Chat.login->returns",
//!                   "root": "app::Chat", "chain": [ { "kind": "root", "interface": "app::Chat" }, ... ],
//!                   "pre_auth": true, "location": { "file": "src/app.rs", "line": 12, "column": 1 },
//!                   "allowed": null } ],
//!   "warnings": [],
//!   "surface": { "roots": [...], "types_out": [...], "types_in": [...] }
//! }
//! ```
//!
//! Each chain hop is an object with a `kind` (`root`, `method`, `position`,
//! `type`, `variant`, `field`, `element`, `key`, `value`, `some`, `ok`,
//! `err`, `tuple`, `item`, `capability`) and that hop's fields.

use serde::Serialize;

use super::{Report, Surface};
use crate::rules::Finding;

/// Version of the JSON report format.
pub const REPORT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Json<'a> {
    format: &'static str,
    version: u32,
    failed: bool,
    counts: Counts,
    findings: &'a [Finding],
    warnings: &'a [String],
    surface: &'a Surface,
}

#[derive(Serialize)]
struct Counts {
    errors: usize,
    warnings: usize,
    allowed: usize,
}

/// Renders the report as pretty-printed JSON.
///
/// ```
/// use remote_core::schema::Schema;
/// let report = remote_policy::check(&Schema::default(), &Default::default()).unwrap();
/// let v: serde_json::Value = serde_json::from_str(&remote_policy::report::json::render(&report)).unwrap();
/// assert_eq!(v["format"], "remote-policy-report");
/// assert_eq!(v["failed"], false);
/// ```
pub fn render(report: &Report) -> String {
    let (errors, warnings, allowed) = report.counts();
    let json = Json {
        format: "remote-policy-report",
        version: REPORT_VERSION,
        failed: report.failed(),
        counts: Counts {
            errors,
            warnings,
            allowed,
        },
        findings: &report.findings,
        warnings: &report.warnings,
        surface: &report.surface,
    };
    let mut s = serde_json::to_string_pretty(&json).expect("a report always serializes");
    s.push('\n');
    s
}
