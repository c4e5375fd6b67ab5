//! Whether a value encoded by one version can be decoded by another, per the
//! value encoding of PROTOCOL.md §2 (serde with `rmp-serde`).
//!
//! [`Flow::check`] takes the sender's type (in the sender's schema) and the
//! receiver's type (in the receiver's schema) and says why some values the
//! sender may send are refused by the receiver, or nothing when every value
//! decodes. The rules, each backed by a test in `tests/compat_roundtrip.rs`
//! or by the encoding table:
//!
//! - integers decode when the value fits the receiver's type, so widening is
//!   safe and narrowing refuses large values;
//! - a receiver's `Option<T>` reads a plain `T` as `Some`; a plain `T` refuses
//!   `None` (nil);
//! - struct fields travel as a map keyed by field name: the receiver ignores
//!   keys it does not know, reads a missing `Option` field as `None` and a
//!   missing `#[serde(default)]` field as its default, and refuses any other
//!   missing field (`missing field`);
//! - tuple structs, tuples and argument lists are arrays: the length must
//!   match exactly (`invalid length`);
//! - enum variants travel by name: a variant the receiver lacks is refused
//!   (`unknown variant`);
//! - a bound (`Bounded<T, N>`) is enforced by the receiver when it decodes;
//! - a type's Rust path does not travel, so a renamed or moved type with the
//!   same shape is compatible;
//! - a capability is a reference: the receiver calls the sender's object, so
//!   every method the receiver's interface has must exist on the sender's,
//!   with compatible arguments and results.

use std::collections::BTreeSet;

use remote_core::schema::{FieldDef, InterfaceDef, Schema, Ty, TypeDef, TypeKind};

use super::text::ty_text;

/// Compares values across two schemas.
#[derive(Debug)]
pub(crate) struct Flow<'a> {
    /// The sender's schema.
    pub(crate) from: &'a Schema,
    /// The receiver's schema.
    pub(crate) to: &'a Schema,
    /// Named type pairs already being compared (cycles count as compatible:
    /// a difference inside is found where it first appears).
    open: BTreeSet<(String, String)>,
    /// Whether a named type (or interface) with the same path on both sides
    /// is compared here (`true`) or left to the type-level diff (`false`).
    pub(crate) deep: bool,
}

impl<'a> Flow<'a> {
    pub(crate) fn new(from: &'a Schema, to: &'a Schema) -> Self {
        Flow {
            from,
            to,
            open: BTreeSet::new(),
            deep: false,
        }
    }

    /// Why some value of `s` (sender) is refused as `r` (receiver), or `None`.
    pub(crate) fn check(&mut self, s: &Ty, r: &Ty) -> Option<String> {
        use Ty::*;
        if legacy(self.from, self.to) && (v1_duration(s, r) || v1_duration(r, s)) {
            return None;
        }
        match (s, r) {
            (Unit, Unit) | (Bool, Bool) | (Char, Char) | (RemoteError, RemoteError) => None,
            (Char, String { max_len: None }) => None,
            (
                Int {
                    bits: sb,
                    signed: ss,
                },
                Int {
                    bits: rb,
                    signed: rs,
                },
            ) => {
                let (smin, smax) = int_range(*sb, *ss);
                let (rmin, rmax) = int_range(*rb, *rs);
                (smin < rmin || smax > rmax).then(|| {
                    format!(
                        "the receiver refuses values outside {} that a {} may hold",
                        ty_text(r),
                        ty_text(s)
                    )
                })
            }
            (Float { bits: sb }, Float { bits: rb }) => (sb > rb)
                .then(|| format!("a {} value loses precision as {}", ty_text(s), ty_text(r))),
            (String { max_len: sm }, String { max_len: rm })
            | (Bytes { max_len: sm }, Bytes { max_len: rm }) => bound(*sm, *rm, "bytes"),
            (
                Seq {
                    elem: se,
                    max_len: sm,
                },
                Seq {
                    elem: re,
                    max_len: rm,
                },
            ) => bound(*sm, *rm, "elements").or_else(|| self.inside(se, re, "an element")),
            (Array { elem: se, len: sl }, Array { elem: re, len: rl }) => {
                if sl != rl {
                    Some(format!(
                        "an array of {sl} is refused where {rl} are expected"
                    ))
                } else {
                    self.inside(se, re, "an element")
                }
            }
            (Array { elem: se, len }, Seq { elem: re, max_len }) => {
                bound(Some(*len), *max_len, "elements")
                    .or_else(|| self.inside(se, re, "an element"))
            }
            (
                Map {
                    key: sk,
                    value: sv,
                    max_len: sm,
                },
                Map {
                    key: rk,
                    value: rv,
                    max_len: rm,
                },
            ) => bound(*sm, *rm, "entries")
                .or_else(|| self.inside(sk, rk, "a key"))
                .or_else(|| self.inside(sv, rv, "a value")),
            (Option(si), Option(ri)) => self.inside(si, ri, "the `Some` value"),
            // A receiver's Option reads a plain value as `Some`; `()` is nil,
            // which it would read as `None`.
            (s, Option(ri)) if !matches!(s, Unit | Option(_)) => self.check(s, ri),
            (Option(_), _) => Some(format!(
                "`None` (nil) is refused by {}, which is not an Option",
                ty_text(r)
            )),
            (Result { ok: so, err: se }, Result { ok: ro, err: re }) => self
                .inside(so, ro, "the `Ok` value")
                .or_else(|| self.inside(se, re, "the `Err` value")),
            (Tuple(si), Tuple(ri)) => {
                if si.len() != ri.len() {
                    return Some(format!(
                        "a tuple of {} is refused where {} items are expected (arrays must match in length)",
                        si.len(),
                        ri.len()
                    ));
                }
                si.iter()
                    .zip(ri)
                    .enumerate()
                    .find_map(|(i, (a, b))| self.inside(a, b, &format!("item {i}")))
            }
            (Stream { item: si, .. }, Stream { item: ri, .. }) => {
                self.inside(si, ri, "a stream item")
            }
            (Capability { interface: si }, Capability { interface: ri }) => {
                if si == ri && !self.deep {
                    return None; // the interface-level diff compares it
                }
                self.interface(si, ri)
            }
            (Named { path: sp }, Named { path: rp }) => {
                if sp == rp && !self.deep {
                    return None; // the type-level diff compares it
                }
                self.named(sp, rp)
            }
            (Opaque { name: sn, .. }, Opaque { name: rn, .. }) if sn == rn => None,
            _ if s == r => None,
            _ => Some(format!(
                "{} is encoded differently from {}",
                ty_text(s),
                ty_text(r)
            )),
        }
    }

    fn inside(&mut self, s: &Ty, r: &Ty, what: &str) -> Option<String> {
        self.check(s, r).map(|why| format!("{what}: {why}"))
    }

    /// Two named types with different paths (or compared deeply).
    fn named(&mut self, sp: &str, rp: &str) -> Option<String> {
        let (Some(sd), Some(rd)) = (self.from.types.get(sp), self.to.types.get(rp)) else {
            return (sp != rp)
                .then(|| format!("`{sp}` and `{rp}` cannot be compared (not in the schema)"));
        };
        if !self.open.insert((format!("t:{sp}"), rp.to_owned())) {
            return None;
        }
        let out = self.typedef(sd, rd);
        self.open.remove(&(format!("t:{sp}"), rp.to_owned()));
        out.map(|why| format!("in `{}`: {why}", rd.name))
    }

    /// Why a value of type `sd` is refused as `rd`.
    pub(crate) fn typedef(&mut self, sd: &TypeDef, rd: &TypeDef) -> Option<String> {
        if let Some((s, r)) = serde_forms((self.from, self.to), sd, rd) {
            return Some(format!("serde encodes it differently ({s} against {r})"));
        }
        match (&sd.kind, &rd.kind) {
            (TypeKind::Struct { fields: sf }, TypeKind::Struct { fields: rf }) => {
                self.fields(sf, rf)
            }
            (TypeKind::Enum { variants: sv }, TypeKind::Enum { variants: rv }) => {
                for v in sv {
                    let Some(w) = rv.iter().find(|w| w.name == v.name) else {
                        return Some(format!("the receiver has no variant `{}`", v.name));
                    };
                    if let Some(why) = self.fields(&v.fields, &w.fields) {
                        return Some(format!("variant `{}`: {why}", v.name));
                    }
                }
                None
            }
            _ => Some("a struct and an enum are encoded differently".to_owned()),
        }
    }

    /// Fields of a struct or variant, by shape (PROTOCOL.md §2).
    pub(crate) fn fields(&mut self, sf: &[FieldDef], rf: &[FieldDef]) -> Option<String> {
        match (shape(sf), shape(rf)) {
            (Shape::Unit, Shape::Unit) => None,
            (Shape::Named, Shape::Named) => {
                for f in rf {
                    match sf.iter().find(|g| g.name == f.name) {
                        Some(g) => {
                            if let Some(why) = self.inside(&g.ty, &f.ty, &format!("field `{}`", f.name)) {
                                return Some(why);
                            }
                        }
                        None if f.default || matches!(f.ty, Ty::Option(_)) => {}
                        None => {
                            return Some(format!(
                                "the sender has no field `{}`, which the receiver requires (missing field)",
                                f.name
                            ))
                        }
                    }
                }
                None
            }
            (Shape::Newtype, Shape::Newtype) => self.check(&sf[0].ty, &rf[0].ty),
            (Shape::Tuple, Shape::Tuple) if sf.len() == rf.len() => sf
                .iter()
                .zip(rf)
                .find_map(|(a, b)| self.inside(&a.ty, &b.ty, &format!("field {}", a.name))),
            (a, b) => Some(format!(
                "{} are encoded differently from {}",
                a.describe(sf.len()),
                b.describe(rf.len())
            )),
        }
    }

    /// The receiver calls the sender's object as `ri`; the object implements `si`.
    fn interface(&mut self, si: &str, ri: &str) -> Option<String> {
        let (Some(sd), Some(rd)) = (self.from.interfaces.get(si), self.to.interfaces.get(ri))
        else {
            return (si != ri)
                .then(|| format!("`{si}` and `{ri}` cannot be compared (not in the schema)"));
        };
        if !self.open.insert((format!("i:{si}"), ri.to_owned())) {
            return None;
        }
        let out = self.calls(sd, rd);
        self.open.remove(&(format!("i:{si}"), ri.to_owned()));
        out.map(|why| format!("capability `{}` → `{}`: {why}", sd.name, rd.name))
    }

    /// Why calls made through `caller` fail on an object implementing
    /// `implementer`. `self.from` is the implementer's schema, `self.to` the
    /// caller's.
    fn calls(&mut self, implementer: &InterfaceDef, caller: &InterfaceDef) -> Option<String> {
        for m in &caller.methods {
            let Some(n) = implementer
                .methods
                .iter()
                .find(|n| n.wire_name == m.wire_name)
            else {
                return Some(format!(
                    "method `{}` does not exist on the object (unknown_method)",
                    m.wire_name
                ));
            };
            // Arguments go from the caller (schema `to`) to the implementer
            // (schema `from`): the reverse flow.
            let args_c: Vec<Ty> = m.args.iter().map(|a| a.ty.clone()).collect();
            let args_i: Vec<Ty> = n.args.iter().map(|a| a.ty.clone()).collect();
            let mut back = Flow {
                from: self.to,
                to: self.from,
                open: std::mem::take(&mut self.open),
                deep: self.deep,
            };
            let why = back.check(&Ty::Tuple(args_c), &Ty::Tuple(args_i));
            self.open = back.open;
            if let Some(why) = why {
                return Some(format!("arguments of `{}`: {why}", m.wire_name));
            }
            if let Some(why) = self.inside(
                &n.returns,
                &m.returns,
                &format!("return value of `{}`", m.wire_name),
            ) {
                return Some(why);
            }
            if let Some(why) =
                self.inside(&n.error, &m.error, &format!("error of `{}`", m.wire_name))
            {
                return Some(why);
            }
        }
        None
    }
}

/// Whether either schema is of version 1, which recorded no serde
/// attributes and described a `Duration` as a tuple.
pub(crate) fn legacy(a: &Schema, b: &Schema) -> bool {
    a.version < 2 || b.version < 2
}

/// `a` a version-1 `Duration` (the tuple of a `u64` and a `u32`) and `b`
/// the struct version 2 describes it as: the same on the wire.
fn v1_duration(a: &Ty, b: &Ty) -> bool {
    let u = |ty: &Ty, bits| matches!(ty, Ty::Int { bits: b, signed: false } if *b == bits);
    matches!(b, Ty::Named { path } if path == "std::time::Duration")
        && matches!(a, Ty::Tuple(items) if items.len() == 2 && u(&items[0], 64) && u(&items[1], 32))
}

/// How serde encodes `a` and `b` (their serde attributes that change how
/// a type crosses, `TypeDef::serde`, as `#[serde(..)]`), if the two differ
/// and both schemas record them (version 2): any difference changes the
/// encoding (`transparent` drops the struct, `tag` moves the variant's
/// name inside, `untagged` drops it, `rename_all` renames every field or
/// variant). `deny_unknown_fields` is left out: a receiver's rule about
/// fields, which the fields' comparison covers.
pub(crate) fn serde_forms(
    (sa, sb): (&Schema, &Schema),
    a: &TypeDef,
    b: &TypeDef,
) -> Option<(String, String)> {
    let text = |d: &TypeDef| {
        let form: Vec<&str> = d
            .serde
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "deny_unknown_fields")
            .collect();
        if form.is_empty() {
            "serde's default form".to_owned()
        } else {
            format!("#[serde({})]", form.join(", "))
        }
    };
    let (ta, tb) = (text(a), text(b));
    (ta != tb && !legacy(sa, sb)).then_some((ta, tb))
}

/// How serde encodes a struct's or variant's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// No fields: a unit struct is nil, a unit variant its name.
    Unit,
    /// One field `0`: the inner value.
    Newtype,
    /// Fields `0`, `1`, …: an array.
    Tuple,
    /// Named fields: a map keyed by name.
    Named,
}

impl Shape {
    fn describe(self, n: usize) -> String {
        match self {
            Shape::Unit => "no fields".to_owned(),
            Shape::Newtype => "a newtype (the inner value)".to_owned(),
            Shape::Tuple => format!("{n} tuple fields (an array)"),
            Shape::Named => "named fields (a map)".to_owned(),
        }
    }
}

pub(crate) fn shape(fields: &[FieldDef]) -> Shape {
    match fields {
        [] => Shape::Unit,
        [f] if f.name == "0" => Shape::Newtype,
        fs if fs.first().is_some_and(|f| f.name == "0") => Shape::Tuple,
        _ => Shape::Named,
    }
}

fn bound(s: Option<u64>, r: Option<u64>, unit: &str) -> Option<String> {
    match (s, r) {
        (_, None) => None,
        (None, Some(r)) => Some(format!(
            "the receiver refuses more than {r} {unit}; the sender has no bound"
        )),
        (Some(s), Some(r)) if s > r => Some(format!(
            "the receiver refuses more than {r} {unit}; the sender allows {s}"
        )),
        _ => None,
    }
}

fn int_range(bits: u8, signed: bool) -> (i128, i128) {
    let bits = u32::from(bits.clamp(1, 128));
    if signed {
        let m = 1i128.checked_shl(bits - 1).unwrap_or(i128::MAX);
        (-m, m - 1)
    } else if bits >= 127 {
        (0, i128::MAX)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn int(bits: u8, signed: bool) -> Ty {
        Ty::Int { bits, signed }
    }

    #[test]
    fn integers_widen_safely_and_narrow_with_a_reason() {
        let s = Schema::default();
        let mut f = Flow::new(&s, &s);
        assert_eq!(f.check(&int(32, false), &int(64, false)), None);
        assert_eq!(f.check(&int(32, false), &int(64, true)), None);
        assert!(f.check(&int(64, false), &int(32, false)).is_some());
        assert!(f.check(&int(32, true), &int(64, false)).is_some());
        assert_eq!(f.check(&int(128, false), &int(128, false)), None);
    }

    #[test]
    fn option_reads_plain_values_but_not_the_reverse() {
        let s = Schema::default();
        let mut f = Flow::new(&s, &s);
        assert_eq!(f.check(&u64_ty(), &option(u64_ty())), None);
        assert!(f.check(&option(u64_ty()), &u64_ty()).is_some());
        assert!(f.check(&Ty::Unit, &option(Ty::Unit)).is_some());
    }

    #[test]
    fn bounds_count_at_the_receiver() {
        let s = Schema::default();
        let mut f = Flow::new(&s, &s);
        assert_eq!(f.check(&bounded_string(8), &string()), None);
        assert_eq!(f.check(&bounded_string(8), &bounded_string(16)), None);
        assert!(f.check(&bounded_string(16), &bounded_string(8)).is_some());
        assert!(f.check(&string(), &bounded_string(8)).is_some());
    }

    #[test]
    fn renamed_types_with_one_shape_are_compatible() {
        let a = schema_with(vec![], vec![strukt("a::Msg", vec![field("x", u64_ty())])]);
        let b = schema_with(
            vec![],
            vec![strukt(
                "b::Msg",
                vec![field("x", u64_ty()), field("y", option(string()))],
            )],
        );
        assert_eq!(
            Flow::new(&a, &b).check(&named("a::Msg"), &named("b::Msg")),
            None
        );
        let why = Flow::new(&b, &a).check(&named("b::Msg"), &named("a::Msg"));
        assert_eq!(why, None, "extra keys are ignored");
        let c = schema_with(
            vec![],
            vec![strukt(
                "c::Msg",
                vec![field("x", u64_ty()), field("z", u64_ty())],
            )],
        );
        let why = Flow::new(&a, &c)
            .check(&named("a::Msg"), &named("c::Msg"))
            .unwrap();
        assert!(why.contains("no field `z`"), "{why}");
    }
}
