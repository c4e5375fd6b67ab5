//! `unbounded-input`: a length-unbounded, recursive or opaque type in a
//! value a peer sends us.

use remote_core::schema::{Location, Schema, Ty, TypeKind};

use crate::graph::{chain_to_string, field_key, hops, Event, Site, Step, TypeWalk};
use crate::policy::{matches, Policy};

use super::finding::{finding, known, where_phrase, Finding};
use super::rule::Rule;

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
pub(super) fn unbounded<'s>(
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
            Event::Ty(Ty::Opaque { name, .. }) => {
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
