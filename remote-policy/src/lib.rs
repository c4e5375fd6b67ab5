//! The security lint and schema export of [`remote_core`] interfaces.
//!
//! `remote-policy` reads the interface descriptors that `#[remote]` and
//! `#[derive(Wire)]` record (a [`Schema`]), walks the capability graph from
//! every served root with the direction of each value ([`graph`]), checks it
//! against a policy file ([`policy`], [`rules`]) and prints a report for
//! people or machines ([`report`]). It also exports the schema as JSON
//! ([`export`]), compares two schema versions for wire compatibility
//! ([`diff`]) and generates Python stubs from it ([`stubs`]).
//!
//! In a crate that defines `#[remote]` traits, one file runs the whole check
//! (see the README for the CI line):
//!
//! ```no_run
//! // src/bin/remote-policy.rs
//! # #![allow(unused_imports)]
//! # extern crate remote_core as my_app;
//! use my_app as _; // links the crate, and so its descriptors
//! fn main() -> std::process::ExitCode {
//!     remote_policy::run_cli(remote_core::schema::collect())
//! }
//! ```
//!
//! As a library:
//!
//! ```
//! use remote_policy::testing::*;
//! use remote_policy::{check, Policy, Rule};
//!
//! let schema = schema_with(
//!     vec![iface("app::Chat", vec![method("whoami", vec![], named("app::User"))])],
//!     vec![strukt("app::User", vec![field("name", string()), secret_field("password", string())])],
//! );
//! let report = check(&schema, &Policy::default()).unwrap();
//! assert!(report.failed());
//! assert_eq!(report.findings[0].rule, Rule::SecretFlowsOut);
//! assert_eq!(report.findings[0].at, "app::User.password");
//! assert_eq!(
//!     report.findings[0].chain_text(),
//!     "root Chat → Chat.whoami() → returns → User → .password"
//! );
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

use std::collections::{BTreeMap, BTreeSet};

pub use remote_core::schema::Schema;

mod caps;
mod cli;
pub mod diff;
mod error;
pub mod export;
pub mod graph;
pub mod policy;
pub mod report;
pub mod rules;
mod secrets;
pub mod stubs;
pub mod testing;

pub use cli::{run_cli, run_cli_with};
pub use error::Error;
pub use policy::Policy;
pub use report::Report;
pub use rules::{Finding, Rule};

use graph::{field_key, position_key, Direction, Event, Exposure, Graph, TypeWalk};
use policy::matches;
use remote_core::schema::{Ty, TypeKind};
use report::{RootSurface, Surface, SurfaceInterface};

/// [`remote_core::schema::collect()`] plus what `describe` adds to a
/// builder. Use it for interfaces that `#[remote]` cannot register on its
/// own: generic ones (`RemoteList<T>` and the other ready-made collections)
/// that you serve as a root.
///
/// ```
/// use remote_core::collections::RemoteList;
/// use remote_core::Remote;
///
/// let schema = remote_policy::collect_with(|b| {
///     b.ty::<Remote<dyn RemoteList<String>>>();
/// });
/// assert!(schema.interfaces.keys().any(|k| k.contains("RemoteList")));
/// ```
pub fn collect_with(describe: impl FnOnce(&mut remote_core::schema::SchemaBuilder)) -> Schema {
    // One builder: a key that `describe` gives another type than the
    // program's registrations do is a conflict, which `check` refuses
    // (merged from two builders, the first definition won and the
    // conflict was lost: a secret `Token` passed as a plain one, a review).
    let mut b = remote_core::schema::SchemaBuilder::new();
    remote_core::schema::collect_into(&mut b);
    describe(&mut b);
    b.finish()
}

/// Checks a schema against a policy.
///
/// Fails only when the check cannot run (a schema whose keys differ from
/// their paths, a root the policy names that does not exist, a `[secrets]`
/// or `[[capability]]` pattern that matches nothing); what the check finds
/// is in the [`Report`].
pub fn check(schema: &Schema, policy: &Policy) -> Result<Report, Error> {
    export::validate(schema)?;
    let mut warnings = Vec::new();
    let roots = roots(schema, policy, &mut warnings)?;
    policy_warnings(schema, policy, &mut warnings)?;
    let graph = Graph::build(schema, &roots)?;
    let sites = graph.sites(schema);
    let mut findings = rules::evaluate(schema, &graph, &sites, policy);
    allow(schema, &graph, &sites, policy, &mut findings, &mut warnings);
    rules::sort(&mut findings);
    let names = graph::Names::new(schema);
    for f in &mut findings {
        f.chain_display = names.chain(&f.chain);
    }
    let surface = surface(schema, &graph, &sites);
    Ok(Report {
        findings,
        warnings,
        surface,
    })
}

/// The roots to check: the policy's `roots` patterns, else every interface
/// with a `#[remote] impl`, else every interface.
///
/// ```
/// use remote_policy::testing::*;
/// let schema = schema_with(vec![iface("app::Chat", vec![]), iface("app::Room", vec![])], vec![]);
/// let policy = remote_policy::Policy::from_toml("roots = [\"Room\"]").unwrap();
/// assert_eq!(remote_policy::roots(&schema, &policy, &mut Vec::new()).unwrap(), ["app::Room"]);
/// ```
pub fn roots(
    schema: &Schema,
    policy: &Policy,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, Error> {
    if !policy.roots.is_empty() {
        let mut out = Vec::new();
        for pattern in &policy.roots {
            let hits: Vec<&String> = schema
                .interfaces
                .keys()
                .filter(|k| matches(pattern, k))
                .collect();
            if hits.is_empty() {
                return Err(Error::UnknownRoot(pattern.clone()));
            }
            for h in hits {
                if !out.contains(h) {
                    out.push(h.clone());
                }
            }
        }
        return Ok(out);
    }
    let mut served = BTreeSet::new();
    for imp in &schema.impls {
        if schema.interfaces.contains_key(&imp.interface) {
            served.insert(imp.interface.clone());
        } else {
            warnings.push(format!(
                "`{}` implements `{}`, which is not in the schema",
                imp.type_name, imp.interface
            ));
        }
    }
    if served.is_empty() {
        Ok(schema.interfaces.keys().cloned().collect())
    } else {
        Ok(served.into_iter().collect())
    }
}

/// Every key a policy pattern can name, to warn about patterns naming nothing.
struct Keys {
    interfaces: Vec<String>,
    types: Vec<String>,
    fields: Vec<String>,
    sites: Vec<String>,
}

fn keys(schema: &Schema) -> Keys {
    let mut types: BTreeSet<String> = schema.types.keys().cloned().collect();
    let mut fields = Vec::new();
    for t in schema.types.values() {
        match &t.kind {
            TypeKind::Struct { fields: fs } => {
                fields.extend(fs.iter().map(|f| field_key(&t.path, None, &f.name)));
            }
            TypeKind::Enum { variants } => {
                for v in variants {
                    fields.extend(
                        v.fields
                            .iter()
                            .map(|f| field_key(&t.path, Some(&v.name), &f.name)),
                    );
                }
            }
        }
    }
    let mut sites = Vec::new();
    let mut walk = TypeWalk::new(schema);
    for i in schema.interfaces.values() {
        for m in &i.methods {
            let mut tys: Vec<&Ty> = m.args.iter().map(|a| &a.ty).collect();
            tys.extend([&m.returns, &m.error]);
            for ty in tys {
                walk.walk(ty, &mut |e, _| {
                    if let Event::Ty(Ty::Opaque { name, .. }) = e {
                        types.insert(name.clone());
                    }
                    true
                });
            }
            sites.extend(
                m.args
                    .iter()
                    .map(|a| position_key(&i.path, &m.name, &graph::Position::Arg(a.name.clone()))),
            );
            sites.push(position_key(&i.path, &m.name, &graph::Position::Returns));
            sites.push(position_key(&i.path, &m.name, &graph::Position::Error));
        }
    }
    Keys {
        interfaces: schema.interfaces.keys().cloned().collect(),
        types: types.into_iter().collect(),
        fields,
        sites,
    }
}

/// Unmatched `[secrets]` and `[[capability]]` patterns are errors (a typo
/// must not turn a rule off); an unmatched `[[bound]]` only warns, since it
/// can only make the check stricter.
fn policy_warnings(
    schema: &Schema,
    policy: &Policy,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let k = keys(schema);
    let none = |pattern: &str, sets: &[&Vec<String>]| {
        !sets
            .iter()
            .any(|set| set.iter().any(|key| matches(pattern, key)))
    };
    let mut errors = Vec::new();
    for p in &policy.secrets.types {
        if none(p, &[&k.types]) {
            errors.push(format!(
                "[secrets] type `{p}` matches no type of the schema"
            ));
        }
    }
    for p in &policy.secrets.fields {
        if none(p, &[&k.fields]) {
            errors.push(format!(
                "[secrets] field `{p}` matches no field of the schema"
            ));
        }
    }
    for c in &policy.capability {
        if none(&c.interface, &[&k.interfaces]) {
            errors.push(format!(
                "[[capability]] `{}` matches no interface of the schema",
                c.interface
            ));
        }
        for r in &c.roots {
            if none(r, &[&k.interfaces]) {
                errors.push(format!(
                    "[[capability]] root `{r}` matches no interface of the schema"
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(Error::UnmatchedPattern(errors));
    }
    for b in &policy.bound {
        if none(&b.at, &[&k.sites, &k.fields, &k.types]) {
            warnings.push(format!(
                "[[bound]] `{}` matches no argument, field or type of the schema",
                b.at
            ));
        }
    }
    Ok(())
}

/// Whether an `[[allow]]` entry accepts a finding with its chain.
fn covers(a: &policy::Allow, f: &Finding) -> bool {
    (a.rule == "*" || a.rule == f.rule.id())
        && matches(&a.at, &f.at)
        && a.root.as_deref().is_none_or(|r| matches(r, &f.root))
        && a.via.as_deref().is_none_or(|v| {
            f.site.as_deref().is_some_and(|s| matches(v, s))
                || f.chain.iter().any(|h| match h {
                    graph::Hop::Method {
                        interface, method, ..
                    } => matches(v, &format!("{interface}.{method}")),
                    _ => false,
                })
        })
}

fn allow<'s>(
    schema: &'s Schema,
    graph: &'s Graph,
    sites: &[graph::Site<'s>],
    policy: &Policy,
    findings: &mut [Finding],
    warnings: &mut Vec<String>,
) {
    let mut used = vec![false; policy.allow.len()];
    let mut paths = Paths {
        schema,
        graph,
        sites,
        policy,
        leaky: None,
        reaches: BTreeMap::new(),
    };
    for f in findings.iter_mut() {
        let Some(i) = policy.allow.iter().position(|a| covers(a, f)) else {
            // An entry for this subject whose `via` misses the reported
            // (shortest) chain covers other paths only: say so.
            let partial = policy.allow.iter().position(|a| {
                a.via.is_some()
                    && (a.rule == "*" || a.rule == f.rule.id())
                    && matches(&a.at, &f.at)
                    && a.root.as_deref().is_none_or(|r| matches(r, &f.root))
            });
            if let Some(i) = partial {
                used[i] = true;
                let a = &policy.allow[i];
                warnings.push(format!(
                    "[[allow]] entry {} (rule `{}`, at `{}`) covers only some paths: the finding stays for root `{}` through {}",
                    i + 1,
                    a.rule,
                    a.at,
                    f.root,
                    f.chain_text()
                ));
            }
            continue;
        };
        used[i] = true;
        let a = &policy.allow[i];
        if a.root.is_some() || a.via.is_some() {
            // The entry covers this chain; another root or path may still
            // reach the same finding, and then it fails with that chain.
            if let Some(other) = paths.uncovered(f) {
                warnings.push(format!(
                    "[[allow]] entry {} (rule `{}`, at `{}`) covers only some paths: the finding stays for root `{}` through {}",
                    i + 1,
                    a.rule,
                    a.at,
                    other.root,
                    other.chain_text()
                ));
                *f = other;
                continue;
            }
        }
        f.allowed = Some(a.reason.clone());
    }
    for (i, a) in policy.allow.iter().enumerate() {
        // Entries for `diff` changes are reported by `diff`.
        if !used[i] && a.rule.parse::<diff::ChangeKind>().is_err() {
            warnings.push(format!(
                "[[allow]] entry {} (rule `{}`, at `{}`) matches no finding",
                i + 1,
                a.rule,
                a.at
            ));
        }
    }
}

/// Looks for the paths to a finding that scoped `[[allow]]` entries leave
/// uncovered.
struct Paths<'s, 'a> {
    schema: &'s Schema,
    graph: &'s Graph,
    sites: &'a [graph::Site<'s>],
    policy: &'a Policy,
    leaky: Option<BTreeSet<&'s str>>,
    /// Reach of (root index, allow entries whose `via` methods are avoided).
    reaches: BTreeMap<(usize, Vec<usize>), graph::RootReach>,
}

impl<'s> Paths<'s, '_> {
    /// The best finding with the same rule and subject as `f`, from any
    /// root and through any site, that no `[[allow]]` entry covers.
    fn uncovered(&mut self, f: &Finding) -> Option<Finding> {
        let (schema, graph, policy) = (self.schema, self.graph, self.policy);
        let relevant: Vec<usize> = (0..policy.allow.len())
            .filter(|&i| {
                let a = &policy.allow[i];
                (a.rule == "*" || a.rule == f.rule.id()) && matches(&a.at, &f.at)
            })
            .collect();
        let pre_auth_only = match f.rule {
            Rule::UnboundedInput => policy.unbounded.scope != policy::Scope::All,
            Rule::UnauthenticatedCapability => true,
            _ => false,
        };
        let mut best: Option<Finding> = None;
        for (ri, reach) in graph.roots.iter().enumerate() {
            if f.site.is_none() && reach.root != f.root {
                // Capability findings are already one per root.
                continue;
            }
            let here: Vec<usize> = relevant
                .iter()
                .copied()
                .filter(|&i| {
                    policy.allow[i]
                        .root
                        .as_deref()
                        .is_none_or(|r| matches(r, &reach.root))
                })
                .collect();
            if here.iter().any(|&i| policy.allow[i].via.is_none()) {
                continue; // every path from this root is allowed
            }
            let vias: Vec<&str> = here
                .iter()
                .filter_map(|&i| policy.allow[i].via.as_deref())
                .collect();
            let skip = |key: &str| vias.iter().any(|v| matches(v, key));
            let r: &graph::RootReach = if vias.is_empty() {
                reach
            } else {
                self.reaches.entry((ri, here.clone())).or_insert_with(|| {
                    graph::reach_avoiding(schema, &reach.root, &|i, m| skip(&format!("{i}.{m}")))
                })
            };
            let mut candidates = Vec::new();
            if f.site.is_none() {
                for node in &r.nodes {
                    for c in &policy.capability {
                        candidates.extend(
                            rules::capability_finding(schema, c, &reach.root, node)
                                .filter(|g| g.rule == f.rule && g.at == f.at),
                        );
                    }
                }
            } else {
                let leaky = self
                    .leaky
                    .get_or_insert_with(|| rules::leaky_types(schema, policy));
                for s in self.sites {
                    let Some(node) = r
                        .nodes
                        .iter()
                        .find(|n| n.interface == s.interface.path && n.exposure == s.exposure)
                    else {
                        continue;
                    };
                    let method_key = format!("{}.{}", s.interface.path, s.method.name);
                    if skip(&method_key) || skip(&s.key()) {
                        continue;
                    }
                    let Some(site) = graph::method_sites(s.interface, s.method, node, &reach.root)
                        .into_iter()
                        .find(|x| x.position == s.position)
                    else {
                        continue;
                    };
                    if pre_auth_only && !site.pre_auth {
                        continue;
                    }
                    candidates.extend(
                        rules::site_findings(schema, policy, leaky, &site, f.rule)
                            .into_iter()
                            .filter(|g| g.at == f.at),
                    );
                }
            }
            for g in candidates {
                if pre_auth_only && !g.pre_auth {
                    continue;
                }
                if policy.allow.iter().any(|a| covers(a, &g)) {
                    continue;
                }
                let better = best
                    .as_ref()
                    .is_none_or(|b| (!g.pre_auth, g.chain.len()) < (!b.pre_auth, b.chain.len()));
                if better {
                    best = Some(g);
                }
            }
        }
        best
    }
}

fn surface(schema: &Schema, graph: &Graph, sites: &[graph::Site<'_>]) -> Surface {
    let roots = graph
        .roots
        .iter()
        .map(|reach| RootSurface {
            root: reach.root.clone(),
            interfaces: reach
                .nodes
                .iter()
                .map(|n| SurfaceInterface {
                    interface: n.interface.clone(),
                    exposure: n.exposure,
                    pre_auth: n.pre_auth,
                    methods: schema.interfaces[&n.interface]
                        .methods
                        .iter()
                        .map(|m| {
                            if n.exposure == Exposure::Served && m.requires_auth {
                                format!("{} (auth)", m.name)
                            } else {
                                m.name.clone()
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let (mut out, mut inn) = (BTreeSet::new(), BTreeSet::new());
    // One walker per direction: each named type is entered once in total.
    let (mut walk_out, mut walk_in) = (TypeWalk::new(schema), TypeWalk::new(schema));
    for site in sites {
        let (set, walk) = if site.direction == Direction::Out {
            (&mut out, &mut walk_out)
        } else {
            (&mut inn, &mut walk_in)
        };
        walk.walk(site.ty, &mut |e, _| {
            if let Event::Named(def) = e {
                set.insert(def.path.clone());
            }
            true
        });
    }
    Surface {
        roots,
        types_out: out.into_iter().collect(),
        types_in: inn.into_iter().collect(),
    }
}
