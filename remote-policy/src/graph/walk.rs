//! Walking a type's structure through the schema's named types: the
//! [`TypeWalk`], the [`Step`]s of its paths and the [`Event`]s it reports.

use std::collections::HashSet;

use remote_core::schema::{FieldDef, Schema, Ty, TypeDef, TypeKind};

use super::hop::Hop;

/// What [`TypeWalk`] reports while it walks a type.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'s> {
    /// Any type node, before its inside is walked.
    Ty(&'s Ty),
    /// A named type, found in the schema.
    Named(&'s TypeDef),
    /// A field of a named type (`variant` is set inside an enum).
    Field {
        /// The struct or enum.
        owner: &'s TypeDef,
        /// The enum variant, for an enum.
        variant: Option<&'s str>,
        /// The field.
        field: &'s FieldDef,
    },
    /// A named type that contains itself (reached again while inside it).
    Recursion(&'s TypeDef),
    /// A named type missing from the schema.
    Missing(&'s str),
    /// A capability handle.
    Capability {
        /// Interface key.
        interface: &'s str,
    },
    /// A type nested more than [`MAX_DEPTH`] steps deep: the walk does not
    /// enter it (so a pathological schema cannot overflow the stack), and
    /// the `unchecked-type` rule reports it.
    TooDeep(&'s Ty),
}

/// How many [`Step`]s deep a [`TypeWalk`] goes before it reports
/// [`Event::TooDeep`] instead of entering a type. A named type inside a
/// field costs two steps (`.field`, `Type`).
pub const MAX_DEPTH: usize = 256;

/// The policy key of a field: `app::User.password`, or
/// `app::Event.Joined.name` inside an enum variant.
///
/// ```
/// use remote_policy::graph::field_key;
/// assert_eq!(field_key("app::User", None, "password"), "app::User.password");
/// assert_eq!(field_key("app::Event", Some("Joined"), "0"), "app::Event.Joined.0");
/// ```
pub fn field_key(owner: &str, variant: Option<&str>, field: &str) -> String {
    match variant {
        Some(v) => format!("{owner}.{v}.{field}"),
        None => format!("{owner}.{field}"),
    }
}

/// One step of a [`TypeWalk`] inside a type: a [`Hop`] that borrows from
/// the schema, so walking allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step<'s> {
    /// A named type.
    Type(&'s str),
    /// An enum variant.
    Variant(&'s str),
    /// A field.
    Field(&'s str),
    /// A sequence or array element.
    Element,
    /// A map key.
    Key,
    /// A map value.
    Value,
    /// The inside of an `Option`.
    Some,
    /// The `Ok` of a `Result` value.
    Ok,
    /// The `Err` of a `Result` value.
    Err,
    /// A tuple element.
    Tuple(usize),
    /// A stream item.
    Item,
}

impl Step<'_> {
    /// The owned hop.
    ///
    /// ```
    /// use remote_policy::graph::{Hop, Step};
    /// assert_eq!(Step::Field("name").hop(), Hop::Field { name: "name".into() });
    /// ```
    pub fn hop(&self) -> Hop {
        match *self {
            Step::Type(path) => Hop::Type {
                path: path.to_owned(),
            },
            Step::Variant(name) => Hop::Variant {
                name: name.to_owned(),
            },
            Step::Field(name) => Hop::Field {
                name: name.to_owned(),
            },
            Step::Element => Hop::Element,
            Step::Key => Hop::Key,
            Step::Value => Hop::Value,
            Step::Some => Hop::Some,
            Step::Ok => Hop::Ok,
            Step::Err => Hop::Err,
            Step::Tuple(index) => Hop::Tuple { index },
            Step::Item => Hop::Item,
        }
    }
}

/// The owned hops of a walk path.
pub fn hops(steps: &[Step<'_>]) -> Vec<Hop> {
    steps.iter().map(Step::hop).collect()
}

/// Depth-first walk of a type's structure through the schema's named types,
/// each named type once per walk.
///
/// The callback gets each [`Event`] and the [`Step`]s from the walk's start;
/// it returns whether to walk inside.
///
/// ```
/// use remote_core::schema::{Schema, Ty};
/// use remote_policy::graph::{Event, Step, TypeWalk};
/// let ty = Ty::Option(Box::new(Ty::Capability { interface: "app::Room".into() }));
/// let schema = Schema::default();
/// let mut seen = Vec::new();
/// TypeWalk::new(&schema).walk(&ty, &mut |e, path| {
///     if let Event::Capability { interface } = e { seen.push((interface.to_owned(), path.to_vec())); }
///     true
/// });
/// assert_eq!(seen, vec![("app::Room".to_owned(), vec![Step::Some])]);
/// ```
#[derive(Debug)]
pub struct TypeWalk<'s> {
    schema: &'s Schema,
    path: Vec<Step<'s>>,
    /// Named types being walked (the depth-first stack), to see recursion.
    open: HashSet<&'s str>,
    seen: HashSet<&'s str>,
    /// Whether to walk the declared type of a field encoded by its own
    /// code ([`declared`](Self::declared)).
    declared: bool,
}

/// The callback of a [`TypeWalk`].
pub trait Visit<'s>: FnMut(Event<'s>, &[Step<'s>]) -> bool {}
impl<'s, F: FnMut(Event<'s>, &[Step<'s>]) -> bool> Visit<'s> for F {}

impl<'s> TypeWalk<'s> {
    /// A walk over `schema`'s types.
    pub fn new(schema: &'s Schema) -> Self {
        TypeWalk {
            schema,
            path: Vec::new(),
            open: HashSet::new(),
            seen: HashSet::new(),
            declared: false,
        }
    }

    /// Also walks the declared type of each field encoded by its own code
    /// (`#[serde(with = "..")]`): what its value holds crosses, in a shape
    /// of that code's. For the rules about what values hold (secrets), not
    /// their shape.
    pub fn declared(mut self) -> Self {
        self.declared = true;
        self
    }

    /// Walks `ty`.
    pub fn walk(&mut self, ty: &'s Ty, f: &mut impl Visit<'s>) {
        if self.path.len() >= MAX_DEPTH {
            f(Event::TooDeep(ty), &self.path);
            return;
        }
        if !f(Event::Ty(ty), &self.path) {
            return;
        }
        match ty {
            Ty::String { .. }
            | Ty::Bytes { .. }
            | Ty::Unit
            | Ty::Bool
            | Ty::Int { .. }
            | Ty::Float { .. }
            | Ty::Char
            | Ty::RemoteError => {}
            // Not its shape on the wire (the field's own code makes that),
            // but what that is made from: only a walk for what values hold
            // looks inside.
            Ty::Opaque {
                declared: Some(d), ..
            } if self.declared => self.walk(d, f),
            Ty::Opaque { .. } => {}
            Ty::Seq { elem, .. } | Ty::Array { elem, .. } => self.inside(Step::Element, elem, f),
            Ty::Map { key, value, .. } => {
                self.inside(Step::Key, key, f);
                self.inside(Step::Value, value, f);
            }
            Ty::Option(inner) => self.inside(Step::Some, inner, f),
            Ty::Result { ok, err } => {
                self.inside(Step::Ok, ok, f);
                self.inside(Step::Err, err, f);
            }
            Ty::Tuple(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.inside(Step::Tuple(index), item, f);
                }
            }
            Ty::Stream { item, .. } => self.inside(Step::Item, item, f),
            Ty::Capability { interface } => {
                f(Event::Capability { interface }, &self.path);
            }
            Ty::Named { path } => self.named(path, f),
            // A kind of type this checker does not know yet: the rules see
            // `Event::Ty` and treat it as unchecked.
            _ => {}
        }
    }

    fn inside(&mut self, step: Step<'s>, ty: &'s Ty, f: &mut impl Visit<'s>) {
        self.path.push(step);
        self.walk(ty, f);
        self.path.pop();
    }

    fn named(&mut self, path: &'s str, f: &mut impl Visit<'s>) {
        self.path.push(Step::Type(path));
        match self.schema.types.get(path) {
            None => {
                f(Event::Missing(path), &self.path);
            }
            Some(def) if self.open.contains(path) => {
                f(Event::Recursion(def), &self.path);
            }
            Some(def) => {
                if self.seen.insert(path) && f(Event::Named(def), &self.path) {
                    self.open.insert(path);
                    match &def.kind {
                        TypeKind::Struct { fields } => self.fields(def, None, fields, f),
                        TypeKind::Enum { variants } => {
                            for v in variants {
                                self.path.push(Step::Variant(&v.name));
                                self.fields(def, Some(&v.name), &v.fields, f);
                                self.path.pop();
                            }
                        }
                    }
                    self.open.remove(path);
                }
            }
        }
        self.path.pop();
    }

    fn fields(
        &mut self,
        owner: &'s TypeDef,
        variant: Option<&'s str>,
        fields: &'s [FieldDef],
        f: &mut impl Visit<'s>,
    ) {
        for field in fields {
            self.path.push(Step::Field(&field.name));
            if f(
                Event::Field {
                    owner,
                    variant,
                    field,
                },
                &self.path,
            ) {
                self.walk(&field.ty, f);
            }
            self.path.pop();
        }
    }
}
