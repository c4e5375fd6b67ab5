//! Error collection (serde_derive's `Ctxt`): every check records its errors
//! and goes on, so one expansion reports all mistakes at once.

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The errors found so far in one macro input.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// Records an error spanning `tokens`.
    pub(crate) fn error(&mut self, tokens: impl ToTokens, msg: impl std::fmt::Display) {
        self.errors.push(syn::Error::new_spanned(tokens, msg));
    }

    /// Records an error built elsewhere (e.g. by a syn parser).
    pub(crate) fn push(&mut self, e: syn::Error) {
        self.errors.push(e);
    }

    /// Whether nothing went wrong.
    pub(crate) fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// One `compile_error!` per recorded error.
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.errors
            .iter()
            .map(syn::Error::to_compile_error)
            .collect()
    }
}
