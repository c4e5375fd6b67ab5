//! `forbidden-capability` and `unauthenticated-capability`: a
//! `[[capability]]` entry broken by an interface reachable from a root.

use remote_core::schema::{short_name, Schema};

use crate::graph::{Exposure, Graph, Node};
use crate::policy::{matches, CapabilityRule, Level, Policy, Reachable};

use super::finding::{known, Finding};
use super::rule::Rule;

pub(super) fn capabilities(
    schema: &Schema,
    graph: &Graph,
    policy: &Policy,
    out: &mut Vec<Finding>,
) {
    for rule in &policy.capability {
        for reach in &graph.roots {
            for node in &reach.nodes {
                out.extend(capability_finding(schema, rule, &reach.root, node));
            }
        }
    }
}

/// The finding of one `[[capability]]` entry about one node reached from
/// `root`, if the node breaks it.
pub(crate) fn capability_finding(
    schema: &Schema,
    rule: &CapabilityRule,
    root: &str,
    node: &Node,
) -> Option<Finding> {
    let (id, need) = match rule.reachable {
        Reachable::Never => (Rule::ForbiddenCapability, "must never be reachable"),
        Reachable::Auth => (
            Rule::UnauthenticatedCapability,
            "must be reachable only through a method that requires authentication",
        ),
    };
    if !rule.roots.is_empty() && !rule.roots.iter().any(|p| matches(p, root)) {
        return None;
    }
    let hit = node.exposure == Exposure::Served
        && matches(&rule.interface, &node.interface)
        && (rule.reachable == Reachable::Never || node.pre_auth);
    if !hit {
        return None;
    }
    let how = if node.pre_auth {
        "without authentication"
    } else {
        "after authentication"
    };
    let mut message = format!(
        "capability `{}` {need}, but a peer of root `{}` reaches it {how}",
        node.interface,
        short_name(root)
    );
    if let Some(reason) = &rule.reason {
        message.push_str(&format!(" (policy: {reason})"));
    }
    Some(Finding {
        rule: id,
        level: Level::Error,
        message,
        at: node.interface.clone(),
        site: None,
        root: root.to_owned(),
        chain: node.chain.clone(),
        pre_auth: node.pre_auth,
        location: schema
            .interfaces
            .get(&node.interface)
            .and_then(|i| known(&i.location)),
        definition: None,
        also: 0,
        also_at: Vec::new(),
        allowed: None,
        chain_display: String::new(),
    })
}
