//! Procedural macros for `remote-core`. Use them through `remote_core`.
use proc_macro::TokenStream;

/// Placeholder until the macro lands.
#[proc_macro_attribute]
pub fn remote(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Placeholder until the derive lands.
#[proc_macro_derive(Wire, attributes(wire, serde))]
pub fn derive_wire(_item: TokenStream) -> TokenStream {
    TokenStream::new()
}
