//! The type-level part of [`super::diff`]: named types with the same key in
//! both versions, compared by shape, variant and field (PROTOCOL.md §2:
//! struct fields as a map keyed by name, tuple fields as an array, enum
//! variants by name).

use remote_core::schema::{FieldDef, Location, TypeDef, TypeKind};

use super::compare::{both_ways, only_bounds, Cx};
use super::flow::{serde_forms, shape, Flow, Shape};
use super::{is_option, ty_text, ChangeKind};
use crate::graph::field_key;

impl Cx<'_> {
    pub(super) fn typedef(&mut self, ot: &TypeDef, nt: &TypeDef) {
        let key = nt.path.as_str();
        let loc = &nt.location;
        if ot.secret != nt.secret {
            self.push(
                ChangeKind::SecretChanged,
                (false, false),
                key,
                &format!("secret = {}", ot.secret),
                &format!("secret = {}", nt.secret),
                "the mark is for remote-policy check; the encoding does not change".to_owned(),
                loc,
            );
        }
        if let Some((of, nf)) = serde_forms((self.old, self.new), ot, nt) {
            // A review: `#[serde(transparent)]`, `tag` and `untagged` added
            // to a type were no change at all in the schemas.
            let effect = self.roles.type_effect(key, true, true);
            self.push(
                ChangeKind::ShapeChanged,
                effect,
                key,
                &of,
                &nf,
                "its serde attributes changed how it is encoded".to_owned(),
                loc,
            );
            return;
        }
        match (&ot.kind, &nt.kind) {
            (TypeKind::Struct { fields: of }, TypeKind::Struct { fields: nf }) => {
                self.fields(key, None, of, nf, loc);
            }
            (TypeKind::Enum { variants: ov }, TypeKind::Enum { variants: nv }) => {
                for v in ov {
                    let vkey = format!("{key}.{}", v.name);
                    match nv.iter().find(|w| w.name == v.name) {
                        Some(w) => self.fields(key, Some(&v.name), &v.fields, &w.fields, loc),
                        None => {
                            let effect = self.roles.type_effect(key, true, false);
                            self.push(
                                ChangeKind::VariantRemoved,
                                effect,
                                &vkey,
                                &v.name,
                                "-",
                                format!("a new receiver refuses `{}` from an old sender (unknown variant)", v.name),
                                loc,
                            );
                        }
                    }
                }
                for w in nv.iter().filter(|w| !ov.iter().any(|v| v.name == w.name)) {
                    let effect = self.roles.type_effect(key, false, true);
                    self.push(
                        ChangeKind::VariantAdded,
                        effect,
                        &format!("{key}.{}", w.name),
                        "-",
                        &w.name,
                        format!(
                            "an old receiver refuses `{}` from a new sender (unknown variant)",
                            w.name
                        ),
                        loc,
                    );
                }
            }
            _ => {
                let effect = self.roles.type_effect(key, true, true);
                let what = |k: &TypeKind| match k {
                    TypeKind::Struct { .. } => "struct",
                    _ => "enum",
                };
                self.push(
                    ChangeKind::ShapeChanged,
                    effect,
                    key,
                    what(&ot.kind),
                    what(&nt.kind),
                    "a struct and an enum are encoded differently".to_owned(),
                    loc,
                );
            }
        }
    }

    fn fields(
        &mut self,
        owner: &str,
        variant: Option<&str>,
        of: &[FieldDef],
        nf: &[FieldDef],
        loc: &Location,
    ) {
        let fkey = |name: &str| field_key(owner, variant, name);
        let at = match variant {
            Some(v) => format!("{owner}.{v}"),
            None => owner.to_owned(),
        };
        let (os, ns) = (shape(of), shape(nf));
        let tuple_like = |s: Shape| matches!(s, Shape::Tuple | Shape::Newtype);
        let arity = tuple_like(os) && tuple_like(ns) && of.len() != nf.len();
        if os != ns && !(os == Shape::Tuple && ns == Shape::Tuple) {
            let effect = self.roles.type_effect(owner, true, true);
            let text = |fs: &[FieldDef]| {
                let items: Vec<String> = fs
                    .iter()
                    .map(|f| format!("{}: {}", f.name, ty_text(&f.ty)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            };
            let why = if arity {
                "tuple fields travel as an array that must match in length (newtype: the bare value)"
            } else {
                "unit, newtype, tuple and named fields are encoded differently (nil or name, bare value, array, map)"
            };
            self.push(
                ChangeKind::ShapeChanged,
                effect,
                &at,
                &text(of),
                &text(nf),
                why.to_owned(),
                loc,
            );
            return;
        }
        if os == Shape::Tuple && of.len() != nf.len() {
            let effect = self.roles.type_effect(owner, true, true);
            let (kind, f) = if nf.len() > of.len() {
                (ChangeKind::FieldAddedRequired, &nf[of.len()])
            } else {
                (ChangeKind::FieldRemoved, &of[nf.len()])
            };
            self.push(
                kind,
                effect,
                &fkey(&f.name),
                &format!("{} fields", of.len()),
                &format!("{} fields", nf.len()),
                "tuple fields travel as an array that must match in length".to_owned(),
                loc,
            );
            return;
        }
        let named = os == Shape::Named;
        for f in nf {
            match of.iter().find(|g| g.name == f.name) {
                Some(g) => self.field(owner, &fkey(&f.name), g, f, loc),
                None if f.default || is_option(&f.ty) => self.push(
                    ChangeKind::FieldAddedOptional,
                    (false, false),
                    &fkey(&f.name),
                    "-",
                    &ty_text(&f.ty),
                    format!(
                        "an old receiver ignores the unknown key; a new receiver reads the key missing from an old sender as {}",
                        if f.default { "the default (#[serde(default)])" } else { "None" }
                    ),
                    field_loc(f, loc),
                ),
                None => {
                    let effect = self.roles.type_effect(owner, true, false);
                    self.push(
                        ChangeKind::FieldAddedRequired,
                        effect,
                        &fkey(&f.name),
                        "-",
                        &ty_text(&f.ty),
                        "a new receiver refuses a value from an old sender without this key (missing field; make it an Option or give it #[serde(default)]); an old receiver ignores the unknown key".to_owned(),
                        field_loc(f, loc),
                    );
                }
            }
        }
        for g in of.iter().filter(|g| !nf.iter().any(|f| f.name == g.name)) {
            let (effect, why) = if g.default || is_option(&g.ty) {
                (
                    (false, false),
                    "a new receiver ignores the key an old sender still sends; an old receiver fills in the missing key (None, or the #[serde(default)] value)",
                )
            } else {
                (
                    self.roles.type_effect(owner, false, true),
                    "an old receiver refuses a value from a new sender without this key (missing field); a new receiver ignores the key",
                )
            };
            self.push(
                ChangeKind::FieldRemoved,
                effect,
                &fkey(&g.name),
                &ty_text(&g.ty),
                "-",
                why.to_owned(),
                loc,
            );
        }
        if named {
            let common_old: Vec<&str> = of
                .iter()
                .filter(|g| nf.iter().any(|f| f.name == g.name))
                .map(|g| g.name.as_str())
                .collect();
            let common_new: Vec<&str> = nf
                .iter()
                .filter(|f| of.iter().any(|g| g.name == f.name))
                .map(|f| f.name.as_str())
                .collect();
            if common_old != common_new {
                self.push(
                    ChangeKind::FieldsReordered,
                    (false, false),
                    &at,
                    &common_old.join(", "),
                    &common_new.join(", "),
                    "struct fields travel as a map keyed by name, so their order does not matter (a receiver that is sent an array of fields, which PROTOCOL.md also allows, would see it; this toolkit never sends one)".to_owned(),
                    loc,
                );
            }
        }
    }

    fn field(&mut self, owner: &str, at: &str, g: &FieldDef, f: &FieldDef, loc: &Location) {
        let loc = field_loc(f, loc);
        if g.secret != f.secret {
            self.push(
                ChangeKind::SecretChanged,
                (false, false),
                at,
                &format!("secret = {}", g.secret),
                &format!("secret = {}", f.secret),
                "the mark is for remote-policy check; the encoding does not change".to_owned(),
                loc,
            );
        }
        if g.ty == f.ty {
            return;
        }
        let old_to_new = Flow::new(self.old, self.new).check(&g.ty, &f.ty);
        let new_to_old = Flow::new(self.new, self.old).check(&f.ty, &g.ty);
        let effect = self
            .roles
            .type_effect(owner, old_to_new.is_some(), new_to_old.is_some());
        let why = both_ways(
            old_to_new.map(|w| format!("a new receiver refuses what an old sender sends: {w}")),
            new_to_old.map(|w| format!("an old receiver refuses what a new sender sends: {w}")),
        );
        let kind = if only_bounds(&g.ty, &f.ty) {
            ChangeKind::BoundChanged
        } else {
            ChangeKind::FieldRetyped
        };
        self.push(kind, effect, at, &ty_text(&g.ty), &ty_text(&f.ty), why, loc);
    }
}

/// The field's own location, else its type's.
fn field_loc<'a>(f: &'a FieldDef, owner: &'a Location) -> &'a Location {
    f.location.as_ref().unwrap_or(owner)
}
