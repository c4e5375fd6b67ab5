//! [`SchemaBuilder`]: describing types and interfaces into a [`Schema`],
//! each key once, and two declarations under one key recorded as a
//! [`Conflict`].

use std::any::TypeId;
use std::collections::BTreeMap;

use super::{Conflict, ImplDef, InterfaceDef, Location, Schema, Ty, TypeDef};
use crate::Wire;

/// Builds a [`Schema`], following types and capabilities transitively.
///
/// Recursive types and cyclic capabilities are fine: a key is defined once.
///
/// ```
/// use remote_core::schema::{SchemaBuilder, Ty};
/// let mut b = SchemaBuilder::new();
/// let ty = b.ty::<Option<Vec<u8>>>();
/// assert!(matches!(ty, Ty::Option(_)));
/// let schema = b.finish();
/// assert!(schema.interfaces.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct SchemaBuilder {
    schema: Schema,
    /// Which type each type key was first described by.
    type_sites: BTreeMap<String, Site>,
    /// The same for interfaces.
    interface_sites: BTreeMap<String, Site>,
    /// Set when sizing ([`densest`](Self::densest)): the most bytes per
    /// item of the types described so far; interfaces are not followed.
    sizing: Option<usize>,
}

/// What described a key: its identity (`None` for a definition that
/// gives none) and its declaration (for the [`Conflict`]'s message).
#[derive(Debug)]
struct Site {
    id: Option<TypeId>,
    at: Location,
}

impl Site {
    fn known(id: TypeId, at: &Location) -> Self {
        Site {
            id: Some(id),
            at: at.clone(),
        }
    }

    fn unknown() -> Self {
        Site {
            id: None,
            at: Location::default(),
        }
    }
}

impl SchemaBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Describes `T` (and everything it refers to).
    pub fn ty<T: Wire>(&mut self) -> Ty {
        let ty = T::describe(self);
        if let Some(densest) = self.sizing {
            let nodes = self.min_nodes(&ty, &mut Vec::new()).max(1);
            self.sizing = Some(densest.max(std::mem::size_of::<T>().div_ceil(nodes)));
        }
        ty
    }

    /// Describes `T` only when sizing: for a field that other code than
    /// its type's encodes (`#[serde(with = "..")]`), described as opaque,
    /// whose type still counts in [`densest`](Self::densest).
    pub(crate) fn sized<T: Wire>(&mut self) {
        if self.sizing.is_some() {
            self.ty::<T>();
        }
    }

    /// The most bytes per msgpack item a type that a value of `T` may
    /// hold takes: over every type its description reaches through `ty`
    /// (itself included, but not the methods of the capabilities it holds:
    /// a capability decodes as a reference), its size over the fewest
    /// items a value of it is decoded from. For weighing what serde builds
    /// from its own buffer (`codec/weigh.rs`): each item of the buffer
    /// becomes at most an element or a box of some such type, spread over
    /// that type's items.
    pub(crate) fn densest<T: Wire>() -> usize {
        let mut b = SchemaBuilder {
            sizing: Some(0),
            ..SchemaBuilder::default()
        };
        b.ty::<T>();
        b.sizing.unwrap_or(0)
    }

    /// The fewest msgpack items a value of `ty` is decoded from (a lower
    /// bound): a struct's required fields' (not `Option`s: the derive lets
    /// them be left out; no header counted: a newtype
    /// and a flattened struct have none), an enum's fewest variant's (no
    /// tag counted), an array's elements' and header; one for the rest.
    /// `visiting`: the named types being counted (a type met again counts
    /// one).
    fn min_nodes(&self, ty: &Ty, visiting: &mut Vec<String>) -> usize {
        let fields = |b: &Self, fields: &[super::FieldDef], visiting: &mut Vec<String>| {
            fields
                .iter()
                // `#[derive(Wire)]` lets an `Option` field be left out
                // (red-team pass 38: `{}` decoded 768-byte structs of
                // 32 optional fields, counted at 24 bytes per item).
                .filter(|f| !f.default && !matches!(f.ty, Ty::Option(_)))
                .fold(0usize, |n, f| {
                    n.saturating_add(b.min_nodes(&f.ty, visiting))
                })
                .max(1)
        };
        match ty {
            Ty::Array { elem, len } => usize::try_from(*len)
                .unwrap_or(usize::MAX)
                .saturating_mul(self.min_nodes(elem, visiting))
                .saturating_add(1),
            Ty::Tuple(items) => items
                .iter()
                .fold(1usize, |n, t| n.saturating_add(self.min_nodes(t, visiting))),
            Ty::Named { path } => {
                let Some(def) = self.schema.types.get(path) else {
                    return 1;
                };
                if visiting.contains(path) {
                    return 1;
                }
                visiting.push(path.clone());
                let n = match &def.kind {
                    super::TypeKind::Struct { fields: f } => fields(self, f, visiting),
                    super::TypeKind::Enum { variants } => variants
                        .iter()
                        .map(|v| fields(self, &v.fields, visiting))
                        .min()
                        .unwrap_or(1),
                };
                visiting.pop();
                n
            }
            _ => 1,
        }
    }

    /// Defines a named type once; returns `Ty::Named` for it. `id` is the
    /// type's own identity (`TypeId::of::<Self>()`), `at` its declaration:
    /// a key described again by another type is recorded as a
    /// [`Conflict`] (the first definition stays). `#[derive(Wire)]`
    /// describes its types so. (Identity by declaration alone missed two
    /// types under one key that one declaration makes: `Gen<Token>` of two
    /// different `Token`s, or one macro expanded twice: found by a review.)
    ///
    /// ```
    /// use std::any::TypeId;
    /// use remote_core::schema::{Location, SchemaBuilder, TypeDef, TypeKind};
    /// let token = |b: &mut SchemaBuilder, id: TypeId, line: u32, secret: bool| {
    ///     let at = Location { file: "src/lib.rs".into(), line, column: 1 };
    ///     b.define_type_at("app::Token".into(), id, &at, |_| TypeDef {
    ///         path: "app::Token".into(),
    ///         name: "Token".into(),
    ///         kind: TypeKind::Struct { fields: vec![] },
    ///         secret,
    ///         location: at.clone(),
    ///         serde: vec![],
    ///     })
    /// };
    /// let mut b = SchemaBuilder::new();
    /// token(&mut b, TypeId::of::<u8>(), 3, false);
    /// token(&mut b, TypeId::of::<u8>(), 3, false); // the same type again: fine
    /// token(&mut b, TypeId::of::<u16>(), 9, true); // another one under its path
    /// let schema = b.finish();
    /// assert!(!schema.types["app::Token"].secret);
    /// assert_eq!(schema.conflicts.len(), 1);
    /// assert_eq!(schema.conflicts[0].other.line, 9);
    /// ```
    pub fn define_type_at(
        &mut self,
        path: String,
        id: TypeId,
        at: &Location,
        f: impl FnOnce(&mut Self) -> TypeDef,
    ) -> Ty {
        self.define_type_by(path, Site::known(id, at), f)
    }

    /// Whether `key` was described already, by the same type or (a
    /// conflict, recorded once) by another; if not, records `site`.
    fn seen(
        sites: &mut BTreeMap<String, Site>,
        conflicts: &mut Vec<Conflict>,
        key: &str,
        site: Site,
    ) -> bool {
        let Some(first) = sites.get(key) else {
            sites.insert(key.to_owned(), site);
            return false;
        };
        if first.id != site.id && !conflicts.iter().any(|c| c.key == key && c.other == site.at) {
            conflicts.push(Conflict {
                key: key.to_owned(),
                first: first.at.clone(),
                other: site.at,
            });
        }
        true
    }

    /// Defines a named type once; returns `Ty::Named` for it. Without the
    /// type's identity, two such definitions of one key cannot be told
    /// apart (the first wins), though one against a type described with
    /// [`define_type_at`](Self::define_type_at) is a [`Conflict`]: prefer
    /// that.
    pub fn define_type(&mut self, path: String, f: impl FnOnce(&mut Self) -> TypeDef) -> Ty {
        self.define_type_by(path, Site::unknown(), f)
    }

    /// [`define_type_at`](Self::define_type_at) and
    /// [`define_type`](Self::define_type), described by `site`.
    fn define_type_by(
        &mut self,
        path: String,
        site: Site,
        f: impl FnOnce(&mut Self) -> TypeDef,
    ) -> Ty {
        let seen = Self::seen(
            &mut self.type_sites,
            &mut self.schema.conflicts,
            &path,
            site,
        );
        // A key is recorded in `seen` before it is described, so a
        // recursive type finds it there and is described once.
        if !seen {
            let def = f(self);
            self.schema.types.insert(path.clone(), def);
        }
        Ty::Named { path }
    }

    /// Defines an interface once; returns `Ty::Capability` for it. `id` is
    /// the interface's identity (`TypeId::of::<dyn Trait>()`), `at` its
    /// declaration: a key described again by another interface is
    /// recorded as a [`Conflict`], as with
    /// [`define_type_at`](Self::define_type_at).
    pub fn define_interface_at(
        &mut self,
        path: String,
        id: TypeId,
        at: &Location,
        f: impl FnOnce(&mut Self) -> InterfaceDef,
    ) -> Ty {
        self.define_interface_by(path, Site::known(id, at), f)
    }

    /// Defines an interface once; returns `Ty::Capability` for it.
    pub fn define_interface(
        &mut self,
        path: String,
        f: impl FnOnce(&mut Self) -> InterfaceDef,
    ) -> Ty {
        self.define_interface_by(path, Site::unknown(), f)
    }

    /// [`define_interface_at`](Self::define_interface_at) and
    /// [`define_interface`](Self::define_interface), described by `site`.
    fn define_interface_by(
        &mut self,
        path: String,
        site: Site,
        f: impl FnOnce(&mut Self) -> InterfaceDef,
    ) -> Ty {
        if self.sizing.is_some() {
            return Ty::Capability { interface: path };
        }
        if Self::seen(
            &mut self.interface_sites,
            &mut self.schema.conflicts,
            &path,
            site,
        ) {
            return Ty::Capability { interface: path };
        }
        let mut f = Some(f);
        self.define_interface_dyn(path, &mut |b| f.take().map(|f| f(b)))
    }

    /// [`define_interface`](SchemaBuilder::define_interface), compiled once:
    /// `f` is called at most once and returns `Some`.
    fn define_interface_dyn(
        &mut self,
        path: String,
        f: &mut dyn FnMut(&mut Self) -> Option<InterfaceDef>,
    ) -> Ty {
        if let Some(def) = f(self) {
            self.schema.interfaces.insert(path.clone(), def);
        }
        Ty::Capability { interface: path }
    }

    /// Records a served implementation.
    pub fn add_impl(&mut self, def: ImplDef) {
        if !self.schema.impls.contains(&def) {
            self.schema.impls.push(def);
        }
    }

    /// The schema built so far.
    pub fn finish(self) -> Schema {
        self.schema
    }
}
