//! [`Finding`]: one result of the check, and how a rule builds one at a
//! site (its chain, location and "where" phrase).

use remote_core::schema::{short_name, Location};
use serde::Serialize;

use crate::graph::{chain_to_string, hops, Exposure, Hop, Position, Site, Step};
use crate::policy::Level;

use super::rule::Rule;

/// One result of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// Its level from the policy (`error` or `warning`).
    pub level: Level,
    /// What is wrong, in a sentence.
    pub message: String,
    /// The key `[[allow]]` and `[[bound]]` entries match (`at`): a type,
    /// field, method part or interface.
    pub at: String,
    /// The method part where the value crosses (`app::Chat.login->returns`).
    pub site: Option<String>,
    /// The root the chain starts from.
    pub root: String,
    /// From the root to the finding.
    pub chain: Vec<Hop>,
    /// Reachable without authentication.
    pub pre_auth: bool,
    /// Where the value crosses: the method whose signature exposes it (for
    /// capability rules, the interface).
    pub location: Option<Location>,
    /// Where the offending field or type is declared.
    pub definition: Option<Location>,
    /// How many other method parts the same secret also crosses at
    /// (`secret-flows-out` reports each secret once).
    pub also: usize,
    /// The first of those, by key.
    pub also_at: Vec<String>,
    /// The reason of the `[[allow]]` entry that accepts it.
    pub allowed: Option<String>,
    /// The chain as text with unambiguous names (set by [`crate::check`]).
    #[serde(rename = "chain_text", skip_serializing_if = "String::is_empty")]
    pub chain_display: String,
}

impl Finding {
    /// The chain as text (`root Chat → Chat.login() → returns → Session`),
    /// each interface and type by the shortest path suffix that is
    /// unambiguous in the schema.
    pub fn chain_text(&self) -> String {
        if self.chain_display.is_empty() {
            chain_to_string(&self.chain)
        } else {
            self.chain_display.clone()
        }
    }

    /// Whether it fails the check: an error not allowed.
    pub fn fails(&self) -> bool {
        self.level == Level::Error && self.allowed.is_none()
    }

    /// A stable identity across commits (SARIF `partialFingerprints`): the
    /// rule and subject, and the root for capability rules; no line numbers,
    /// chain or wording.
    pub fn stable_id(&self) -> String {
        let root = if self.site.is_none() {
            self.root.as_str()
        } else {
            ""
        };
        format!("{}|{}|{}", self.rule, self.at, root)
    }

    /// The identity used to de-duplicate findings.
    pub fn fingerprint(&self) -> String {
        let site = self.site.as_deref().unwrap_or("");
        let root = if self.site.is_none() {
            self.root.as_str()
        } else {
            ""
        };
        format!(
            "{}|{}|{}|{}|{}",
            self.rule, self.at, site, root, self.message
        )
    }
}

pub(super) fn root_of(chain: &[Hop]) -> String {
    match chain.first() {
        Some(Hop::Root { interface }) => interface.clone(),
        _ => String::new(),
    }
}

pub(super) fn known(loc: &Location) -> Option<Location> {
    (!loc.file.is_empty()).then(|| loc.clone())
}

pub(super) fn finding(
    rule: Rule,
    site: &Site<'_>,
    path: &[Step<'_>],
    at: String,
    message: String,
) -> Finding {
    let mut chain = site.chain.clone();
    chain.extend(hops(path));
    Finding {
        rule,
        level: Level::Error,
        message,
        at,
        site: Some(site.key()),
        root: site.root.to_owned(),
        chain,
        pre_auth: site.pre_auth,
        location: known(&site.method.location),
        definition: None,
        also: 0,
        also_at: Vec::new(),
        allowed: None,
        chain_display: String::new(),
    }
}

/// "returned by `Chat.login`", "passed as `msg` to the peer's callback
/// `Listener.on_event`", "streamed returned by `Root.tail`".
pub(crate) fn where_phrase(site: &Site<'_>, path: &[Step<'_>]) -> String {
    let m = format!(
        "`{}.{}`",
        short_name(&site.interface.path),
        site.method.name
    );
    let streamed = if path.contains(&Step::Item) {
        "streamed "
    } else {
        ""
    };
    match (site.exposure, &site.position) {
        (Exposure::Served, Position::Arg(a)) if path.contains(&Step::Item) => {
            format!("streamed passed as `{a}` to {m}")
        }
        (Exposure::Served, Position::Arg(a)) => format!("in argument `{a}` of {m}"),
        (Exposure::Served, Position::Returns) => format!("{streamed}returned by {m}"),
        (Exposure::Served, Position::Error) => format!("{streamed}in the error of {m}"),
        (Exposure::Held, Position::Arg(a)) => {
            format!("{streamed}passed as `{a}` to the peer's callback {m}")
        }
        (Exposure::Held, Position::Returns) => {
            format!("{streamed}returned by the peer's callback {m}")
        }
        (Exposure::Held, Position::Error) => {
            format!("{streamed}in the error of the peer's callback {m}")
        }
    }
}
