//! The report for people.
//!
//! ```text
//! error[secret-flows-out]: secret type `app::Token` (marked #[wire(secret)]) flows out to the peer: returned by `Chat.login`
//!   --> src/app.rs:30:5
//!   --> src/app.rs:12:1
//!    = chain: root Chat → Chat.login() → returns → Session → .token → Token
//!    = at: app::Token
//!    = also crosses at 1 other method part: app::Chat.refresh->returns
//!    = reachable before authentication
//!
//! remote-policy: 1 error, 0 warnings, 0 allowed (1 root, 2 interfaces, 3 methods)
//! ```

use std::fmt::Write as _;

use crate::graph::Exposure;
use crate::policy::Level;

use super::Report;

/// Renders the findings, policy warnings and a summary line.
///
/// ```
/// use remote_core::schema::Schema;
/// let report = remote_policy::check(&Schema::default(), &Default::default()).unwrap();
/// let text = remote_policy::report::text::render(&report);
/// assert!(text.ends_with("no findings (0 roots, 0 interfaces, 0 methods)\n"));
/// ```
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let label = match (&f.allowed, f.level) {
            (Some(_), _) => "allowed",
            (None, Level::Warning) => "warning",
            (None, _) => "error",
        };
        let _ = writeln!(out, "{label}[{}]: {}", f.rule, f.message);
        // Where the value crosses (the method), then the field or type.
        for loc in f.location.iter().chain(
            f.definition
                .iter()
                .filter(|d| Some(*d) != f.location.as_ref()),
        ) {
            let _ = writeln!(out, "  --> {}:{}:{}", loc.file, loc.line, loc.column);
        }
        let _ = writeln!(out, "   = chain: {}", f.chain_text());
        let _ = writeln!(out, "   = at: {}", f.at);
        if f.also > 0 {
            let more = if f.also > f.also_at.len() {
                ", …"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "   = also crosses at {} other method part{}: {}{more}",
                f.also,
                plural(f.also),
                f.also_at.join(", ")
            );
        }
        if f.pre_auth {
            let _ = writeln!(out, "   = reachable before authentication");
        }
        if let Some(reason) = &f.allowed {
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
    let (errors, warnings, allowed) = report.counts();
    let roots = report.surface.roots.len();
    let (interfaces, methods) = surface_size(report);
    let scope = format!(
        "({roots} root{}, {interfaces} interface{}, {methods} method{})",
        plural(roots),
        plural(interfaces),
        plural(methods)
    );
    if report.findings.is_empty() {
        let _ = writeln!(out, "remote-policy: no findings {scope}");
    } else {
        let _ = writeln!(
            out,
            "remote-policy: {errors} error{}, {warnings} warning{}, {allowed} allowed {scope}",
            plural(errors),
            plural(warnings)
        );
    }
    out
}

/// Distinct reachable (interface, exposure) pairs and their methods, over all roots.
fn surface_size(report: &Report) -> (usize, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut methods = 0;
    for root in &report.surface.roots {
        for i in &root.interfaces {
            if seen.insert((&i.interface, i.exposure)) {
                methods += i.methods.len();
            }
        }
    }
    (seen.len(), methods)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Renders the reachable surface: per root, each interface a peer can reach
/// and who calls it, then the named types flowing each way.
///
/// ```
/// use remote_core::schema::Schema;
/// let report = remote_policy::check(&Schema::default(), &Default::default()).unwrap();
/// assert!(remote_policy::report::text::render_surface(&report).contains("types out: -"));
/// ```
pub fn render_surface(report: &Report) -> String {
    let mut out = String::new();
    for root in &report.surface.roots {
        let _ = writeln!(out, "root {}", root.root);
        for i in &root.interfaces {
            let who = match i.exposure {
                Exposure::Served => "served, the peer calls",
                Exposure::Held => "callback, we call the peer",
            };
            let auth = if i.pre_auth {
                "before auth"
            } else {
                "after auth"
            };
            let _ = writeln!(
                out,
                "  {} ({who}; {auth}): {}",
                i.interface,
                i.methods.join(", ")
            );
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(out, "types out: {}", list(&report.surface.types_out));
    let _ = writeln!(out, "types in: {}", list(&report.surface.types_in));
    out
}
