//! The rules, and the findings they produce.
//!
//! | rule | finds |
//! |---|---|
//! | `secret-flows-out` | a `#[wire(secret)]` type or field, or one listed in `[secrets]`, in a value that flows to a peer |
//! | `forbidden-capability` | an interface a `[[capability]]` entry says is `never` reachable, reachable from a root |
//! | `unauthenticated-capability` | an interface that must be reached only through a `requires_auth` method, reachable without one |
//! | `unbounded-input` | a string, byte buffer, sequence or map without a length bound, a recursive type or an opaque type, in a value a peer sends us (before authentication, by default) |
//! | `unchecked-type` | a type the checker cannot see inside (`Ty::Opaque`, a name missing from the schema, nesting deeper than [`MAX_DEPTH`]), so it cannot vouch for it |
//!
//! ```
//! use remote_policy::rules::Rule;
//! assert_eq!("secret-flows-out".parse::<Rule>().unwrap(), Rule::SecretFlowsOut);
//! assert_eq!(Rule::UnboundedInput.id(), "unbounded-input");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use remote_core::schema::{short_name, FieldDef, Location, Schema, Ty, TypeKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::graph::{
    chain_to_string, field_key, hop_location, hops, Direction, Event, Exposure, Graph, Hop, Node,
    Position, Site, Step, TypeWalk, MAX_DEPTH,
};
use crate::policy::{matches, CapabilityRule, Level, Policy, Reachable, Scope};

/// A rule of the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A secret type or field flows out to a peer.
    SecretFlowsOut,
    /// A capability that must never be reachable is reachable.
    ForbiddenCapability,
    /// A capability is reachable without passing a `requires_auth` method.
    UnauthenticatedCapability,
    /// A value a peer sends has no size bound.
    UnboundedInput,
    /// A type the checker cannot see inside.
    UncheckedType,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 5] = [
        Rule::SecretFlowsOut,
        Rule::ForbiddenCapability,
        Rule::UnauthenticatedCapability,
        Rule::UnboundedInput,
        Rule::UncheckedType,
    ];

    /// The id used in policy files and reports.
    pub fn id(self) -> &'static str {
        match self {
            Rule::SecretFlowsOut => "secret-flows-out",
            Rule::ForbiddenCapability => "forbidden-capability",
            Rule::UnauthenticatedCapability => "unauthenticated-capability",
            Rule::UnboundedInput => "unbounded-input",
            Rule::UncheckedType => "unchecked-type",
        }
    }

    /// One-line description.
    ///
    /// ```
    /// assert!(remote_policy::Rule::SecretFlowsOut.summary().contains("secret"));
    /// ```
    pub fn summary(self) -> &'static str {
        match self {
            Rule::SecretFlowsOut => "A secret type or field can be sent to a peer",
            Rule::ForbiddenCapability => "A capability that must never be reachable is reachable",
            Rule::UnauthenticatedCapability => {
                "A capability is reachable without passing a method that requires authentication"
            }
            Rule::UnboundedInput => "A value a peer sends has no size bound (resource exhaustion)",
            Rule::UncheckedType => {
                "A type crosses the connection that the checker cannot see inside"
            }
        }
    }

    /// How to fix or accept a finding.
    pub fn help(self) -> &'static str {
        match self {
            Rule::SecretFlowsOut => {
                "Do not return or send the secret: return a redacted type, or move the value \
                 behind a capability that only exposes what the peer needs. If the flow is \
                 intended, add an [[allow]] entry with a reason."
            }
            Rule::ForbiddenCapability => {
                "Remove the method that hands the capability out (see the chain), or change \
                 the [[capability]] entry."
            }
            Rule::UnauthenticatedCapability => {
                "Mark the method that hands the capability out #[remote(requires_auth)], or \
                 hand it out only from an interface reached through such a method."
            }
            Rule::UnboundedInput => {
                "Use remote_core::wire::Bounded<T, N> for the value, declare a [[bound]] in \
                 the policy if your code enforces one, or require authentication first."
            }
            Rule::UncheckedType => {
                "Derive Wire (or implement Wire::describe) for the type so the checker can \
                 see its fields, or add an [[allow]] entry saying why it is safe."
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The error of parsing a [`Rule`] id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule `{0}`")]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Rule, UnknownRule> {
        Rule::ALL
            .into_iter()
            .find(|r| r.id() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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

fn root_of(chain: &[Hop]) -> String {
    match chain.first() {
        Some(Hop::Root { interface }) => interface.clone(),
        _ => String::new(),
    }
}

fn known(loc: &Location) -> Option<Location> {
    (!loc.file.is_empty()).then(|| loc.clone())
}

fn finding(rule: Rule, site: &Site<'_>, path: &[Step<'_>], at: String, message: String) -> Finding {
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

/// Named types that contain a secret type or field, directly or through
/// other named types (not through capabilities): the secret walk enters
/// only these.
pub(crate) fn leaky_types<'s>(schema: &'s Schema, policy: &Policy) -> BTreeSet<&'s str> {
    let listed_type = |k: &str| policy.secrets.types.iter().any(|p| matches(p, k));
    let listed_field = |k: &str| policy.secrets.fields.iter().any(|p| matches(p, k));
    let mut parents: BTreeMap<&'s str, Vec<&'s str>> = BTreeMap::new();
    let mut queue = Vec::new();
    for t in schema.types.values() {
        let mut direct = t.secret || listed_type(&t.path);
        let fields: Vec<(Option<&str>, &FieldDef)> = match &t.kind {
            TypeKind::Struct { fields } => fields.iter().map(|f| (None, f)).collect(),
            TypeKind::Enum { variants } => variants
                .iter()
                .flat_map(|v| v.fields.iter().map(move |f| (Some(v.name.as_str()), f)))
                .collect(),
        };
        for (variant, field) in fields {
            direct |= field.secret || listed_field(&field_key(&t.path, variant, &field.name));
            mentions(&field.ty, &mut |name, opaque| {
                if opaque {
                    direct |= listed_type(name);
                } else {
                    parents.entry(name).or_default().push(&t.path);
                }
            });
        }
        if direct {
            queue.push(t.path.as_str());
        }
    }
    let mut leaky: BTreeSet<&str> = queue.iter().copied().collect();
    while let Some(n) = queue.pop() {
        for p in parents.get(n).into_iter().flatten() {
            if leaky.insert(p) {
                queue.push(p);
            }
        }
    }
    leaky
}

/// Calls `f(name, opaque)` for each named (`false`) or opaque (`true`) type
/// in `ty`'s structure, without entering named types.
fn mentions<'s>(ty: &'s Ty, f: &mut impl FnMut(&'s str, bool)) {
    match ty {
        Ty::Named { path } => f(path, false),
        Ty::Opaque { name } => f(name, true),
        Ty::Seq { elem, .. } | Ty::Array { elem, .. } => mentions(elem, f),
        Ty::Map { key, value, .. } => {
            mentions(key, f);
            mentions(value, f);
        }
        Ty::Option(inner) => mentions(inner, f),
        Ty::Stream { item, .. } => mentions(item, f),
        Ty::Result { ok, err } => {
            mentions(ok, f);
            mentions(err, f);
        }
        Ty::Tuple(items) => items.iter().for_each(|t| mentions(t, f)),
        _ => {}
    }
}

fn secrets(
    schema: &Schema,
    policy: &Policy,
    leaky: &BTreeSet<&str>,
    site: &Site<'_>,
    out: &mut Vec<Finding>,
) {
    let listed_type = |k: &str| policy.secrets.types.iter().any(|p| matches(p, k));
    let listed_field = |k: &str| policy.secrets.fields.iter().any(|p| matches(p, k));
    TypeWalk::new(schema).walk(site.ty, &mut |event, path| {
        let (at, why, what, location) = match event {
            Event::Named(def) if def.secret || listed_type(&def.path) => (
                def.path.clone(),
                if def.secret {
                    "marked #[wire(secret)]"
                } else {
                    "listed in [secrets] types"
                },
                "secret type",
                known(&def.location),
            ),
            Event::Field {
                owner,
                variant,
                field,
            } => {
                let key = field_key(&owner.path, variant, &field.name);
                if !(field.secret || listed_field(&key)) {
                    return true;
                }
                let why = if field.secret {
                    "marked #[wire(secret)]"
                } else {
                    "listed in [secrets] fields"
                };
                (key, why, "secret field", known(&owner.location))
            }
            Event::Named(def) => return leaky.contains(def.path.as_str()),
            Event::Ty(Ty::Opaque { name }) if listed_type(name) => (
                name.clone(),
                "listed in [secrets] types",
                "secret type",
                None,
            ),
            _ => return true,
        };
        let message = format!(
            "{what} `{at}` ({why}) flows out to the peer: {}",
            where_phrase(site, path)
        );
        let mut f = finding(Rule::SecretFlowsOut, site, path, at, message);
        f.definition = location;
        out.push(f);
        false
    });
}

fn capabilities(schema: &Schema, graph: &Graph, policy: &Policy, out: &mut Vec<Finding>) {
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

/// The innermost field (or the method part) a walk path is in, and the
/// hops after it.
fn spot(site: &Site<'_>, path: &[Step<'_>]) -> (String, usize, Option<String>) {
    for (i, step) in path.iter().enumerate().rev() {
        if let Step::Field(name) = step {
            let mut variant = None;
            for s in path[..i].iter().rev() {
                match s {
                    Step::Variant(v) if variant.is_none() => variant = Some(*v),
                    Step::Type(owner) => {
                        return (
                            field_key(owner, variant, name),
                            i + 1,
                            Some((*owner).to_owned()),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    (site.key(), 0, None)
}

/// Walks with a walker shared by every site, so each named type is entered
/// once and each field reported once, with the first (shortest) chain.
fn unbounded<'s>(
    schema: &'s Schema,
    policy: &Policy,
    site: &Site<'s>,
    walk: &mut TypeWalk<'s>,
    out: &mut Vec<Finding>,
) {
    let bounded = |k: &str| policy.bound.iter().any(|b| matches(&b.at, k));
    if bounded(&site.key()) {
        return;
    }
    let when = if site.pre_auth {
        ", before authentication"
    } else {
        ""
    };
    walk.walk(site.ty, &mut |event, path| {
        let what = match event {
            Event::Named(def) => return !bounded(&def.path),
            Event::Field {
                owner,
                variant,
                field,
            } => {
                return !bounded(&field_key(&owner.path, variant, &field.name));
            }
            Event::Ty(Ty::String { max_len: None }) => "string without a length bound",
            Event::Ty(Ty::Bytes { max_len: None }) => "byte buffer without a length bound",
            Event::Ty(Ty::Seq { max_len: None, .. }) => "sequence without a length bound",
            Event::Ty(Ty::Map { max_len: None, .. }) => "map without a size bound",
            // The peer writes a remote error's text, but the runtime bounds
            // what it accepts (its chain entries and total text, see
            // `remote_core::Limits`), so it is bounded input.
            Event::Ty(Ty::RemoteError) => return true,
            Event::Ty(Ty::Opaque { name }) => {
                if bounded(name) {
                    return false;
                }
                "opaque type (the checker cannot see its size)"
            }
            Event::Recursion(def) => {
                if bounded(&def.path) {
                    return false;
                }
                let message = format!(
                    "recursive type `{}` nests without a depth bound {}{when}",
                    def.path,
                    where_phrase(site, path)
                );
                let mut f = finding(Rule::UnboundedInput, site, path, def.path.clone(), message);
                f.definition = known(&def.location);
                out.push(f);
                return false;
            }
            _ => return true,
        };
        let (at, suffix, owner) = spot(site, path);
        let inner = if suffix < path.len() {
            format!(" at {at} → {}", chain_to_string(&hops(&path[suffix..])))
        } else {
            String::new()
        };
        let place = match &owner {
            Some(_) => format!("field `{at}`"),
            None => String::new(),
        };
        let message = format!(
            "{what}{}{place}{inner}, {}{when}",
            if place.is_empty() { "" } else { " in " },
            where_phrase(site, path)
        );
        let definition = owner
            .as_deref()
            .and_then(|o| field_location(schema, o, &at));
        let mut f = finding(Rule::UnboundedInput, site, path, at, message);
        f.definition = definition;
        out.push(f);
        true
    });
}

/// Like [`unbounded`], with a shared walker: each type reported once.
fn unchecked<'s>(
    schema: &'s Schema,
    site: &Site<'s>,
    walk: &mut TypeWalk<'s>,
    out: &mut Vec<Finding>,
) {
    walk.walk(site.ty, &mut |event, path| {
        let (at, message) = match event {
            Event::Ty(Ty::Opaque { name }) => (
                name.clone(),
                format!(
                    "type `{name}` implements Wire without describing itself, so the checker cannot see inside it ({})",
                    where_phrase(site, path)
                ),
            ),
            Event::Missing(path_key) => (
                path_key.to_owned(),
                format!(
                    "type `{path_key}` is not defined in the schema, so the checker cannot see inside it ({})",
                    where_phrase(site, path)
                ),
            ),
            Event::TooDeep(_) => {
                let at = path
                    .iter()
                    .rev()
                    .find_map(|s| match s {
                        Step::Type(t) => Some((*t).to_owned()),
                        _ => None,
                    })
                    .unwrap_or_else(|| site.key());
                let message = format!(
                    "a type nests more than {MAX_DEPTH} steps deep inside `{at}`, so the checker does not look further ({})",
                    where_phrase(site, path)
                );
                (at, message)
            }
            Event::Ty(ty) if !is_known(ty) => (
                format!("{ty:?}"),
                format!(
                    "a kind of type this checker does not know: `{ty:?}` ({})",
                    where_phrase(site, path)
                ),
            ),
            _ => return true,
        };
        let mut f = finding(Rule::UncheckedType, site, path, at, message);
        f.definition = path
            .iter()
            .rev()
            .find_map(|s| hop_location(schema, &s.hop()).cloned());
        out.push(f);
        true
    });
}

/// The declaration of the field with key `key` in type `owner`: its own
/// location, else the type's.
fn field_location(schema: &Schema, owner: &str, key: &str) -> Option<Location> {
    let def = schema.types.get(owner)?;
    let own = match &def.kind {
        TypeKind::Struct { fields } => fields
            .iter()
            .find(|f| field_key(owner, None, &f.name) == key)
            .and_then(|f| f.location.clone()),
        TypeKind::Enum { variants } => variants.iter().find_map(|v| {
            v.fields
                .iter()
                .find(|f| field_key(owner, Some(&v.name), &f.name) == key)
                .and_then(|f| f.location.clone())
        }),
    };
    own.filter(|l| !l.file.is_empty())
        .or_else(|| known(&def.location))
}

fn is_known(ty: &Ty) -> bool {
    matches!(
        ty,
        Ty::Unit
            | Ty::Bool
            | Ty::Int { .. }
            | Ty::Float { .. }
            | Ty::Char
            | Ty::String { .. }
            | Ty::Bytes { .. }
            | Ty::Seq { .. }
            | Ty::Array { .. }
            | Ty::Map { .. }
            | Ty::Option(_)
            | Ty::Result { .. }
            | Ty::Tuple(_)
            | Ty::Named { .. }
            | Ty::Capability { .. }
            | Ty::Stream { .. }
            | Ty::RemoteError
            | Ty::Opaque { .. }
    )
}
