//! `remote-policy diff`: what a change between two schema versions does to
//! peers already deployed.
//!
//! Every difference between the old and the new schema is a [`Change`] of a
//! [`ChangeKind`], with a [`Verdict`] on the wire as PROTOCOL.md defines it:
//! does an **old client** still work against the **new server**, and a new
//! client against an **old server**? Which side is which comes from the
//! capability graph: an interface reached as a served object is implemented
//! by the server and called by the client; a callback (`Remote<dyn T>` that
//! the client passes in) is the reverse. A type sent by clients (in the
//! arguments of a served method) and one sent by servers (in its result)
//! are judged by who decodes them. What no root reaches is judged both ways.
//!
//! ```
//! use remote_policy::diff::{diff, ChangeKind, Verdict};
//! use remote_policy::testing::*;
//!
//! let old = schema_with(vec![iface("app::Chat", vec![method("count", vec![], u64_ty())])], vec![]);
//! let new = schema_with(vec![iface("app::Chat", vec![])], vec![]);
//! let report = diff(&old, &new, &Default::default()).unwrap();
//! assert_eq!(report.changes[0].kind, ChangeKind::MethodRemoved);
//! assert_eq!(report.changes[0].verdict, Verdict::BreaksOldClients);
//! assert!(report.failed());
//! ```

use std::collections::BTreeSet;
use std::fmt;

use remote_core::schema::{Location, Schema, Ty};
use serde::Serialize;

use crate::graph::{Direction, Event, Exposure, Graph, TypeWalk};
use crate::policy::{matches, Allow, Policy};
use crate::Error;

mod compare;
mod fields;
mod flow;
pub mod render;
mod text;

pub use text::ty_text;

macro_rules! change_kinds {
    ($($(#[$doc:meta])* $v:ident = $id:literal,)*) => {
        /// What changed between two versions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum ChangeKind { $($(#[$doc])* $v,)* }

        impl ChangeKind {
            /// Every kind, in report order.
            pub const ALL: &'static [ChangeKind] = &[$(ChangeKind::$v,)*];

            /// The id used in `[[allow]]` entries and reports.
            pub fn id(self) -> &'static str {
                match self { $(ChangeKind::$v => $id,)* }
            }
        }
    };
}

change_kinds! {
    /// An interface no longer exists (and no interface of the same name replaces it).
    InterfaceRemoved = "interface-removed",
    /// A new interface.
    InterfaceAdded = "interface-added",
    /// An interface moved to another module or was renamed: its key changed,
    /// which the wire never carries.
    InterfaceMoved = "interface-moved",
    /// A method's wire name is gone.
    MethodRemoved = "method-removed",
    /// A new wire name.
    MethodAdded = "method-added",
    /// A method's wire name changed (`#[remote(name)]` or its Rust name).
    MethodRenamed = "method-renamed",
    /// The Rust name changed and the wire name did not.
    RustNameChanged = "rust-name-changed",
    /// An argument was added (the argument array grows).
    ArgumentAdded = "argument-added",
    /// An argument was removed (the argument array shrinks).
    ArgumentRemoved = "argument-removed",
    /// Arguments swapped places (they travel by position).
    ArgumentsReordered = "arguments-reordered",
    /// An argument's name changed (names do not travel).
    ArgumentRenamed = "argument-renamed",
    /// An argument's type changed.
    ArgumentRetyped = "argument-retyped",
    /// The `T` of `Result<T, E>` changed.
    ReturnChanged = "return-changed",
    /// The `E` of `Result<T, E>` changed.
    ErrorChanged = "error-changed",
    /// A method now requires authentication.
    RequiresAuthAdded = "requires-auth-added",
    /// A method no longer requires authentication.
    RequiresAuthRemoved = "requires-auth-removed",
    /// A method became blocking or async (a Rust-side choice).
    BlockingChanged = "blocking-changed",
    /// Only a length bound (`Bounded<T, N>`) changed.
    BoundChanged = "bound-changed",
    /// A struct or variant gained an `Option` field or one with
    /// `#[serde(default)]`.
    FieldAddedOptional = "field-added-optional",
    /// A struct or variant gained a field without a default.
    FieldAddedRequired = "field-added-required",
    /// A field was removed.
    FieldRemoved = "field-removed",
    /// A field's type changed.
    FieldRetyped = "field-retyped",
    /// Fields of a struct or variant changed places.
    FieldsReordered = "fields-reordered",
    /// A field or type was marked (or unmarked) `#[wire(secret)]`.
    SecretChanged = "secret-changed",
    /// An enum gained a variant.
    VariantAdded = "variant-added",
    /// An enum lost a variant.
    VariantRemoved = "variant-removed",
    /// A struct became an enum or the reverse, or a struct's or variant's
    /// shape changed (unit, newtype, tuple, named fields).
    ShapeChanged = "shape-changed",
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ChangeKind::ALL
            .iter()
            .copied()
            .find(|k| k.id() == s)
            .ok_or_else(|| format!("unknown change kind `{s}`"))
    }
}

impl Serialize for ChangeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// What a change does to peers already deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Old and new peers keep working together in both directions.
    Safe,
    /// Old clients work against the new server; a new client fails against
    /// an old server.
    BreaksOldServers,
    /// Old clients fail against the new server.
    BreaksOldClients,
    /// Both.
    BreaksBoth,
}

impl Verdict {
    fn of(old_clients: bool, old_servers: bool) -> Verdict {
        match (old_clients, old_servers) {
            (false, false) => Verdict::Safe,
            (false, true) => Verdict::BreaksOldServers,
            (true, false) => Verdict::BreaksOldClients,
            (true, true) => Verdict::BreaksBoth,
        }
    }

    /// The id in reports.
    pub fn id(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::BreaksOldServers => "breaks-old-servers",
            Verdict::BreaksOldClients => "breaks-old-clients",
            Verdict::BreaksBoth => "breaks-both",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One difference between the versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What changed.
    pub kind: ChangeKind,
    /// What it does on the wire.
    pub verdict: Verdict,
    /// Where: an interface, method (`app::Chat.post`), argument
    /// (`app::Chat.post(text)`), result (`app::Chat.post->returns`), type,
    /// field (`app::Msg.body`) or variant (`app::Event.Joined`) key.
    pub at: String,
    /// The old version (`"-"` when added).
    pub old: String,
    /// The new version (`"-"` when removed).
    pub new: String,
    /// Why it breaks, or why it is safe.
    pub why: String,
    /// Source of the new item (of the old one, when removed).
    pub location: Option<Location>,
    /// The reason of the `[[allow]]` entry that accepts it.
    pub allowed: Option<String>,
}

impl Change {
    /// Whether it fails the check: breaking and not allowed.
    pub fn fails(&self) -> bool {
        self.verdict != Verdict::Safe && self.allowed.is_none()
    }

    /// A stable identity across runs (SARIF fingerprints).
    pub fn fingerprint(&self) -> String {
        format!("{}|{}|{}|{}", self.kind, self.at, self.old, self.new)
    }
}

/// Everything `diff` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    /// Changes, sorted by place then kind.
    pub changes: Vec<Change>,
    /// Problems of the policy that do not fail the check.
    pub warnings: Vec<String>,
}

impl DiffReport {
    /// Whether a breaking change is not allowed.
    pub fn failed(&self) -> bool {
        self.changes.iter().any(Change::fails)
    }

    /// Count of (failing, allowed, safe) changes.
    pub fn counts(&self) -> (usize, usize, usize) {
        let failing = self.changes.iter().filter(|c| c.fails()).count();
        let allowed = self.changes.iter().filter(|c| c.allowed.is_some()).count();
        let safe = self
            .changes
            .iter()
            .filter(|c| c.verdict == Verdict::Safe && c.allowed.is_none())
            .count();
        (failing, allowed, safe)
    }
}

/// Compares two schema versions, each restricted to what the policy's roots
/// reach (see [`reachable`]), and applies the policy's `[[allow]]` entries
/// whose `rule` is a [`ChangeKind`] id (or `*`).
pub fn diff(old: &Schema, new: &Schema, policy: &Policy) -> Result<DiffReport, Error> {
    crate::export::validate(old)?;
    crate::export::validate(new)?;
    let (old_roots, new_roots) = diff_roots(old, new, policy)?;
    let old = reachable(old, &old_roots)?;
    let new = reachable(new, &new_roots)?;
    let roles = Roles::of(&old, &old_roots)?.union(Roles::of(&new, &new_roots)?);
    let mut changes = compare::compare(&old, &new, &roles);
    let mut warnings = Vec::new();
    if flow::legacy(&old, &new) {
        warnings.push(format!(
            "a schema of version 1 is compared: serde's container attributes and the \
             declared types of fields encoded by their own code were not recorded then, \
             and are not compared (export it again with this version, {})",
            remote_core::schema::SCHEMA_VERSION
        ));
    }
    allow(policy, &mut changes, &mut warnings);
    changes.sort_by(|a, b| (&a.at, a.kind, &a.old).cmp(&(&b.at, b.kind, &b.old)));
    changes.dedup();
    Ok(DiffReport { changes, warnings })
}

fn allow(policy: &Policy, changes: &mut [Change], warnings: &mut Vec<String>) {
    let mine = |a: &Allow| a.rule == "*" || a.rule.parse::<ChangeKind>().is_ok();
    let mut used = vec![false; policy.allow.len()];
    for c in changes.iter_mut() {
        let hit = policy.allow.iter().position(|a| {
            mine(a) && (a.rule == "*" || a.rule == c.kind.id()) && matches(&a.at, &c.at)
        });
        if let Some(i) = hit {
            used[i] = true;
            c.allowed = Some(policy.allow[i].reason.clone());
        }
    }
    for (i, a) in policy.allow.iter().enumerate() {
        if a.rule != "*" && mine(a) && !used[i] {
            warnings.push(format!(
                "[[allow]] entry {} (change `{}`, at `{}`) matches no change",
                i + 1,
                a.rule,
                a.at
            ));
        }
    }
}

/// The roots of each version: the policy's patterns (each must match in at
/// least one version), else each version's default roots.
fn diff_roots(
    old: &Schema,
    new: &Schema,
    policy: &Policy,
) -> Result<(Vec<String>, Vec<String>), Error> {
    if policy.roots.is_empty() {
        let mut w = Vec::new();
        return Ok((
            crate::roots(old, policy, &mut w)?,
            crate::roots(new, policy, &mut w)?,
        ));
    }
    let pick = |s: &Schema, p: &str| -> Vec<String> {
        s.interfaces
            .keys()
            .filter(|k| matches(p, k))
            .cloned()
            .collect()
    };
    let (mut o, mut n) = (Vec::new(), Vec::new());
    for p in &policy.roots {
        let (a, b) = (pick(old, p), pick(new, p));
        if a.is_empty() && b.is_empty() {
            return Err(Error::UnknownRoot(p.clone()));
        }
        o.extend(a.into_iter().filter(|k| !o.contains(k)).collect::<Vec<_>>());
        n.extend(b.into_iter().filter(|k| !n.contains(k)).collect::<Vec<_>>());
    }
    Ok((o, n))
}

/// The part of a schema that `roots` reach: their interfaces, every
/// interface reachable through capabilities, and every named type in their
/// methods. Impls of dropped interfaces are dropped.
///
/// ```
/// use remote_policy::testing::*;
/// let schema = schema_with(
///     vec![
///         iface("app::Chat", vec![method("me", vec![], named("app::User"))]),
///         iface("app::Other", vec![]),
///     ],
///     vec![strukt("app::User", vec![]), strukt("app::Unused", vec![])],
/// );
/// let part = remote_policy::diff::reachable(&schema, &["app::Chat".to_owned()]).unwrap();
/// assert_eq!(part.interfaces.keys().collect::<Vec<_>>(), ["app::Chat"]);
/// assert_eq!(part.types.keys().collect::<Vec<_>>(), ["app::User"]);
/// ```
pub fn reachable(schema: &Schema, roots: &[String]) -> Result<Schema, Error> {
    let graph = Graph::build(schema, roots)?;
    let mut out = Schema {
        version: schema.version,
        ..Schema::default()
    };
    for reach in &graph.roots {
        for node in &reach.nodes {
            if let Some(i) = schema.interfaces.get(&node.interface) {
                out.interfaces.insert(i.path.clone(), i.clone());
            }
        }
    }
    let mut walk = TypeWalk::new(schema);
    for i in out.interfaces.values() {
        for m in &i.methods {
            let tys = m.args.iter().map(|a| &a.ty).chain([&m.returns, &m.error]);
            for ty in tys {
                walk.walk(ty, &mut |e, _| {
                    if let Event::Named(def) = e {
                        out.types.insert(def.path.clone(), def.clone());
                    }
                    true
                });
            }
        }
    }
    out.impls = schema
        .impls
        .iter()
        .filter(|i| out.interfaces.contains_key(&i.interface))
        .cloned()
        .collect();
    Ok(out)
}

/// Who implements each interface and who sends each named type.
#[derive(Debug, Default)]
pub(crate) struct Roles {
    /// Roots of either version.
    pub(crate) roots: BTreeSet<String>,
    served: BTreeSet<String>,
    held: BTreeSet<String>,
    from_clients: BTreeSet<String>,
    from_servers: BTreeSet<String>,
}

impl Roles {
    fn of(schema: &Schema, roots: &[String]) -> Result<Roles, Error> {
        let graph = Graph::build(schema, roots)?;
        let mut r = Roles {
            roots: roots.iter().cloned().collect(),
            ..Roles::default()
        };
        for reach in &graph.roots {
            for n in &reach.nodes {
                match n.exposure {
                    Exposure::Served => r.served.insert(n.interface.clone()),
                    Exposure::Held => r.held.insert(n.interface.clone()),
                };
            }
        }
        let (mut walk_in, mut walk_out) = (TypeWalk::new(schema), TypeWalk::new(schema));
        for site in graph.sites(schema) {
            let (walk, set) = match site.direction {
                Direction::In => (&mut walk_in, &mut r.from_clients),
                Direction::Out => (&mut walk_out, &mut r.from_servers),
            };
            walk.walk(site.ty, &mut |e, _| {
                if let Event::Named(def) = e {
                    set.insert(def.path.clone());
                }
                true
            });
        }
        Ok(r)
    }

    fn union(mut self, other: Roles) -> Roles {
        self.roots.extend(other.roots);
        self.served.extend(other.served);
        self.held.extend(other.held);
        self.from_clients.extend(other.from_clients);
        self.from_servers.extend(other.from_servers);
        self
    }

    /// Turns what a method change does to callers into what it does to
    /// clients and servers: (old clients break, old servers break).
    pub(crate) fn method_effect(
        &self,
        interface: &str,
        old_callers_break: bool,
        new_callers_break: bool,
    ) -> (bool, bool) {
        let served = self.served.contains(interface) || !self.held.contains(interface);
        let held = self.held.contains(interface);
        let mut out = (false, false);
        if served {
            out.0 |= old_callers_break;
            out.1 |= new_callers_break;
        }
        if held {
            // The client implements it: the new server calls old clients.
            out.0 |= new_callers_break;
            out.1 |= old_callers_break;
        }
        out
    }

    /// The same for a value of a named type: `old_to_new` is whether a new
    /// receiver refuses what an old sender sends, `new_to_old` the reverse.
    pub(crate) fn type_effect(&self, ty: &str, old_to_new: bool, new_to_old: bool) -> (bool, bool) {
        let known = self.from_clients.contains(ty) || self.from_servers.contains(ty);
        let mut out = (false, false);
        if self.from_clients.contains(ty) || !known {
            out.0 |= old_to_new;
            out.1 |= new_to_old;
        }
        if self.from_servers.contains(ty) || !known {
            out.0 |= new_to_old;
            out.1 |= old_to_new;
        }
        out
    }
}

/// Whether a type is `Option<_>` (a missing field of it decodes as `None`).
pub(crate) fn is_option(ty: &Ty) -> bool {
    matches!(ty, Ty::Option(_))
}
