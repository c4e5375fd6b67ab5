//! The rules, and the findings they produce.
//!
//! | rule | finds |
//! |---|---|
//! | `secret-flows-out` | a `#[wire(secret)]` type or field, or one listed in `[secrets]`, in a value that flows to a peer |
//! | `forbidden-capability` | an interface a `[[capability]]` entry says is `never` reachable, reachable from a root |
//! | `unauthenticated-capability` | an interface that must be reached only through a `requires_auth` method, reachable without one |
//! | `unbounded-input` | a string, byte buffer, sequence or map without a length bound, a recursive type or an opaque type, in a value a peer sends us (before authentication, by default) |
//! | `unchecked-type` | a type the checker cannot see inside (`Ty::Opaque`, a name missing from the schema, nesting deeper than [`MAX_DEPTH`](crate::graph::MAX_DEPTH)), so it cannot vouch for it |
//!
//! ```
//! use remote_policy::rules::Rule;
//! assert_eq!("secret-flows-out".parse::<Rule>().unwrap(), Rule::SecretFlowsOut);
//! assert_eq!(Rule::UnboundedInput.id(), "unbounded-input");
//! ```

mod capability;
pub(crate) mod finding;
pub(crate) mod rule;
mod secret;
mod unbounded;
mod unchecked;

use std::collections::BTreeSet;

use remote_core::schema::Schema;

use crate::graph::{Direction, Graph, Site, TypeWalk};
use crate::policy::{Level, Policy, Scope};

use self::capability::capabilities;
pub(crate) use self::capability::capability_finding;
use self::finding::root_of;
pub use self::finding::Finding;
pub use self::rule::{Rule, UnknownRule};
pub(crate) use self::secret::leaky_types;
use self::secret::secrets;
use self::unbounded::unbounded;
use self::unchecked::unchecked;

/// Runs every enabled rule on a graph and its [`Graph::sites`]. Findings are sorted and de-duplicated;
/// `[[allow]]` entries are not applied yet (see [`crate::check`]).
pub fn evaluate(
    schema: &Schema,
    graph: &Graph,
    sites: &[Site<'_>],
    policy: &Policy,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let on = |r: Rule| policy.level(r) != Level::Off;
    // Shortest chains first (before authentication first), so the rules
    // that report a field or type once report it with its best chain.
    let mut ordered: Vec<&Site<'_>> = sites.iter().collect();
    ordered.sort_by_key(|s| (!s.pre_auth, s.chain.len()));
    if on(Rule::SecretFlowsOut) {
        crate::secrets::findings(schema, policy, sites, &mut out);
    }
    if on(Rule::ForbiddenCapability) || on(Rule::UnauthenticatedCapability) {
        capabilities(schema, graph, policy, &mut out);
    }
    if on(Rule::UnboundedInput) {
        let all = policy.unbounded.scope == Scope::All;
        let mut walk = TypeWalk::new(schema);
        for site in ordered
            .iter()
            .filter(|s| s.direction == Direction::In && (all || s.pre_auth))
        {
            unbounded(schema, policy, site, &mut walk, &mut out);
        }
    }
    if on(Rule::UncheckedType) {
        let mut walk = TypeWalk::new(schema);
        for site in &ordered {
            unchecked(schema, site, &mut walk, &mut out);
        }
        for (iface, chain) in &graph.missing_interfaces {
            out.push(Finding {
                rule: Rule::UncheckedType,
                level: Level::Error,
                message: format!("capability `{iface}` is not defined in the schema, so its methods cannot be checked"),
                at: iface.clone(),
                site: None,
                root: root_of(chain),
                chain: chain.clone(),
                pre_auth: true,
                location: None,
                definition: None,
                also: 0,
                also_at: Vec::new(),
                allowed: None,
                chain_display: String::new(),
            });
        }
    }
    for f in &mut out {
        f.level = policy.level(f.rule);
    }
    out.retain(|f| f.level != Level::Off);
    sort(&mut out);
    out
}

/// De-duplicates findings by fingerprint (the first wins) and sorts them in
/// report order.
pub(crate) fn sort(out: &mut Vec<Finding>) {
    let mut seen = BTreeSet::new();
    out.retain(|f| seen.insert(f.fingerprint()));
    out.sort_by(|a, b| {
        (a.rule, &a.at, &a.site, &a.root, a.chain.len()).cmp(&(
            b.rule,
            &b.at,
            &b.site,
            &b.root,
            b.chain.len(),
        ))
    });
}

/// The findings of one site-based rule at one site alone, with a walker of
/// its own (so every field inside is reported): used to look for paths an
/// `[[allow]]` does not cover.
pub(crate) fn site_findings<'s>(
    schema: &'s Schema,
    policy: &Policy,
    leaky: &BTreeSet<&str>,
    site: &Site<'s>,
    rule: Rule,
) -> Vec<Finding> {
    let mut out = Vec::new();
    match rule {
        Rule::SecretFlowsOut if site.direction == Direction::Out => {
            secrets(schema, policy, leaky, site, &mut out)
        }
        Rule::UnboundedInput if site.direction == Direction::In => {
            unbounded(schema, policy, site, &mut TypeWalk::new(schema), &mut out)
        }
        Rule::UncheckedType => unchecked(schema, site, &mut TypeWalk::new(schema), &mut out),
        _ => {}
    }
    for f in &mut out {
        f.level = policy.level(f.rule);
    }
    out
}
