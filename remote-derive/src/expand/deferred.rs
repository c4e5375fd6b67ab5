//! The hidden deferred implementation (`__ChatDeferred`): the trait
//! implemented on the object a local call in flight will return, so a
//! pipelined call on a local object gives a usable promise at once
//! (remote-core's `deferred.rs`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use super::shared::{dyn_and_path, guarded_where, type_args_tuple};
use super::trait_def::return_type;
use crate::ast::{Method, RemoteTrait};

/// The deferred implementation's name.
pub(super) fn deferred_ident(trait_ident: &Ident) -> Ident {
    format_ident!("__{}Deferred", trait_ident)
}

/// `struct __ChatDeferred(Deferred<dyn Chat>)` and its implementation of
/// the trait: each method waits for the object, then calls it there, or
/// fails with the local call's error in the method's own error type.
pub(crate) fn deferred(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let ident = t.ident();
    let d = deferred_ident(ident);
    let client = &t.client;
    let (impl_g, ty_g, where_clause) = t.item.generics.split_for_impl();
    let (dyn_ty, trait_path) = dyn_and_path(t);
    let guard = guarded_where(t, p);
    let args = type_args_tuple(t);
    let methods = t
        .methods
        .iter()
        .map(|m| deferred_method(m, &dyn_ty, &trait_path, p));
    quote! {
        #[doc(hidden)]
        struct #d #impl_g (#p::Deferred<#dyn_ty>) #where_clause;

        impl #impl_g #p::ImplementedWithRemote<#client #ty_g, #args> for #d #ty_g #where_clause {}

        impl #impl_g #trait_path for #d #ty_g #guard {
            #(#methods)*
        }
    }
}

fn deferred_method(
    m: &Method,
    dyn_ty: &TokenStream,
    trait_path: &TokenStream,
    p: &TokenStream,
) -> TokenStream {
    let ident = &m.ident;
    let args = m.typed_args();
    let names = m.args.iter().map(|a| &a.ident);
    let ret = return_type(&m.item.sig.output);
    let span = m.ident.span();
    if m.is_async {
        quote_spanned! {span=>
            fn #ident(&self, #(#args),*) -> #p::BoxFuture<'_, #ret> {
                #p::Box::pin(async move {
                    match self.0.object().await {
                        #p::Ok(__obj) => <#dyn_ty as #trait_path>::#ident(&*__obj, #(#names),*).await,
                        #p::Err(__e) => <#ret as #p::Failed>::failed(__e),
                    }
                })
            }
        }
    } else {
        quote_spanned! {span=>
            fn #ident(&self, #(#args),*) -> #ret {
                match self.0.object_blocking() {
                    #p::Ok(__obj) => <#dyn_ty as #trait_path>::#ident(&*__obj, #(#names),*),
                    #p::Err(__e) => <#ret as #p::Failed>::failed(__e),
                }
            }
        }
    }
}
