//! Which capabilities each method part of an interface hands over, for
//! [`crate::graph`]: per-type bitsets of the interfaces a value can carry
//! (so a dense type web costs types × interfaces / 64, not a walk per
//! part), and the hops inside a value to a handle, computed only for the
//! chains that are kept.

use std::collections::{HashMap, VecDeque};

use remote_core::schema::{FieldDef, InterfaceDef, MethodDef, Schema, Ty, TypeKind};

use crate::graph::hop::Hop;
use crate::graph::walk::{hops, Event, TypeWalk};

/// The capabilities each method part of an interface hands over, as
/// (method index, part index, interface), computed once per interface; and
/// the hops inside the value to each, computed only for the pairs that
/// become a chain (keeping them all would cost parts × interfaces × depth).
#[derive(Default)]
#[allow(missing_debug_implementations)]
pub(crate) struct CapCache<'s> {
    pub(crate) types: Option<TypeCaps<'s>>,
    pub(crate) parts: HashMap<&'s str, Vec<(usize, usize, &'s str)>>,
    pub(crate) hops: HashMap<(&'s str, usize, usize, &'s str), Vec<Hop>>,
}

impl CapCache<'_> {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

pub(crate) fn part_ty(method: &MethodDef, p: usize) -> &Ty {
    match p.checked_sub(method.args.len()) {
        None => &method.args[p].ty,
        Some(0) => &method.returns,
        Some(_) => &method.error,
    }
}

/// The capabilities inside each named type (through its fields, at any
/// depth, not through other capabilities), as bitsets over the interface
/// keys: a worklist fixpoint, linear in types × interfaces / 64.
pub(crate) struct TypeCaps<'s> {
    types: HashMap<&'s str, usize>,
    ifaces: Vec<&'s str>,
    bits: Vec<Vec<u64>>,
}

impl<'s> TypeCaps<'s> {
    pub(crate) fn new(schema: &'s Schema) -> Self {
        let types: HashMap<&str, usize> = schema
            .types
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let mut ifaces: Vec<&str> = Vec::new();
        let mut iface_index: HashMap<&str, usize> = HashMap::new();
        let words = |n: usize| n.div_ceil(64).max(1);
        let mut direct: Vec<Vec<usize>> = vec![Vec::new(); types.len()];
        let mut preds: Vec<Vec<usize>> = vec![Vec::new(); types.len()];
        for (t, def) in schema.types.values().enumerate() {
            let fields: Vec<&FieldDef> = match &def.kind {
                TypeKind::Struct { fields } => fields.iter().collect(),
                TypeKind::Enum { variants } => variants.iter().flat_map(|v| &v.fields).collect(),
            };
            for f in fields {
                shallow(&f.ty, &mut |named, cap| {
                    if let Some(n) = named.and_then(|n| types.get(n)) {
                        preds[*n].push(t);
                    }
                    if let Some(c) = cap {
                        let next = ifaces.len();
                        let i = *iface_index.entry(c).or_insert(next);
                        if i == next {
                            ifaces.push(c);
                        }
                        direct[t].push(i);
                    }
                });
            }
        }
        let w = words(ifaces.len());
        let mut bits = vec![vec![0u64; w]; types.len()];
        let mut queue: VecDeque<usize> = VecDeque::new();
        for (t, caps) in direct.iter().enumerate() {
            for &i in caps {
                bits[t][i / 64] |= 1 << (i % 64);
            }
            if !caps.is_empty() {
                queue.push_back(t);
            }
        }
        while let Some(u) = queue.pop_front() {
            let from = bits[u].clone();
            for &p in &preds[u] {
                let mut changed = false;
                for (to, word) in bits[p].iter_mut().zip(&from) {
                    if *to | word != *to {
                        *to |= word;
                        changed = true;
                    }
                }
                if changed {
                    queue.push_back(p);
                }
            }
        }
        TypeCaps {
            types,
            ifaces,
            bits,
        }
    }

    /// The interfaces inside `ty`, each once.
    fn of(&self, ty: &'s Ty, out: &mut Vec<&'s str>) {
        let mut seen = vec![0u64; self.bits.first().map_or(1, Vec::len)];
        let add = |i: &'s str, out: &mut Vec<&'s str>| {
            if !out.contains(&i) {
                out.push(i);
            }
        };
        shallow(ty, &mut |named, cap| {
            if let Some(c) = cap {
                add(c, out);
            }
            if let Some(&t) = named.and_then(|n| self.types.get(n)) {
                for (k, word) in self.bits[t].iter().enumerate() {
                    seen[k] |= word;
                }
            }
        });
        for (i, iface) in self.ifaces.iter().enumerate() {
            if seen[i / 64] & (1 << (i % 64)) != 0 {
                add(iface, out);
            }
        }
    }
}

/// Calls `f(named, capability)` for each named type and capability in
/// `ty`'s structure, without entering named types.
fn shallow<'s>(ty: &'s Ty, f: &mut impl FnMut(Option<&'s str>, Option<&'s str>)) {
    match ty {
        Ty::Named { path } => f(Some(path), None),
        Ty::Capability { interface } => f(None, Some(interface)),
        Ty::Seq { elem, .. } | Ty::Array { elem, .. } => shallow(elem, f),
        Ty::Map { key, value, .. } => {
            shallow(key, f);
            shallow(value, f);
        }
        Ty::Option(inner) => shallow(inner, f),
        Ty::Stream { item, .. } => shallow(item, f),
        Ty::Result { ok, err } => {
            shallow(ok, f);
            shallow(err, f);
        }
        Ty::Tuple(items) => items.iter().for_each(|t| shallow(t, f)),
        _ => {}
    }
}

pub(crate) fn capabilities_of<'s>(
    caps: &TypeCaps<'s>,
    iface: &'s InterfaceDef,
) -> Vec<(usize, usize, &'s str)> {
    let mut out = Vec::new();
    for (m, method) in iface.methods.iter().enumerate() {
        for p in 0..method.args.len() + 2 {
            let mut found = Vec::new();
            caps.of(part_ty(method, p), &mut found);
            out.extend(found.into_iter().map(|i| (m, p, i)));
        }
    }
    out
}

/// The hops inside a method part's value to the first `interface` handle.
pub(crate) fn hops_to(schema: &Schema, ty: &Ty, target: &str) -> Vec<Hop> {
    let mut out = None;
    TypeWalk::new(schema).walk(ty, &mut |event, path| {
        if out.is_some() {
            return false;
        }
        if let Event::Capability { interface } = event {
            if interface == target {
                out = Some(hops(path));
            }
        }
        true
    });
    out.unwrap_or_default()
}
