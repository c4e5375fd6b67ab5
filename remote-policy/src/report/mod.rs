//! The result of a check, and its renderings: [`text`] for people, [`json`]
//! and [`sarif`] (SARIF 2.1.0) for machines.
//!
//! ```
//! use remote_core::schema::Schema;
//! use remote_policy::{check, Policy};
//! let report = check(&Schema::default(), &Policy::default()).unwrap();
//! assert!(!report.failed());
//! assert!(remote_policy::report::text::render(&report).contains("no findings"));
//! ```

use serde::Serialize;

use crate::graph::Exposure;
use crate::policy::Level;
use crate::rules::Finding;

pub mod json;
pub mod sarif;
pub mod text;

/// Everything a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Findings, allowed ones included, sorted by rule then subject.
    pub findings: Vec<Finding>,
    /// Problems of the policy itself that do not fail the check (an entry
    /// that matches nothing, an unused `[[allow]]`).
    pub warnings: Vec<String>,
    /// What peers can reach.
    pub surface: Surface,
}

impl Report {
    /// Whether any finding fails the check (an error not allowed).
    pub fn failed(&self) -> bool {
        self.findings.iter().any(Finding::fails)
    }

    /// Count of (failing errors, warnings, allowed findings).
    pub fn counts(&self) -> (usize, usize, usize) {
        let allowed = self.findings.iter().filter(|f| f.allowed.is_some()).count();
        let errors = self.findings.iter().filter(|f| f.fails()).count();
        let warnings = self
            .findings
            .iter()
            .filter(|f| f.allowed.is_none() && f.level == Level::Warning)
            .count();
        (errors, warnings, allowed)
    }
}

/// The reachable surface: every interface and method a peer can reach from
/// each root, and the named types that flow each way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Surface {
    /// Per root.
    pub roots: Vec<RootSurface>,
    /// Named types that flow to a peer.
    pub types_out: Vec<String>,
    /// Named types a peer sends us.
    pub types_in: Vec<String>,
}

/// What one root exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootSurface {
    /// Root interface key.
    pub root: String,
    /// Reachable interfaces, the root first.
    pub interfaces: Vec<SurfaceInterface>,
}

/// A reachable interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SurfaceInterface {
    /// Interface key.
    pub interface: String,
    /// Who calls its methods.
    pub exposure: Exposure,
    /// Reachable before authentication.
    pub pre_auth: bool,
    /// Method names; `requires_auth` ones end with ` (auth)`.
    pub methods: Vec<String>,
}
