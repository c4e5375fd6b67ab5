//! Interface descriptions as data: `#[remote]` generates a table of
//! [`MethodDesc`]s (names, flags, and one function pointer per type), and
//! [`describe_interface`], compiled once here, turns it into the schema's
//! [`InterfaceDef`]. Generated code thus holds no schema-building code.

use std::marker::PhantomData;

use crate::cache::CacheRole;
use crate::schema::{ArgDef, CacheDef, InterfaceDef, Location, MethodDef, SchemaBuilder, Ty};
use crate::RemoteErrorType;

/// Describes one type in a schema (`SchemaBuilder::ty::<T>` and the like).
pub type DescribeFn = fn(&mut SchemaBuilder) -> Ty;

/// Where an item was declared, as `file!()`, `line!()` and `column!()` give it.
#[derive(Debug, Clone, Copy)]
pub struct SourceDesc {
    /// Source file.
    pub file: &'static str,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl SourceDesc {
    fn location(&self) -> Location {
        Location {
            file: self.file.to_owned(),
            line: self.line,
            column: self.column,
        }
    }
}

/// One method of a `#[remote]` trait, as data.
#[derive(Debug, Clone, Copy)]
pub struct MethodDesc<'a> {
    /// The Rust name.
    pub name: &'static str,
    /// The name on the wire.
    pub wire_name: &'static str,
    /// `async fn` (else a blocking `fn`).
    pub is_async: bool,
    /// `#[remote(requires_auth)]`.
    pub requires_auth: bool,
    /// `#[remote(cache(..))]` or `#[remote(invalidates(..))]`.
    pub cache: Option<&'a CacheRole>,
    /// Argument names and types.
    pub args: &'a [(&'static str, DescribeFn)],
    /// The success type.
    pub returns: DescribeFn,
    /// The error type.
    pub error: DescribeFn,
    /// Where the method is declared.
    pub source: SourceDesc,
    /// Its doc comment.
    pub doc: &'static str,
}

/// A `#[remote]` trait, as data.
#[derive(Debug, Clone, Copy)]
pub struct InterfaceDesc<'a> {
    /// Where the trait is declared.
    pub source: SourceDesc,
    /// Its doc comment.
    pub doc: &'static str,
    /// Its methods, in declaration order.
    pub methods: &'a [MethodDesc<'a>],
}

/// Defines the interface `key` (shown as `name`, its identity `id`:
/// `TypeId::of::<dyn Trait>()`) in `b` from its table, describing each
/// method's types in declaration order; returns its `Ty::Capability`.
pub fn describe_interface(
    b: &mut SchemaBuilder,
    key: String,
    name: String,
    id: std::any::TypeId,
    desc: &InterfaceDesc<'_>,
) -> Ty {
    let at = desc.source.location();
    b.define_interface_at(key.clone(), id, &at, |b| InterfaceDef {
        path: key,
        name,
        methods: desc.methods.iter().map(|m| method_def(b, m)).collect(),
        location: at.clone(),
        doc: desc.doc.to_owned(),
    })
}

fn method_def(b: &mut SchemaBuilder, m: &MethodDesc<'_>) -> MethodDef {
    let args = m
        .args
        .iter()
        .map(|(name, ty)| ArgDef {
            name: (*name).to_owned(),
            ty: ty(b),
        })
        .collect();
    let returns = (m.returns)(b);
    let error = (m.error)(b);
    MethodDef {
        name: m.name.to_owned(),
        wire_name: m.wire_name.to_owned(),
        is_async: m.is_async,
        args,
        returns,
        error,
        requires_auth: m.requires_auth,
        cache: m.cache.map(|c| match c {
            CacheRole::Cached { ttl_ms } => CacheDef::Cached { ttl_ms: *ttl_ms },
            CacheRole::Invalidates(ms) => CacheDef::Invalidates {
                methods: ms.iter().map(|m| (*m).to_owned()).collect(),
            },
        }),
        location: m.source.location(),
        doc: m.doc.to_owned(),
    }
}

/// The unit return type (a method without `-> Result<..>`).
pub fn unit_ty(_: &mut SchemaBuilder) -> Ty {
    Ty::Unit
}

/// The error of a method without `-> Result<..>`.
pub fn remote_error_ty(_: &mut SchemaBuilder) -> Ty {
    Ty::RemoteError
}

/// The error type's describer of a method's `Result<T, E>`, `E` found by
/// inference (the type may be written through an alias: `Result<T>`).
pub fn error_of<T, E: RemoteErrorType>(_: PhantomData<Result<T, E>>) -> DescribeFn {
    E::describe
}

/// Implemented by `Result<T, E>` for the `T` and `E` a method's signature
/// writes: not by a `Result` alias that wraps them, whose values the
/// schema and the policy check would not see.
#[diagnostic::on_unimplemented(
    message = "the return type `{Self}` is not a `Result` of the `{T}` and `{E}` written",
    label = "an alias that wraps what the method returns",
    note = "`#[remote]` describes the types a signature writes (for the schema and the policy check): a `Result` alias may fix the error type, but must not wrap the value or the error; write the type that crosses, e.g. `Result<(T, Extra), E>`"
)]
pub trait ResultOf<T, E> {}

impl<T, E> ResultOf<T, E> for Result<T, E> {}

/// Checks that a method's return type `R` is `Result<T, E>`, `T` and `E`
/// as its signature writes them ([`ResultOf`]).
pub fn returns_written<R: ResultOf<T, E>, T, E>() {}
