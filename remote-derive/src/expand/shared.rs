//! Pieces every generated item uses: the dispatcher's name, the trait as a
//! type and a path, the guarded `where` clause, and source locations.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use crate::ast::RemoteTrait;

pub(super) fn dispatch_ident(trait_ident: &Ident) -> Ident {
    format_ident!("__{}Dispatch", trait_ident)
}

/// `dyn Chat<T>` as a type, and `Chat<T>` as a trait path.
pub(super) fn dyn_and_path(t: &RemoteTrait) -> (TokenStream, TokenStream) {
    let ident = t.ident();
    let (_, ty_g, _) = t.item.generics.split_for_impl();
    (quote!(dyn #ident #ty_g), quote!(#ident #ty_g))
}

/// The trait's `where` clause plus, for every type in a signature, a
/// `for<'__w> Ty: Wire` (or, for an error type, `RemoteErrorType`)
/// predicate. The proxy's and the dispatcher's impls carry it, so a type
/// that cannot cross is assumed to within them and is reported once, by the
/// describer (see [`dispatch`](super::dispatch::dispatch)), not once per
/// use; the `Interface` impl reaches them through `__private::Checked` (see
/// remote-core's `checked.rs`). The `for<'__w>` keeps the predicate from
/// being a trivial (global) bound, which stable Rust would reject on its own.
pub(super) fn guarded_where(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let mut preds: Vec<TokenStream> = Vec::new();
    if let Some(w) = &t.item.generics.where_clause {
        preds.extend(w.predicates.iter().map(|pr| quote!(#pr)));
    }
    for m in &t.methods {
        for a in &m.args {
            let ty = &a.ty;
            preds.push(quote!(for<'__w> #ty: #p::Wire));
        }
        if let Some(r) = &m.ret {
            let ok = &r.ok;
            preds.push(quote!(for<'__w> #ok: #p::Wire));
            // A `Result<T>` alias names no error type; its uses check it.
            if let Some(e) = &r.err {
                preds.push(quote!(for<'__w> #e: #p::RemoteErrorType));
            }
        }
    }
    if preds.is_empty() {
        quote!()
    } else {
        quote!(where #(#preds),*)
    }
}

/// `(T, U,)`: the trait's type parameters as a tuple, the second argument of
/// its `RemoteImpl` marker.
pub(super) fn type_args_tuple(t: &RemoteTrait) -> TokenStream {
    let params = t.item.generics.type_params().map(|tp| &tp.ident);
    quote!((#(#params,)*))
}

/// A `Vec` of `items` without the prelude's `vec!`.
pub(crate) fn vec_expr(items: Vec<TokenStream>, p: &TokenStream) -> TokenStream {
    if items.is_empty() {
        quote!(#p::Vec::new())
    } else {
        quote!(<[_]>::into_vec(#p::Box::new([#(#items),*])))
    }
}

/// A `SourceDesc` for the item at `span` (`file!`/`line!` spanned there,
/// so they name the user's item, not the `#[remote]` line).
pub(crate) fn source_desc(span: proc_macro2::Span, p: &TokenStream) -> TokenStream {
    quote_spanned! {span=>
        #p::SourceDesc {
            file: ::core::file!(),
            line: ::core::line!(),
            column: ::core::column!(),
        }
    }
}

/// A `Location` expression for the item at `span` (`file!`/`line!` spanned
/// there, so they name the user's item, not the `#[remote]` line).
pub(crate) fn location(span: proc_macro2::Span, p: &TokenStream) -> TokenStream {
    quote_spanned! {span=>
        #p::Location {
            file: #p::ToString::to_string(::core::file!()),
            line: ::core::line!(),
            column: ::core::column!(),
        }
    }
}
