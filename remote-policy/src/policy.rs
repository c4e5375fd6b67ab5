//! The policy file (`remote-policy.toml`).
//!
//! Every section is optional; an empty file checks the built-in rules
//! (`#[wire(secret)]` marks, unbounded input before authentication, types
//! the checker cannot see into) from every served root. See the crate
//! README for the full reference.
//!
//! ```
//! use remote_policy::policy::{Level, Policy, Reachable};
//! use remote_policy::rules::Rule;
//!
//! let policy = Policy::from_toml(r#"
//!     roots = ["app::Chat"]
//!
//!     [secrets]
//!     types = ["*::ApiKey"]
//!
//!     [[capability]]
//!     interface = "app::Admin"
//!     reachable = "auth"
//!
//!     [[allow]]
//!     rule = "unbounded-input"
//!     at = "app::Chat.post(text)"
//!     reason = "the server rate-limits posts and the frame limit is 64 KiB"
//! "#).unwrap();
//! assert_eq!(policy.roots, ["app::Chat"]);
//! assert_eq!(policy.capability[0].reachable, Reachable::Auth);
//! assert_eq!(policy.level(Rule::SecretFlowsOut), Level::Error);
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use remote_core::schema::short_name;
use serde::{Deserialize, Serialize};

use crate::rules::rule::Rule;
use crate::Error;

/// The version of the policy format this checker reads.
pub const POLICY_VERSION: u32 = 1;

/// A parsed policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; `1` if left out.
    #[serde(default = "version_one")]
    pub version: u32,
    /// Interfaces served as a connection's root (patterns). Empty: every
    /// interface with a `#[remote] impl`, or every interface if there is none.
    #[serde(default)]
    pub roots: Vec<String>,
    /// Rule levels by rule id: `"error"`, `"warning"` or `"off"`.
    #[serde(default)]
    pub rules: BTreeMap<Rule, Level>,
    /// Types and fields that must never flow out, besides `#[wire(secret)]`.
    #[serde(default)]
    pub secrets: Secrets,
    /// Capabilities that must not be reachable, or only after authentication.
    #[serde(default)]
    pub capability: Vec<CapabilityRule>,
    /// Where the unbounded-input rule looks.
    #[serde(default)]
    pub unbounded: Unbounded,
    /// Size bounds enforced outside the type system.
    #[serde(default)]
    pub bound: Vec<Bound>,
    /// Findings allowed on purpose.
    #[serde(default)]
    pub allow: Vec<Allow>,
}

fn version_one() -> u32 {
    1
}

/// How a rule's findings count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Fails the check (the default for every rule).
    Error,
    /// Reported; does not fail the check.
    Warning,
    /// Not checked.
    Off,
}

/// `[secrets]`: patterns of secret types and fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Type keys (`app::ApiKey`, `*::Password`); also matches opaque type names.
    #[serde(default)]
    pub types: Vec<String>,
    /// Field keys (`app::User.password`, `app::Event.Joined.token`).
    #[serde(default)]
    pub fields: Vec<String>,
}

/// `[[capability]]`: where an interface may be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRule {
    /// Interface pattern.
    pub interface: String,
    /// The restriction.
    pub reachable: Reachable,
    /// Roots it applies to (patterns); empty: every root.
    #[serde(default)]
    pub roots: Vec<String>,
    /// Why, shown with a finding.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The restriction of a [`CapabilityRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachable {
    /// A peer must never be able to call it.
    Never,
    /// Only through a method marked `#[remote(requires_auth)]`.
    Auth,
}

/// `[unbounded]`: scope of the unbounded-input rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unbounded {
    /// Which input to check.
    #[serde(default)]
    pub scope: Scope,
}

/// Which peer input the unbounded-input rule checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Input reachable before authentication (default).
    #[default]
    PreAuth,
    /// All input.
    All,
}

/// `[[bound]]`: a size bound your code or transport enforces on a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// Argument (`app::Chat.post(text)`), callback return
    /// (`app::Listener.ask->returns`), field (`app::Msg.body`) or type
    /// (`app::Tree`) pattern.
    pub at: String,
    /// Upper bound of the whole value's encoded size, in bytes. Everything
    /// inside the value counts as bounded, recursion included.
    pub max_bytes: u64,
    /// Where it is enforced, shown in the surface report.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `[[allow]]`: a finding accepted on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Rule id, or `"*"`.
    pub rule: String,
    /// Pattern of the finding's subject (its `at`).
    pub at: String,
    /// Pattern that some method on the chain (`app::Chat.debug`) or the
    /// finding's site (`app::Chat.debug->returns`) must match.
    #[serde(default)]
    pub via: Option<String>,
    /// Root pattern.
    #[serde(default)]
    pub root: Option<String>,
    /// Why this is fine; required, shown in every report.
    pub reason: String,
}

impl Policy {
    /// Parses a policy from TOML text and checks it.
    pub fn from_toml(text: &str) -> Result<Policy, Error> {
        let policy: Policy = toml::from_str(text).map_err(|e| Error::PolicySyntax(Box::new(e)))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Reads a policy file.
    ///
    /// ```no_run
    /// let policy = remote_policy::Policy::load("remote-policy.toml".as_ref()).unwrap();
    /// # let _ = policy;
    /// ```
    pub fn load(path: &Path) -> Result<Policy, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Policy::from_toml(&text).map_err(|e| Error::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    fn validate(&self) -> Result<(), Error> {
        if self.version != POLICY_VERSION {
            return Err(Error::PolicyInvalid(format!(
                "policy version {} is not supported (this checker reads version {POLICY_VERSION})",
                self.version
            )));
        }
        for (i, allow) in self.allow.iter().enumerate() {
            if allow.reason.trim().is_empty() {
                return Err(Error::PolicyInvalid(format!(
                    "[[allow]] entry {} (rule `{}`, at `{}`) needs a non-empty reason",
                    i + 1,
                    allow.rule,
                    allow.at
                )));
            }
            if allow.rule != "*"
                && allow.rule.parse::<Rule>().is_err()
                && allow.rule.parse::<crate::diff::ChangeKind>().is_err()
            {
                let kinds: Vec<&str> = crate::diff::ChangeKind::ALL
                    .iter()
                    .map(|k| k.id())
                    .collect();
                return Err(Error::PolicyInvalid(format!(
                    "[[allow]] entry {} names unknown rule `{}` (known: {}; diff changes: {})",
                    i + 1,
                    allow.rule,
                    Rule::ALL.map(Rule::id).join(", "),
                    kinds.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The level of a rule: the `[rules]` entry, else [`Level::Error`].
    pub fn level(&self, rule: Rule) -> Level {
        self.rules.get(&rule).copied().unwrap_or(Level::Error)
    }
}

/// Whether `pattern` matches `key`.
///
/// `*` matches any run of characters (`::` included). A pattern without
/// `::` also matches the key with its module path removed, so `Chat.post(*)`
/// matches `app::chat::Chat.post(text)`.
///
/// ```
/// use remote_policy::policy::matches;
/// assert!(matches("*::ApiKey", "app::auth::ApiKey"));
/// assert!(matches("ApiKey", "app::auth::ApiKey"));
/// assert!(matches("User.pass*", "app::User.password"));
/// assert!(!matches("app::ApiKey", "app::auth::ApiKey"));
/// ```
pub fn matches(pattern: &str, key: &str) -> bool {
    glob(pattern.as_bytes(), key.as_bytes())
        || (!pattern.contains("::") && glob(pattern.as_bytes(), short_name(key).as_bytes()))
}

/// Iterative glob with `*` only (linear backtracking on the last star).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_edge_cases() {
        assert!(glob(b"", b""));
        assert!(glob(b"*", b""));
        assert!(!glob(b"", b"a"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        assert!(glob(b"*::Chat.*", b"x::Chat.post(a)"));
    }

    #[test]
    fn unknown_keys_and_missing_reasons_are_errors() {
        let err = Policy::from_toml("rootz = []").unwrap_err();
        assert!(err.to_string().contains("invalid policy"), "{err}");
        let err =
            Policy::from_toml("[[allow]]\nrule = \"unbounded-input\"\nat = \"x\"\nreason = \" \"")
                .unwrap_err();
        assert!(
            err.to_string().contains("needs a non-empty reason"),
            "{err}"
        );
        let err = Policy::from_toml("[[allow]]\nrule = \"nope\"\nat = \"x\"\nreason = \"r\"")
            .unwrap_err();
        assert!(err.to_string().contains("unknown rule `nope`"), "{err}");
        let err = Policy::from_toml("version = 2").unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn rule_levels_parse() {
        let p =
            Policy::from_toml("[rules]\nunchecked-type = \"warning\"\nsecret-flows-out = \"off\"")
                .unwrap();
        assert_eq!(p.level(Rule::UncheckedType), Level::Warning);
        assert_eq!(p.level(Rule::SecretFlowsOut), Level::Off);
        assert_eq!(p.level(Rule::UnboundedInput), Level::Error);
        assert!(Policy::from_toml("[rules]\nno-such-rule = \"off\"").is_err());
    }
}
