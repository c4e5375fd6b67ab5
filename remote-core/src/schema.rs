//! Interface descriptors: the structure of every remote trait and every type
//! that crosses the wire, as data.
//!
//! `#[remote]` submits an [`InterfaceEntry`] (for each non-generic trait or
//! inherent impl) and an [`ImplEntry`] (for each `#[remote] impl Trait for
//! Type`) with [`inventory`]. [`collect`] walks them into a [`Schema`], which
//! is what `remote-policy` checks and what `remote-policy schema` exports as
//! JSON (format `"remote-schema"`, version [`SCHEMA_VERSION`]).
//!
//! Type structure is produced by [`Wire::describe`](crate::Wire::describe),
//! so generic parameters are already resolved: `Option<Vec<Secret>>` shows
//! up as `Option(Seq(Named("app::Secret")))`.
//!
//! ```
//! use remote_core::schema::{SchemaBuilder, Ty};
//! let mut b = SchemaBuilder::new();
//! let ty = b.ty::<Option<Vec<String>>>();
//! assert_eq!(
//!     ty,
//!     Ty::Option(Box::new(Ty::Seq { elem: Box::new(Ty::String { max_len: None }), max_len: None }))
//! );
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[path = "schema_builder.rs"]
mod builder;
pub use builder::SchemaBuilder;

/// Version of the schema format produced by [`collect`]. Version 2 added
/// a type's serde attributes ([`TypeDef::serde`]), a field's declared type
/// ([`Ty::Opaque`]), and describes `std::time::Duration` as the struct that
/// crosses (version 1: a tuple); a version-1 schema still reads, and
/// `remote-policy diff` does not compare what it lacks.
pub const SCHEMA_VERSION: u32 = 2;

/// The structure of a type crossing the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Ty {
    /// `()`.
    Unit,
    /// `bool`.
    Bool,
    /// An integer.
    Int {
        /// Width in bits.
        bits: u8,
        /// Whether it is signed.
        signed: bool,
    },
    /// A float.
    Float {
        /// Width in bits.
        bits: u8,
    },
    /// `char`.
    Char,
    /// A UTF-8 string.
    String {
        /// Maximum length in bytes, where the type enforces one.
        max_len: Option<u64>,
    },
    /// A byte buffer.
    Bytes {
        /// Maximum length, where the type enforces one.
        max_len: Option<u64>,
    },
    /// A sequence (`Vec`, `VecDeque`, sets).
    Seq {
        /// Element type.
        elem: Box<Ty>,
        /// Maximum length, where the type enforces one.
        max_len: Option<u64>,
    },
    /// A fixed-size array.
    Array {
        /// Element type.
        elem: Box<Ty>,
        /// Length.
        len: u64,
    },
    /// A map.
    Map {
        /// Key type.
        key: Box<Ty>,
        /// Value type.
        value: Box<Ty>,
        /// Maximum number of entries, where the type enforces one.
        max_len: Option<u64>,
    },
    /// `Option<T>`. Serialized as `{"kind": "option", "inner": ...}`.
    #[serde(with = "serde_option")]
    Option(Box<Ty>),
    /// `Result<T, E>` as a value.
    Result {
        /// Ok type.
        ok: Box<Ty>,
        /// Err type.
        err: Box<Ty>,
    },
    /// A tuple. Serialized as `{"kind": "tuple", "items": [...]}`.
    #[serde(with = "serde_tuple")]
    Tuple(Vec<Ty>),
    /// A user struct or enum, defined in [`Schema::types`] under this key.
    Named {
        /// Key in [`Schema::types`].
        path: String,
    },
    /// A capability (`Remote<dyn Trait>`), defined in [`Schema::interfaces`].
    Capability {
        /// Key in [`Schema::interfaces`].
        interface: String,
    },
    /// A remote stream of items, pulled lazily by the receiver. On the
    /// wire it is a reference to a source object (PROTOCOL.md §5.1).
    Stream {
        /// Item type.
        item: Box<Ty>,
        /// Key in [`Schema::interfaces`] of the source's interface
        /// (`remote_core::stream::StreamSource<T>`, one method
        /// `next_batch`); absent in schemas written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// The toolkit's own error type (`remote_core::Error`).
    RemoteError,
    /// A type implementing `Wire` by hand without describing itself, or a
    /// field that code of its own encodes (`#[serde(with = "..")]`).
    Opaque {
        /// Rust type name (for a field: its owner's, then the field's).
        name: String,
        /// For a field encoded by code of its own: the field's declared
        /// type. What crosses is made from a value of it, so a secret it
        /// holds crosses too (the shape on the wire is the code's own).
        /// Absent for a hand-written `Wire`, and in schemas written before
        /// it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        declared: Option<Box<Ty>>,
    },
}

/// Where an item is defined in source.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    /// Source file, as `file!()` gives it.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

/// A remote interface (trait, or inherent impl exposed with `#[remote]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceDef {
    /// Unique key: module path and name, with concrete generic arguments.
    pub path: String,
    /// Short name (`Chat`).
    pub name: String,
    /// Methods, in declaration order.
    pub methods: Vec<MethodDef>,
    /// Where the trait is declared.
    pub location: Location,
    /// Doc comment.
    #[serde(default)]
    pub doc: String,
}

/// One method of a remote interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodDef {
    /// Rust name.
    pub name: String,
    /// Identifier on the wire (the `method` field of a call).
    pub wire_name: String,
    /// `true` for `async fn`, `false` for a blocking `fn`.
    pub is_async: bool,
    /// Arguments, in order.
    pub args: Vec<ArgDef>,
    /// The `T` of `Result<T, E>`.
    pub returns: Ty,
    /// The `E` of `Result<T, E>`.
    pub error: Ty,
    /// Marked `#[remote(requires_auth)]`: callable only on an authenticated connection.
    #[serde(default)]
    pub requires_auth: bool,
    /// `#[remote(cache(..))]` or `#[remote(invalidates(..))]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheDef>,
    /// Where the method is declared.
    pub location: Location,
    /// Doc comment.
    #[serde(default)]
    pub doc: String,
}

/// How a method takes part in client caching (see CACHING.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheDef {
    /// Results are cached by proxies for `ttl_ms` milliseconds.
    Cached {
        /// Time to live of an entry.
        ttl_ms: u64,
    },
    /// A call drops the entries of these methods (wire names) on its object.
    Invalidates {
        /// Wire names of the cached methods.
        methods: Vec<String>,
    },
}

/// One argument of a method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDef {
    /// Argument name.
    pub name: String,
    /// Its type.
    pub ty: Ty,
}

/// A user struct or enum that crosses by value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDef {
    /// Unique key (Rust type name with generic arguments).
    pub path: String,
    /// Short name.
    pub name: String,
    /// Struct fields or enum variants.
    pub kind: TypeKind,
    /// Marked `#[wire(secret)]`: must never flow to a peer.
    #[serde(default)]
    pub secret: bool,
    /// Where it is declared.
    pub location: Location,
    /// serde's container attributes that change how it crosses, as
    /// written: `transparent`, `untagged`, `tag = "t"`, `content = "c"`,
    /// `rename_all = ".."`, and `deny_unknown_fields` (empty: serde's
    /// default form, a map of fields, a variant by name). Absent in
    /// schemas written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serde: Vec<String>,
}

/// Shape of a [`TypeDef`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TypeKind {
    /// A struct (tuple struct fields are named `0`, `1`, ...).
    Struct {
        /// Fields.
        fields: Vec<FieldDef>,
    },
    /// An enum.
    Enum {
        /// Variants.
        variants: Vec<VariantDef>,
    },
}

/// A struct field or enum variant field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// Field name (`0`, `1`, ... for tuple fields).
    pub name: String,
    /// Its type.
    pub ty: Ty,
    /// Marked `#[wire(secret)]`.
    #[serde(default)]
    pub secret: bool,
    /// Has `#[serde(default)]` (on the field or its container) or
    /// `#[serde(skip_deserializing)]`: a receiver fills it in when the
    /// sender leaves it out.
    #[serde(default, skip_serializing_if = "is_false")]
    pub default: bool,
    /// Where the field is declared, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An enum variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantDef {
    /// Variant name.
    pub name: String,
    /// Its fields (empty for a unit variant).
    pub fields: Vec<FieldDef>,
}

/// A concrete type served through an interface (`#[remote] impl Chat for ChatRoom`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImplDef {
    /// The implementing type.
    pub type_name: String,
    /// Key in [`Schema::interfaces`].
    pub interface: String,
    /// Where the impl is.
    pub location: Location,
}

/// Every interface, type and implementation known to a program.
///
/// It serializes to the JSON that `remote-policy schema` exports:
///
/// ```
/// let schema = remote_core::schema::collect();
/// let json = serde_json::to_value(&schema).unwrap();
/// assert_eq!(json["format"], "remote-schema");
/// assert_eq!(json["version"], remote_core::schema::SCHEMA_VERSION);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Always `"remote-schema"`.
    pub format: String,
    /// [`SCHEMA_VERSION`].
    pub version: u32,
    /// Interfaces by key.
    pub interfaces: BTreeMap<String, InterfaceDef>,
    /// Types by key.
    pub types: BTreeMap<String, TypeDef>,
    /// Implementations registered with `#[remote] impl Trait for Type`.
    pub impls: Vec<ImplDef>,
    /// Keys that two different types were described under, told apart by
    /// their `TypeId` (two types of one path, as `std::any::type_name`
    /// gives it: items in two blocks of one function, a generic of two
    /// such, one macro expanded twice, or two versions of one crate; or
    /// two interfaces of one module path and name). Only the first is in
    /// `types` or `interfaces`, so a checker must refuse the schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
}

/// Two declarations described under one key ([`Schema::conflicts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The key.
    pub key: String,
    /// The declaration described first (the one the schema holds).
    pub first: Location,
    /// Another one.
    pub other: Location,
}

impl Default for Schema {
    fn default() -> Self {
        Schema {
            format: "remote-schema".to_owned(),
            version: SCHEMA_VERSION,
            interfaces: BTreeMap::new(),
            types: BTreeMap::new(),
            impls: Vec::new(),
            conflicts: Vec::new(),
        }
    }
}

/// Submitted by `#[remote]` for every non-generic interface.
#[derive(Debug)]
pub struct InterfaceEntry {
    /// Defines the interface in a builder and returns its `Ty::Capability`.
    pub describe: fn(&mut SchemaBuilder) -> Ty,
}

/// Submitted by `#[remote] impl Trait for Type`, and by an inherent
/// `#[remote] impl Type` for the interface it generates.
#[derive(Debug)]
pub struct ImplEntry {
    /// The implementing type's name.
    pub type_name: &'static str,
    /// Defines the interface; returns its `Ty::Capability`.
    pub interface: fn(&mut SchemaBuilder) -> Ty,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

inventory::collect!(InterfaceEntry);
inventory::collect!(ImplEntry);

/// Registers concrete instances of generic interfaces, so the schema and
/// the policy checker see them: `#[remote]` registers every non-generic
/// trait by itself, but `dyn RemoteList<Message>` only exists once a program
/// names it.
///
/// ```
/// use remote_core::collections::RemoteList;
/// remote_core::register_interface!(dyn RemoteList<String>);
///
/// let schema = remote_core::schema::collect();
/// assert!(schema.interfaces.values().any(|i| i.path.contains("RemoteList")));
/// ```
#[macro_export]
macro_rules! register_interface {
    ($($ty:ty),+ $(,)?) => {
        $(
            $crate::__private::inventory::submit! {
                $crate::schema::InterfaceEntry { describe: <$ty as $crate::Interface>::describe }
            }
        )+
    };
}

/// Collects every interface and implementation registered in this program.
///
/// ```
/// use remote_core::{remote, schema, Error};
///
/// #[remote]
/// pub trait Clock {
///     async fn now_ms(&self) -> Result<u64, Error>;
/// }
///
/// let s = schema::collect();
/// assert_eq!(s.format, "remote-schema");
/// let clock = s.interfaces.values().find(|i| i.name == "Clock").expect("registered");
/// assert_eq!(clock.methods[0].wire_name, "now_ms");
/// ```
pub fn collect() -> Schema {
    let mut b = SchemaBuilder::new();
    collect_into(&mut b);
    b.finish()
}

/// [`collect`] into a builder of yours, which may describe more: a key
/// described again by another type is then a [`Conflict`] of the one
/// schema.
///
/// ```
/// use remote_core::collections::RemoteList;
/// use remote_core::schema::{self, SchemaBuilder};
/// use remote_core::Remote;
///
/// let mut b = SchemaBuilder::new();
/// schema::collect_into(&mut b);
/// b.ty::<Remote<dyn RemoteList<String>>>();
/// let s = b.finish();
/// assert!(s.interfaces.keys().any(|k| k.contains("RemoteList")));
/// assert!(s.conflicts.is_empty());
/// ```
pub fn collect_into(b: &mut SchemaBuilder) {
    for entry in inventory::iter::<InterfaceEntry> {
        (entry.describe)(b);
    }
    for entry in inventory::iter::<ImplEntry> {
        let interface = match (entry.interface)(b) {
            Ty::Capability { interface } => interface,
            other => format!("{other:?}"),
        };
        b.add_impl(ImplDef {
            type_name: entry.type_name.to_owned(),
            interface,
            location: Location {
                file: entry.file.to_owned(),
                line: entry.line,
                column: 1,
            },
        });
    }
}

/// A short name from a Rust type path (`app::chat::Chat<u8>` → `Chat<u8>`).
pub fn short_name(path: &str) -> String {
    let base = path.split('<').next().unwrap_or(path);
    let start = base.rfind("::").map(|i| i + 2).unwrap_or(0);
    path[start..].to_owned()
}

// `Ty` is internally tagged; its two newtype variants are written as objects
// with one field instead. Derived, `Option(Box<Ty>)` would serialize its
// inner `Ty` through serde's tagging serializer, which wraps the outer one,
// so every nesting level asks for a new serializer type and any crate that
// serializes a `Ty` fails to compile (E0275); and a tagged newtype cannot
// hold a sequence at all, so `Tuple(Vec<Ty>)` would fail at run time.
mod serde_option {
    use super::Ty;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Ref<'a> {
        inner: &'a Ty,
    }

    #[derive(Deserialize)]
    struct Own {
        inner: Box<Ty>,
    }

    #[allow(clippy::borrowed_box)] // the signature serde's `with` requires
    pub(super) fn serialize<S: Serializer>(inner: &Box<Ty>, s: S) -> Result<S::Ok, S::Error> {
        Ref { inner }.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Ty>, D::Error> {
        Own::deserialize(d).map(|o| o.inner)
    }
}

mod serde_tuple {
    use super::Ty;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Ref<'a> {
        items: &'a [Ty],
    }

    #[derive(Deserialize)]
    struct Own {
        items: Vec<Ty>,
    }

    pub(super) fn serialize<S: Serializer>(items: &[Ty], s: S) -> Result<S::Ok, S::Error> {
        Ref { items }.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ty>, D::Error> {
        Own::deserialize(d).map(|o| o.items)
    }
}

#[cfg(test)]
mod serde_tests {
    use super::Ty;

    #[test]
    fn nested_option_and_tuple_round_trip_through_json() {
        let ty = Ty::Option(Box::new(Ty::Tuple(vec![
            Ty::Option(Box::new(Ty::Unit)),
            Ty::Tuple(vec![]),
            Ty::String { max_len: Some(3) },
        ])));
        let json = serde_json::to_string(&ty).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"option","inner":{"kind":"tuple","items":[{"kind":"option","inner":{"kind":"unit"}},{"kind":"tuple","items":[]},{"kind":"string","max_len":3}]}}"#
        );
        assert_eq!(serde_json::from_str::<Ty>(&json).unwrap(), ty);
    }
}

#[cfg(test)]
mod stream_tests {
    use super::{SchemaBuilder, Ty};
    use crate::stream::RemoteStream;
    use crate::Wire;

    /// PROTOCOL.md §5.1: the schema names a stream's source interface and
    /// its one wire method, so a client generated from it knows how to pull.
    #[test]
    fn a_stream_names_its_source_interface() {
        let mut b = SchemaBuilder::new();
        let ty = RemoteStream::<u32>::describe(&mut b);
        let Ty::Stream { item, source } = ty else {
            panic!("not a stream: {ty:?}")
        };
        assert!(matches!(
            *item,
            Ty::Int {
                bits: 32,
                signed: false
            }
        ));
        let key = source.expect("the source interface is named");
        assert_eq!(key, "remote_core::stream::StreamSource<u32>");
        let schema = b.finish();
        let iface = &schema.interfaces[&key];
        assert_eq!(iface.methods.len(), 1);
        assert_eq!(iface.methods[0].wire_name, "next_batch");
        // An old schema without `source` still reads.
        let old: Ty = serde_json::from_str(r#"{"kind":"stream","item":{"kind":"bool"}}"#).unwrap();
        assert!(matches!(old, Ty::Stream { source: None, .. }));
    }
}
