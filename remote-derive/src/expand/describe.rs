//! The interface's schema (`Interface::describe`) and its registration.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Ident;

use super::shared::{dispatch_ident, dyn_and_path, source_desc};
use crate::ast::{Method, RemoteTrait};

/// Body of `Interface::describe`: the spanned `Wire` assertions, then the
/// `InterfaceDef`.
pub(super) fn describe_body(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let ident = t.ident();
    let ident_str = ident.to_string();
    let params: Vec<&Ident> = t.item.generics.type_params().map(|tp| &tp.ident).collect();
    let (key, name) = if params.is_empty() {
        (
            quote!(#p::ToString::to_string(#p::concat!(#p::module_path!(), "::", #ident_str))),
            quote!(#p::ToString::to_string(#ident_str)),
        )
    } else {
        (
            quote! {{
                let mut key = #p::ToString::to_string(#p::concat!(#p::module_path!(), "::"));
                key.push_str(&name);
                key
            }},
            quote! {{
                let mut name = #p::ToString::to_string(#ident_str);
                name.push('<');
                #(
                    if !name.ends_with('<') { name.push_str(", "); }
                    name.push_str(::core::any::type_name::<#params>());
                )*
                name.push('>');
                name
            }},
        )
    };
    let methods = t.methods.iter().map(|m| method_desc(m, p));
    let doc = &t.doc;
    let source = source_desc(ident.span(), p);
    let (dyn_ty, _) = dyn_and_path(t);
    quote! {
        let name: #p::String = #name;
        let key: #p::String = #key;
        let id = ::core::any::TypeId::of::<#dyn_ty>();
        #p::describe_interface(b, key, name, id, &#p::InterfaceDesc {
            source: #source,
            doc: #doc,
            methods: &[#(#methods),*],
        })
    }
}

/// A method's `MethodDesc`: names and flags as literals, each type as a
/// `fn(&mut SchemaBuilder) -> Ty` pointer.
fn method_desc(m: &Method, p: &TokenStream) -> TokenStream {
    let name = m.ident.to_string().trim_start_matches("r#").to_owned();
    let wire = &m.wire_name;
    let is_async = m.is_async;
    let auth = m.requires_auth;
    let doc = &m.doc;
    let args = m.args.iter().map(|a| {
        let (n, ty) = (&a.name, &a.ty);
        let f = quote_spanned!(ty.span()=> #p::describe_wire::<#ty>);
        quote!((#n, #f as #p::DescribeFn))
    });
    let (returns, error) = match &m.ret {
        // The types as written are what is described, so the whole return
        // type must be a `Result` of them: an alias that wraps the value
        // (`type Result<T> = std::result::Result<(T, SessionKey), Error>`)
        // sent the key with every reply while the schema said `T`, and the
        // policy check passed (a review). Such an alias is refused here.
        Some(r) => {
            let (ok, full) = (&r.ok, &r.full);
            let err = match &r.err {
                Some(e) => quote_spanned!(e.span()=> {
                    #p::returns_written::<#full, #ok, #e>();
                    #p::describe_error::<#e>
                }),
                // `Result<T>` alias: let inference find `E`.
                None => quote_spanned!(ok.span()=> {
                    #p::returns_written::<#full, #ok, _>();
                    #p::error_of(::core::marker::PhantomData::<#full>)
                }),
            };
            (quote_spanned!(ok.span()=> #p::describe_wire::<#ok>), err)
        }
        None => (quote!(#p::unit_ty), quote!(#p::remote_error_ty)),
    };
    let source = source_desc(m.ident.span(), p);
    let cache = match crate::cache::role(m, p) {
        Some(r) => quote!(#p::Some(#r)),
        None => quote!(#p::None),
    };
    quote! {
        #p::MethodDesc {
            name: #name,
            wire_name: #wire,
            is_async: #is_async,
            requires_auth: #auth,
            cache: #cache,
            args: &[#(#args),*],
            returns: #returns,
            error: #error,
            source: #source,
            doc: #doc,
        }
    }
}

/// `inventory::submit!` of the interface, for non-generic traits (a generic
/// trait has no single schema entry; each `Remote<dyn Store<u8>>` in a
/// signature describes its instance).
pub(crate) fn register(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    if t.is_generic() {
        return quote!();
    }
    let d = dispatch_ident(t.ident());
    quote! {
        #p::inventory::submit! {
            #p::InterfaceEntry { describe: #d::describe }
        }
    }
}
