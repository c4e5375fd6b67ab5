//! [`SchemaBuilder`]: describing types and interfaces into a [`Schema`],
//! each key once, and two declarations under one key recorded as a
//! [`Conflict`].

use std::collections::{BTreeMap, BTreeSet};

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
    in_progress: BTreeSet<String>,
    /// Where each type key described with a location was declared.
    type_sites: BTreeMap<String, Location>,
    /// The same for interfaces.
    interface_sites: BTreeMap<String, Location>,
}

impl SchemaBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Describes `T` (and everything it refers to).
    pub fn ty<T: Wire>(&mut self) -> Ty {
        T::describe(self)
    }

    /// Defines a named type once, declared `at`; returns `Ty::Named` for
    /// it. A key described again from another declaration is recorded as
    /// a [`Conflict`] (the first definition stays): `#[derive(Wire)]`
    /// describes its types so.
    ///
    /// ```
    /// use remote_core::schema::{Location, SchemaBuilder, TypeDef, TypeKind};
    /// let token = |b: &mut SchemaBuilder, line: u32, secret: bool| {
    ///     let at = Location { file: "src/lib.rs".into(), line, column: 1 };
    ///     b.define_type_at("app::Token".into(), &at, |_| TypeDef {
    ///         path: "app::Token".into(),
    ///         name: "Token".into(),
    ///         kind: TypeKind::Struct { fields: vec![] },
    ///         secret,
    ///         location: at.clone(),
    ///     })
    /// };
    /// let mut b = SchemaBuilder::new();
    /// token(&mut b, 3, false);
    /// token(&mut b, 3, false); // the same declaration again: fine
    /// token(&mut b, 9, true); // another one under the same path
    /// let schema = b.finish();
    /// assert!(!schema.types["app::Token"].secret);
    /// assert_eq!(schema.conflicts.len(), 1);
    /// assert_eq!(schema.conflicts[0].other.line, 9);
    /// ```
    pub fn define_type_at(
        &mut self,
        path: String,
        at: &Location,
        f: impl FnOnce(&mut Self) -> TypeDef,
    ) -> Ty {
        if Self::seen(&mut self.type_sites, &mut self.schema.conflicts, &path, at) {
            return Ty::Named { path };
        }
        self.define_type(path, f)
    }

    /// Whether `key` was described already, from `at` or (a conflict,
    /// recorded once) from elsewhere; if not, records `at`.
    fn seen(
        sites: &mut BTreeMap<String, Location>,
        conflicts: &mut Vec<Conflict>,
        key: &str,
        at: &Location,
    ) -> bool {
        let Some(first) = sites.get(key) else {
            sites.insert(key.to_owned(), at.clone());
            return false;
        };
        if first != at && !conflicts.iter().any(|c| c.key == key && c.other == *at) {
            conflicts.push(Conflict {
                key: key.to_owned(),
                first: first.clone(),
                other: at.clone(),
            });
        }
        true
    }

    /// Defines a named type once; returns `Ty::Named` for it. The first
    /// definition of a key wins, unchecked: prefer
    /// [`define_type_at`](Self::define_type_at).
    pub fn define_type(&mut self, path: String, f: impl FnOnce(&mut Self) -> TypeDef) -> Ty {
        if !self.schema.types.contains_key(&path) && self.in_progress.insert(path.clone()) {
            let def = f(self);
            self.in_progress.remove(&path);
            self.schema.types.insert(path.clone(), def);
        }
        Ty::Named { path }
    }

    /// Defines an interface once, declared `at`; returns
    /// `Ty::Capability` for it. A key described again from another
    /// declaration is recorded as a [`Conflict`], as with
    /// [`define_type_at`](Self::define_type_at).
    pub fn define_interface_at(
        &mut self,
        path: String,
        at: &Location,
        f: impl FnOnce(&mut Self) -> InterfaceDef,
    ) -> Ty {
        if Self::seen(
            &mut self.interface_sites,
            &mut self.schema.conflicts,
            &path,
            at,
        ) {
            return Ty::Capability { interface: path };
        }
        self.define_interface(path, f)
    }

    /// Defines an interface once; returns `Ty::Capability` for it.
    pub fn define_interface(
        &mut self,
        path: String,
        f: impl FnOnce(&mut Self) -> InterfaceDef,
    ) -> Ty {
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
        if !self.schema.interfaces.contains_key(&path) && self.in_progress.insert(path.clone()) {
            let def = f(self);
            self.in_progress.remove(&path);
            if let Some(def) = def {
                self.schema.interfaces.insert(path.clone(), def);
            }
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
