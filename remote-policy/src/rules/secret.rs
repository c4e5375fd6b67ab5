//! `secret-flows-out` at one site: which named types can hold a secret
//! ([`leaky_types`]), and the walk that reports each secret in a value that
//! flows out. (The whole-schema search is `crate::secrets`.)

use std::collections::{BTreeMap, BTreeSet};

use remote_core::schema::{FieldDef, Schema, Ty, TypeKind};

use crate::graph::{field_key, Event, Site, TypeWalk};
use crate::policy::{matches, Policy};

use super::finding::{finding, known, where_phrase, Finding};
use super::rule::Rule;

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
        Ty::Opaque { name, declared } => {
            f(name, true);
            if let Some(d) = declared {
                mentions(d, f);
            }
        }
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

pub(super) fn secrets(
    schema: &Schema,
    policy: &Policy,
    leaky: &BTreeSet<&str>,
    site: &Site<'_>,
    out: &mut Vec<Finding>,
) {
    let listed_type = |k: &str| policy.secrets.types.iter().any(|p| matches(p, k));
    let listed_field = |k: &str| policy.secrets.fields.iter().any(|p| matches(p, k));
    let mut walk = TypeWalk::new(schema).declared();
    walk.walk(site.ty, &mut |event, path| {
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
            Event::Ty(Ty::Opaque { name, .. }) if listed_type(name) => (
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
        // On inside it, as `crate::secrets` goes: a secret may hold another
        // (stopping here, an `[[allow]]` of the inner one `via` another
        // method covered it where it crossed inside the outer one: review
        // pass 46).
        true
    });
}
