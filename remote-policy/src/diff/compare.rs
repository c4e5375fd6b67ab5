//! The comparisons behind [`super::diff`]: interfaces by key (then by
//! name, for a moved one), methods by wire name, arguments by position;
//! named types by key in [`super::fields`].

use std::collections::BTreeSet;

use remote_core::schema::{short_name, InterfaceDef, Location, MethodDef, Schema, Ty};

use super::flow::Flow;
use super::{ty_text, Change, ChangeKind, Roles, Verdict};
use crate::graph::{position_key, Position};

pub(super) struct Cx<'a> {
    pub(super) old: &'a Schema,
    pub(super) new: &'a Schema,
    pub(super) roles: &'a Roles,
    pub(super) out: Vec<Change>,
}

pub(super) fn compare(old: &Schema, new: &Schema, roles: &Roles) -> Vec<Change> {
    let mut cx = Cx {
        old,
        new,
        roles,
        out: Vec::new(),
    };
    let mut unmatched_new: BTreeSet<&str> = new
        .interfaces
        .keys()
        .filter(|k| !old.interfaces.contains_key(*k))
        .map(String::as_str)
        .collect();
    for (key, oi) in &old.interfaces {
        if let Some(ni) = new.interfaces.get(key) {
            cx.interface(oi, ni);
            continue;
        }
        let same_name: Vec<&str> = unmatched_new
            .iter()
            .copied()
            .filter(|k| short_name(k) == oi.name)
            .collect();
        if let [k] = same_name[..] {
            unmatched_new.remove(k);
            let ni = &new.interfaces[k];
            cx.push(
                ChangeKind::InterfaceMoved,
                (false, false),
                &ni.path,
                &oi.path,
                &ni.path,
                "an interface's Rust path never travels: calls name the object and the method's wire name".to_owned(),
                &ni.location,
            );
            cx.interface(oi, ni);
            continue;
        }
        let (effect, why) = if roles.roots.contains(key) {
            (
                roles.method_effect(key, true, false),
                "it was a root: old clients call its methods on object 0 of a new server, which serves something else",
            )
        } else {
            (
                (false, false),
                "reached only through capabilities: what happens to old peers is judged where the methods that hand it out changed",
            )
        };
        cx.push(
            ChangeKind::InterfaceRemoved,
            effect,
            key,
            key,
            "-",
            why.to_owned(),
            &oi.location,
        );
    }
    for k in unmatched_new {
        let ni = &new.interfaces[k];
        cx.push(
            ChangeKind::InterfaceAdded,
            (false, false),
            k,
            "-",
            k,
            "old peers never reach it".to_owned(),
            &ni.location,
        );
    }
    for (key, ot) in &old.types {
        if let Some(nt) = new.types.get(key) {
            cx.typedef(ot, nt);
        }
    }
    cx.out
}

impl Cx<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        kind: ChangeKind,
        (old_clients, old_servers): (bool, bool),
        at: &str,
        old: &str,
        new: &str,
        why: String,
        location: &Location,
    ) {
        self.out.push(Change {
            kind,
            verdict: Verdict::of(old_clients, old_servers),
            at: at.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
            why,
            location: (!location.file.is_empty()).then(|| location.clone()),
            allowed: None,
        });
    }

    fn interface(&mut self, oi: &InterfaceDef, ni: &InterfaceDef) {
        let key = ni.path.as_str();
        let mut added: Vec<&MethodDef> = ni
            .methods
            .iter()
            .filter(|n| !oi.methods.iter().any(|o| o.wire_name == n.wire_name))
            .collect();
        for om in &oi.methods {
            if let Some(nm) = ni.methods.iter().find(|n| n.wire_name == om.wire_name) {
                self.method(key, om, nm);
                continue;
            }
            let renamed = added
                .iter()
                .position(|n| n.name == om.name)
                .or_else(|| added.iter().position(|n| same_signature(om, n)));
            let at = format!("{key}.{}", om.name);
            if let Some(i) = renamed {
                let nm = added.remove(i);
                let effect = self.roles.method_effect(key, true, true);
                self.push(
                    ChangeKind::MethodRenamed,
                    effect,
                    &at,
                    &om.wire_name,
                    &nm.wire_name,
                    format!(
                        "calls travel by wire name: old callers call `{}`, which the new side does not have, and new callers call `{}` (unknown_method); keep the old wire name with #[remote(name = \"{}\")]",
                        om.wire_name, nm.wire_name, om.wire_name
                    ),
                    &nm.location,
                );
                continue;
            }
            let effect = self.roles.method_effect(key, true, false);
            self.push(
                ChangeKind::MethodRemoved,
                effect,
                &at,
                &signature(om),
                "-",
                format!("old callers of `{}` get unknown_method", om.wire_name),
                &om.location,
            );
        }
        for nm in added {
            self.push(
                ChangeKind::MethodAdded,
                (false, false),
                &format!("{key}.{}", nm.name),
                "-",
                &signature(nm),
                format!(
                    "old callers do not call it; a new caller that calls `{}` on an old implementation gets unknown_method",
                    nm.wire_name
                ),
                &nm.location,
            );
        }
    }

    fn method(&mut self, key: &str, om: &MethodDef, nm: &MethodDef) {
        let at = format!("{key}.{}", nm.name);
        let loc = &nm.location;
        if om.name != nm.name {
            self.push(
                ChangeKind::RustNameChanged,
                (false, false),
                &at,
                &om.name,
                &nm.name,
                format!("the wire name `{}` is unchanged", nm.wire_name),
                loc,
            );
        }
        if om.requires_auth != nm.requires_auth {
            let (kind, effect, why) = if nm.requires_auth {
                (
                    ChangeKind::RequiresAuthAdded,
                    self.roles.method_effect(key, true, false),
                    "old callers that do not authenticate first are refused",
                )
            } else {
                (
                    ChangeKind::RequiresAuthRemoved,
                    (false, false),
                    "every call that passed before still passes (check that the method is safe before authentication)",
                )
            };
            self.push(
                kind,
                effect,
                &at,
                &format!("requires_auth = {}", om.requires_auth),
                &format!("requires_auth = {}", nm.requires_auth),
                why.to_owned(),
                loc,
            );
        }
        if om.is_async != nm.is_async {
            self.push(
                ChangeKind::BlockingChanged,
                (false, false),
                &at,
                if om.is_async { "async" } else { "blocking" },
                if nm.is_async { "async" } else { "blocking" },
                "blocking or async is a Rust-side choice; on the wire it is the same call"
                    .to_owned(),
                loc,
            );
        }
        self.arguments(key, om, nm);
        for (position, kind, ot, nt) in [
            (
                Position::Returns,
                ChangeKind::ReturnChanged,
                &om.returns,
                &nm.returns,
            ),
            (
                Position::Error,
                ChangeKind::ErrorChanged,
                &om.error,
                &nm.error,
            ),
        ] {
            if ot == nt {
                continue;
            }
            // The implementation sends results; the caller decodes them.
            let old_callers = Flow::new(self.new, self.old).check(nt, ot);
            let new_callers = Flow::new(self.old, self.new).check(ot, nt);
            let effect =
                self.roles
                    .method_effect(key, old_callers.is_some(), new_callers.is_some());
            let why = both_ways(
                old_callers
                    .map(|w| format!("an old caller refuses what the new side returns: {w}")),
                new_callers.map(|w| {
                    format!("a new caller refuses what an old implementation returns: {w}")
                }),
            );
            let kind = if only_bounds(ot, nt) {
                ChangeKind::BoundChanged
            } else {
                kind
            };
            self.push(
                kind,
                effect,
                &position_key(key, &nm.name, &position),
                &ty_text(ot),
                &ty_text(nt),
                why,
                loc,
            );
        }
    }

    fn arguments(&mut self, key: &str, om: &MethodDef, nm: &MethodDef) {
        let loc = &nm.location;
        let names = |m: &MethodDef| m.args.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
        let (on, nn) = (names(om), names(nm));
        if om.args.len() != nm.args.len() {
            let effect = self.roles.method_effect(key, true, true);
            let why = format!(
                "arguments travel as an array that must match in length: the old side sends {}, the new side expects {} (bad_arguments, both ways), even for an Option argument",
                om.args.len(),
                nm.args.len()
            );
            for a in nm.args.iter().filter(|a| !on.contains(&a.name)) {
                self.push(
                    ChangeKind::ArgumentAdded,
                    effect,
                    &position_key(key, &nm.name, &Position::Arg(a.name.clone())),
                    "-",
                    &format!("{}: {}", a.name, ty_text(&a.ty)),
                    why.clone(),
                    loc,
                );
            }
            for a in om.args.iter().filter(|a| !nn.contains(&a.name)) {
                self.push(
                    ChangeKind::ArgumentRemoved,
                    effect,
                    &position_key(key, &nm.name, &Position::Arg(a.name.clone())),
                    &format!("{}: {}", a.name, ty_text(&a.ty)),
                    "-",
                    why.clone(),
                    loc,
                );
            }
            return;
        }
        let mut sorted_old = on.clone();
        let mut sorted_new = nn.clone();
        sorted_old.sort();
        sorted_new.sort();
        if on != nn && sorted_old == sorted_new {
            let effect = self.roles.method_effect(key, true, true);
            self.push(
                ChangeKind::ArgumentsReordered,
                effect,
                &format!("{key}.{}", nm.name),
                &format!("({})", on.join(", ")),
                &format!("({})", nn.join(", ")),
                "arguments travel by position: each value lands in another parameter (refused, or silently wrong when the types agree)".to_owned(),
                loc,
            );
            return;
        }
        for (oa, na) in om.args.iter().zip(&nm.args) {
            let at = position_key(key, &nm.name, &Position::Arg(na.name.clone()));
            if oa.name != na.name {
                self.push(
                    ChangeKind::ArgumentRenamed,
                    (false, false),
                    &at,
                    &oa.name,
                    &na.name,
                    "arguments travel by position; names do not travel".to_owned(),
                    loc,
                );
            }
            if oa.ty == na.ty {
                continue;
            }
            // The caller sends arguments; the implementation decodes them.
            let old_callers = Flow::new(self.old, self.new).check(&oa.ty, &na.ty);
            let new_callers = Flow::new(self.new, self.old).check(&na.ty, &oa.ty);
            let effect =
                self.roles
                    .method_effect(key, old_callers.is_some(), new_callers.is_some());
            let why = both_ways(
                old_callers.map(|w| format!("the new side refuses what an old caller sends: {w}")),
                new_callers
                    .map(|w| format!("an old implementation refuses what a new caller sends: {w}")),
            );
            let kind = if only_bounds(&oa.ty, &na.ty) {
                ChangeKind::BoundChanged
            } else {
                ChangeKind::ArgumentRetyped
            };
            self.push(
                kind,
                effect,
                &at,
                &ty_text(&oa.ty),
                &ty_text(&na.ty),
                why,
                loc,
            );
        }
    }
}

pub(super) fn both_ways(a: Option<String>, b: Option<String>) -> String {
    match (a, b) {
        (None, None) => {
            "wire-compatible both ways: every value of either version decodes as the other"
                .to_owned()
        }
        (Some(a), None) => format!("{a}; the other way is fine"),
        (None, Some(b)) => format!("{b}; the other way is fine"),
        (Some(a), Some(b)) => format!("{a}; and {b}"),
    }
}

/// Whether two types differ only in `max_len` bounds.
pub(super) fn only_bounds(a: &Ty, b: &Ty) -> bool {
    fn strip(t: &Ty) -> Ty {
        match t {
            Ty::String { .. } => Ty::String { max_len: None },
            Ty::Bytes { .. } => Ty::Bytes { max_len: None },
            Ty::Seq { elem, .. } => Ty::Seq {
                elem: Box::new(strip(elem)),
                max_len: None,
            },
            Ty::Map { key, value, .. } => Ty::Map {
                key: Box::new(strip(key)),
                value: Box::new(strip(value)),
                max_len: None,
            },
            Ty::Array { elem, len } => Ty::Array {
                elem: Box::new(strip(elem)),
                len: *len,
            },
            Ty::Option(i) => Ty::Option(Box::new(strip(i))),
            Ty::Result { ok, err } => Ty::Result {
                ok: Box::new(strip(ok)),
                err: Box::new(strip(err)),
            },
            Ty::Tuple(items) => Ty::Tuple(items.iter().map(strip).collect()),
            // The source interface's key names the item type: compared
            // through the item.
            Ty::Stream { item, .. } => Ty::Stream {
                item: Box::new(strip(item)),
                source: None,
            },
            other => other.clone(),
        }
    }
    a != b && strip(a) == strip(b)
}

fn same_signature(a: &MethodDef, b: &MethodDef) -> bool {
    a.args
        .iter()
        .map(|x| &x.ty)
        .eq(b.args.iter().map(|x| &x.ty))
        && a.returns == b.returns
        && a.error == b.error
}

fn signature(m: &MethodDef) -> String {
    let args: Vec<String> = m
        .args
        .iter()
        .map(|a| format!("{}: {}", a.name, ty_text(&a.ty)))
        .collect();
    format!(
        "{}({}) -> Result<{}, {}>",
        m.wire_name,
        args.join(", "),
        ty_text(&m.returns),
        ty_text(&m.error)
    )
}
