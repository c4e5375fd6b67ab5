//! Procedural macros of `remote-core`: `#[remote]` and `#[derive(Wire)]`.
//!
//! Use them through `remote_core` (`use remote_core::{remote, Wire};`); the
//! generated code names `remote_core`. The guide with runnable examples, the
//! generated names and an expansion sketch is the `remote_core::guide`
//! module.

use proc_macro::TokenStream;

mod ast;
mod attr;
mod cache;
mod ctxt;
mod expand;
mod impl_block;
mod valid;
mod wire;
mod wire_field;

/// Makes a trait callable across a connection, or registers an impl block.
///
/// - On a trait `Chat`: every method takes `&self` and returns
///   `Result<T, E>` (`E` is `remote_core::Error` or a `Wire` error type with
///   `From<remote_core::Error>`), with `Wire` argument and result types.
///   `async fn` methods become `fn m(..) -> BoxFuture<'_, Result<T, E>>` so
///   the trait stays usable as `dyn Chat`; plain `fn` methods are blocking.
///   Generates `ChatClient` (the proxy, which implements `Chat`) and
///   `impl Interface for dyn Chat`, and registers the interface for the
///   schema. Method options: `#[remote(name = "wire_name")]`,
///   `#[remote(requires_auth)]`, `#[remote(priority = high)]` (or `low`,
///   `normal`: the class the method's calls wait in when the server's
///   handlers take turns, see `remote_core::Priority`).
/// - On `impl Chat for ChatRoom`: write the methods as `async fn`; they are
///   boxed to match the trait, and the implementation is registered.
/// - On an inherent `impl ChatRoom`: its `pub` `&self` methods become the
///   trait `ChatRoomRemote` (implemented by `ChatRoom`) with the proxy
///   `ChatRoomClient`; `#[remote(skip)]` keeps a method local. The block is
///   registered as an implementation of `ChatRoomRemote`, like
///   `impl Trait for Type` (so the policy checker's default roots include it).
///
/// Item option: `#[remote(crate = "path::to::remote_core")]` when the crate
/// is renamed. See `remote_core::guide` for examples and the full list of
/// generated items.
#[proc_macro_attribute]
pub fn remote(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::entry(args.into(), item.into()).into()
}

/// Lets a struct or enum cross a connection by value.
///
/// Implements `serde::Serialize`, `serde::Deserialize` (do not derive them
/// as well; `#[serde(...)]` attributes work as usual) and
/// `remote_core::Wire`, whose `describe` gives the type's fields to the
/// schema and the policy checker. Every field type must be `Wire`.
///
/// `#[wire(secret)]` on the type or a field marks data that must never flow
/// to a peer (the policy checker enforces it); on an enum variant it marks
/// every field of the variant (a unit variant has none: an error).
/// `#[wire(crate = "path")]` (on the type only) names a renamed
/// `remote_core`. Any other `#[wire(...)]` option is an error, wherever it
/// is (a `#[serde(skip)]` field included).
///
/// The description must be what crosses the wire, so:
/// - `#[serde(into = "..")]`, `from`, `try_from` and `remote` on the type
///   are errors: serde would encode another type than these fields.
///   Implement `Wire` (and serde's traits) by hand, with a `describe` of
///   the type that crosses (`b.ty::<Target>()`).
/// - A field with `#[serde(with = "..")]`, `serialize_with`,
///   `deserialize_with` or `getter` is described as `Ty::Opaque` (named
///   `path::Type.field (#[serde(with)])`, or `path::Type.Variant.field ..`
///   in an enum): other code decides what crosses, so the policy checker
///   reports it as `unchecked-type` (and, flowing in, as `unbounded-input`)
///   until a policy entry accepts it.
/// - The same attributes on an enum variant are errors.
///
/// See `remote_core::guide`.
#[proc_macro_derive(Wire, attributes(wire, serde))]
pub fn derive_wire(item: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(item) {
        Ok(input) => wire::derive(input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[cfg(test)]
mod tests;
