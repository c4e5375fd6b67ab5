//! `unchecked-type`: a type the checker cannot see inside.

use remote_core::schema::{Schema, Ty};

use crate::graph::{hop_location, Event, Site, Step, TypeWalk, MAX_DEPTH};

use super::finding::{finding, where_phrase, Finding};
use super::rule::Rule;

/// Like [`unbounded`](super::unbounded::unbounded), with a shared walker: each type reported once.
pub(super) fn unchecked<'s>(
    schema: &'s Schema,
    site: &Site<'s>,
    walk: &mut TypeWalk<'s>,
    out: &mut Vec<Finding>,
) {
    walk.walk(site.ty, &mut |event, path| {
        let (at, message) = match event {
            Event::Ty(Ty::Opaque { name, .. }) => (
                name.clone(),
                match name.split_once(" (#[serde(") {
                    // A field `#[derive(Wire)]` describes as opaque.
                    Some((field, how)) => format!(
                        "field `{field}` is encoded by its own code (`#[serde({}`), so the checker cannot see what crosses ({})",
                        how.strip_suffix(')').unwrap_or(how),
                        where_phrase(site, path)
                    ),
                    None => format!(
                        "type `{name}` implements Wire without describing itself, so the checker cannot see inside it ({})",
                        where_phrase(site, path)
                    ),
                },
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
