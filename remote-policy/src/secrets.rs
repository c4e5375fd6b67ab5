//! The `secret-flows-out` rule at scale: each secret (a type or field marked
//! `#[wire(secret)]` or listed in `[secrets]`) is reported **once**, with its
//! shortest chain (before authentication first) and the other method parts
//! where it also crosses.
//!
//! One shortest-path search over the named types (secret ones included, so
//! that a secret inside another is reported too), started from every method
//! part that flows out at once, finds the best chain to every secret; one
//! backward search per secret counts the other parts that reach it. Time is
//! (secrets + 1) × (types + fields + parts), and memory is linear in the
//! schema: no chain is kept per part and secret.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use remote_core::schema::{FieldDef, Location, Schema, Ty, TypeDef, TypeKind};

use crate::graph::{field_key, Direction, Site, Step};
use crate::policy::{matches, Level, Policy};
use crate::rules::finding::{where_phrase, Finding};
use crate::rules::rule::Rule;

/// How many other method parts a finding lists by name.
pub(crate) const ALSO_LISTED: usize = 5;

/// A named or opaque type reached inside a value, with the steps to it.
type Target<'s> = (Vec<Step<'s>>, Reach<'s>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach<'s> {
    Named(usize),
    Opaque(&'s str),
}

/// Named and opaque types inside `ty`, without entering named types.
fn direct<'s>(
    ty: &'s Ty,
    index: &HashMap<&str, usize>,
    path: &mut Vec<Step<'s>>,
    out: &mut Vec<Target<'s>>,
) {
    let inside =
        |step: Step<'s>, t: &'s Ty, path: &mut Vec<Step<'s>>, out: &mut Vec<Target<'s>>| {
            path.push(step);
            direct(t, index, path, out);
            path.pop();
        };
    match ty {
        Ty::Named { path: p } => {
            if let Some(&i) = index.get(p.as_str()) {
                let mut steps = path.clone();
                steps.push(Step::Type(p));
                out.push((steps, Reach::Named(i)));
            }
        }
        Ty::Opaque { name, declared } => {
            out.push((path.clone(), Reach::Opaque(name)));
            // A field encoded by its own code is made from its declared
            // type: what that holds crosses.
            if let Some(d) = declared {
                direct(d, index, path, out);
            }
        }
        Ty::Seq { elem, .. } | Ty::Array { elem, .. } => inside(Step::Element, elem, path, out),
        Ty::Map { key, value, .. } => {
            inside(Step::Key, key, path, out);
            inside(Step::Value, value, path, out);
        }
        Ty::Option(inner) => inside(Step::Some, inner, path, out),
        Ty::Result { ok, err } => {
            inside(Step::Ok, ok, path, out);
            inside(Step::Err, err, path, out);
        }
        Ty::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                inside(Step::Tuple(i), item, path, out);
            }
        }
        Ty::Stream { item, .. } => inside(Step::Item, item, path, out),
        _ => {}
    }
}

/// The best path to an opaque type: key, site, steps (from the site when
/// `None`, else inside the field of that type that holds it), type.
type OpaqueBest<'s> = ((bool, usize), usize, Vec<Step<'s>>, Option<usize>);

fn offer<'s>(
    best: &mut HashMap<&'s str, OpaqueBest<'s>>,
    name: &'s str,
    candidate: OpaqueBest<'s>,
) {
    if best.get(name).is_none_or(|b| candidate.0 < b.0) {
        best.insert(name, candidate);
    }
}

/// How a named type was first reached.
#[derive(Debug, Clone)]
enum Parent<'s> {
    Site(usize, Vec<Step<'s>>),
    /// From type, variant, field index, steps inside the field.
    Field(usize, Option<&'s str>, usize, Vec<Step<'s>>),
}

struct Types<'s> {
    defs: Vec<&'s TypeDef>,
    index: HashMap<&'s str, usize>,
}

/// Fields of a type with their variant.
fn fields(def: &TypeDef) -> Vec<(Option<&str>, &FieldDef)> {
    match &def.kind {
        TypeKind::Struct { fields } => fields.iter().map(|f| (None, f)).collect(),
        TypeKind::Enum { variants } => variants
            .iter()
            .flat_map(|v| v.fields.iter().map(move |f| (Some(v.name.as_str()), f)))
            .collect(),
    }
}

/// Runs the rule over every site that flows out.
pub(crate) fn findings(
    schema: &Schema,
    policy: &Policy,
    sites: &[Site<'_>],
    out: &mut Vec<Finding>,
) {
    let listed_type = |k: &str| policy.secrets.types.iter().any(|p| matches(p, k));
    let listed_field = |k: &str| policy.secrets.fields.iter().any(|p| matches(p, k));
    let types = Types {
        defs: schema.types.values().collect(),
        index: schema
            .types
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect(),
    };
    let n = types.defs.len();
    let secret_type: Vec<bool> = types
        .defs
        .iter()
        .map(|d| d.secret || listed_type(&d.path))
        .collect();
    let secret_field = |d: &TypeDef, v: Option<&str>, f: &FieldDef| {
        f.secret || listed_field(&field_key(&d.path, v, &f.name))
    };
    // Edges: what each type's fields contain. Secret types and fields are
    // gone through too, so a secret inside another is reported on its own
    // (an `[[allow]]` of the outer one does not cover it: a review found
    // a secret key inside an allowed secret reported nowhere).
    let mut edges: Vec<Vec<(Option<&str>, usize, Target<'_>)>> = vec![Vec::new(); n];
    let mut rev: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut rev_opaque: HashMap<&str, Vec<usize>> = HashMap::new();
    for (t, def) in types.defs.iter().enumerate() {
        for (fi, (v, f)) in fields(def).into_iter().enumerate() {
            let mut targets = Vec::new();
            direct(&f.ty, &types.index, &mut Vec::new(), &mut targets);
            for target in targets {
                match target.1 {
                    Reach::Named(u) => rev[u].push(t),
                    Reach::Opaque(name) => rev_opaque.entry(name).or_default().push(t),
                }
                edges[t].push((v, fi, target));
            }
        }
    }
    let out_sites: Vec<(usize, &Site<'_>)> = sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.direction == Direction::Out)
        .collect();
    let site_targets: Vec<Vec<Target<'_>>> = out_sites
        .iter()
        .map(|(_, s)| {
            let mut t = Vec::new();
            direct(s.ty, &types.index, &mut Vec::new(), &mut t);
            t
        })
        .collect();
    // Shortest paths: before authentication first, then by chain length.
    type Key = (bool, usize);
    let mut best: Vec<Option<(Key, Parent<'_>)>> = vec![None; n];
    let mut best_opaque: HashMap<&str, OpaqueBest<'_>> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(Key, usize, usize)>> = BinaryHeap::new();
    let mut pending: Vec<Parent<'_>> = Vec::new();
    for (si, (_, s)) in out_sites.iter().enumerate() {
        for (steps, reach) in &site_targets[si] {
            let key = (!s.pre_auth, s.chain.len() + steps.len());
            match *reach {
                Reach::Named(t) => {
                    pending.push(Parent::Site(si, steps.clone()));
                    heap.push(Reverse((key, t, pending.len() - 1)));
                }
                Reach::Opaque(name) => {
                    offer(&mut best_opaque, name, (key, si, steps.clone(), None))
                }
            }
        }
    }
    let mut origin = vec![usize::MAX; n]; // the site each type's best path starts at
    while let Some(Reverse((key, t, p))) = heap.pop() {
        if best[t].is_some() {
            continue;
        }
        let parent = std::mem::replace(&mut pending[p], Parent::Site(0, Vec::new()));
        origin[t] = match &parent {
            Parent::Site(si, _) => *si,
            Parent::Field(from, ..) => origin[*from],
        };
        best[t] = Some((key, parent));
        for (v, fi, (steps, reach)) in &edges[t] {
            let len = key.1 + usize::from(v.is_some()) + 1 + steps.len();
            match *reach {
                Reach::Named(u) if best[u].is_none() => {
                    pending.push(Parent::Field(t, *v, *fi, steps.clone()));
                    heap.push(Reverse(((key.0, len), u, pending.len() - 1)));
                }
                Reach::Named(_) => {}
                Reach::Opaque(name) => offer(
                    &mut best_opaque,
                    name,
                    ((key.0, len), origin[t], steps.clone(), Some(t)),
                ),
            }
        }
    }
    drop(pending);
    // The steps from a site's position to type `t` (ending with `Type(t)`).
    let path_to = |t: usize| -> (usize, Vec<Step<'_>>) {
        let mut parts: Vec<Vec<Step<'_>>> = Vec::new();
        let mut cur = t;
        loop {
            match &best[cur].as_ref().expect("reached").1 {
                Parent::Site(si, steps) => {
                    parts.push(steps.clone());
                    parts.reverse();
                    return (*si, parts.concat());
                }
                Parent::Field(from, v, fi, steps) => {
                    let def = types.defs[*from];
                    let (_, f) = fields(def)[*fi];
                    let mut seg = Vec::new();
                    if let Some(v) = v {
                        seg.push(Step::Variant(v));
                    }
                    seg.push(Step::Field(f.name.as_str()));
                    seg.extend(steps.iter().copied());
                    parts.push(seg);
                    cur = *from;
                }
            }
        }
    };
    // Backward reach from a set of types, through non-secret types.
    let mut mark = vec![0u32; n];
    let mut stamp = 0u32;
    let mut count_sites =
        |starts: &[usize], opaque: Option<&str>, best_site: usize| -> (usize, Vec<String>) {
            stamp += 1;
            let mut stack: Vec<usize> = Vec::new();
            for &s in starts {
                if mark[s] != stamp {
                    mark[s] = stamp;
                    stack.push(s);
                }
            }
            while let Some(u) = stack.pop() {
                for &p in &rev[u] {
                    if mark[p] != stamp {
                        mark[p] = stamp;
                        stack.push(p);
                    }
                }
            }
            let mut others = Vec::new();
            let mut count = 0;
            for (si, targets) in site_targets.iter().enumerate() {
                if si == best_site {
                    continue;
                }
                let hit = targets.iter().any(|(_, r)| match *r {
                    Reach::Named(u) => mark[u] == stamp,
                    Reach::Opaque(name) => Some(name) == opaque,
                });
                if hit {
                    count += 1;
                    if others.len() < ALSO_LISTED {
                        others.push(out_sites[si].1.key());
                    }
                }
            }
            (count, others)
        };
    let known = |l: &Location| (!l.file.is_empty()).then(|| l.clone());
    let mut emit = |si: usize,
                    steps: Vec<Step<'_>>,
                    at: String,
                    what: &str,
                    why: &str,
                    def_loc: Option<Location>,
                    also: (usize, Vec<String>)| {
        let site = out_sites[si].1;
        let mut chain = site.chain.clone();
        chain.extend(steps.iter().map(Step::hop));
        let message = format!(
            "{what} `{at}` ({why}) flows out to the peer: {}",
            where_phrase(site, &steps)
        );
        out.push(Finding {
            rule: Rule::SecretFlowsOut,
            level: Level::Error,
            message,
            at,
            site: Some(site.key()),
            root: site.root.to_owned(),
            chain,
            pre_auth: site.pre_auth,
            location: known(&site.method.location),
            definition: def_loc,
            also: also.0,
            also_at: also.1,
            allowed: None,
            chain_display: String::new(),
        });
    };
    let why_type = |d: &TypeDef| {
        if d.secret {
            "marked #[wire(secret)]"
        } else {
            "listed in [secrets] types"
        }
    };
    for (t, def) in types.defs.iter().enumerate() {
        let Some(_) = &best[t] else { continue };
        if secret_type[t] {
            let (si, steps) = path_to(t);
            let also = count_sites(&[t], None, si);
            emit(
                si,
                steps,
                def.path.clone(),
                "secret type",
                why_type(def),
                known(&def.location),
                also,
            );
        }
        // The other parts that reach `t`, counted once for all of its
        // secret fields (counted per field, a type of 6,000 secret fields
        // took 2.2 s: found by a review).
        let mut also_t = None;
        for (v, f) in fields(def) {
            if !secret_field(def, v, f) {
                continue;
            }
            let (si, mut steps) = path_to(t);
            if let Some(v) = v {
                steps.push(Step::Variant(v));
            }
            steps.push(Step::Field(&f.name));
            let also = also_t
                .get_or_insert_with(|| count_sites(&[t], None, si))
                .clone();
            let why = if f.secret {
                "marked #[wire(secret)]"
            } else {
                "listed in [secrets] fields"
            };
            let def_loc = f
                .location
                .as_ref()
                .and_then(known)
                .or_else(|| known(&def.location));
            emit(
                si,
                steps,
                field_key(&def.path, v, &f.name),
                "secret field",
                why,
                def_loc,
                also,
            );
        }
    }
    let mut opaque: Vec<_> = best_opaque
        .into_iter()
        .filter(|(name, _)| listed_type(name))
        .collect();
    opaque.sort_by(|a, b| a.0.cmp(b.0));
    for (name, (_, si, steps, from)) in opaque {
        let (si, steps) = match from {
            Some(t) => {
                let (si, mut p) = path_to(t);
                // The field that holds the opaque value: find it again.
                if let Some((v, fi, (inner, _))) = edges[t]
                    .iter()
                    .find(|(_, _, (_, r))| *r == Reach::Opaque(name))
                {
                    let (_, f) = fields(types.defs[t])[*fi];
                    if let Some(v) = v {
                        p.push(Step::Variant(v));
                    }
                    p.push(Step::Field(f.name.as_str()));
                    p.extend(inner.iter().copied());
                }
                (si, p)
            }
            None => (si, steps),
        };
        let starts = rev_opaque.get(name).cloned().unwrap_or_default();
        let also = count_sites(&starts, Some(name), si);
        emit(
            si,
            steps,
            name.to_owned(),
            "secret type",
            "listed in [secrets] types",
            None,
            also,
        );
    }
}

/// The chain hops of steps (for tests).
#[cfg(test)]
fn hops_of(steps: &[Step<'_>]) -> Vec<crate::graph::Hop> {
    steps.iter().map(Step::hop).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn direct_stops_at_named_types() {
        let s = schema_with(vec![], vec![strukt("a::X", vec![])]);
        let index: HashMap<&str, usize> = s
            .types
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let ty = option(seq(named("a::X")));
        let mut out = Vec::new();
        direct(&ty, &index, &mut Vec::new(), &mut out);
        assert_eq!(out.len(), 1);
        use crate::graph::Hop;
        assert_eq!(
            hops_of(&out[0].0),
            vec![
                Hop::Some,
                Hop::Element,
                Hop::Type {
                    path: "a::X".into()
                }
            ]
        );
    }
}
