//! `#[remote]` on impl blocks: `impl Trait for Type` (async methods boxed,
//! implementation registered) and inherent `impl Type` (an interface made
//! from the methods, for prototyping).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ItemImpl, ItemTrait, TraitItem, Type, Visibility};

use crate::ast::{Method, RemoteTrait};
use crate::attr::{self, MethodPlace};
use crate::ctxt::Ctxt;
use crate::{expand, valid};

/// `#[remote] impl Chat for ChatRoom { async fn ... }`.
pub(crate) fn trait_impl(cx: &mut Ctxt, mut item: ItemImpl, p: &TokenStream) -> TokenStream {
    if let Some((Some(bang), _, _)) = &item.trait_ {
        cx.error(bang, "`#[remote]` does not apply to negative impls");
    }
    let trait_path = item.trait_.as_ref().map(|(_, path, _)| path.clone());
    let mut items = Vec::with_capacity(item.items.len());
    for mut ii in std::mem::take(&mut item.items) {
        let ImplItem::Fn(f) = &mut ii else {
            items.push(ii);
            continue;
        };
        let before = f.attrs.len();
        f.attrs.retain(|a| !a.path().is_ident("remote"));
        if f.attrs.len() != before {
            cx.error(
                &f.sig.ident,
                "`#[remote(...)]` options belong on the method in the trait, not in its impl",
            );
        }
        // The body unboxed behind the boxed method, served in one box
        // (`expand/serve.rs`).
        let served = trait_path
            .as_ref()
            .and_then(|path| expand::rewrite_impl_fn(f, path, p));
        if let Some(fns) = served {
            items.extend(fns.into_iter().map(ImplItem::Fn));
            continue;
        }
        if f.sig.asyncness.is_some() {
            f.sig.asyncness = None;
            let ret = expand::return_type(&f.sig.output);
            f.sig.output = syn::parse_quote_spanned!(ret.span()=> -> #p::BoxFuture<'_, #ret>);
            let body = expand::boxed_body(&ret, &f.block, p);
            f.block = syn::parse_quote!({ #body });
        }
        items.push(ii);
    }
    item.items = items;
    // A generic impl of an interface that does not name the impl's
    // parameters (`impl<S> Keys for KeyServer<S>`) is registered too: the
    // policy lint's default roots are the registered impls' interfaces,
    // and such an interface went unchecked (a review). One whose trait
    // takes them (`impl<T> Store<T> for Mem<T>`) names no one interface.
    let (_, trait_path, _) = item.trait_.as_ref().expect("checked by the caller");
    let register = if !names_any(trait_path, &item.generics) {
        register_impl(&item.self_ty, trait_path, p)
    } else {
        quote!()
    };
    let (impl_g, _, where_clause) = item.generics.split_for_impl();
    let (_, trait_path, _) = item.trait_.as_ref().expect("checked by the caller");
    let self_ty = &item.self_ty;
    // The trait's type arguments, as the tuple `RemoteImpl`'s second
    // parameter (they keep the impl's own parameters constrained).
    let args = trait_path
        .segments
        .last()
        .into_iter()
        .flat_map(|seg| match &seg.arguments {
            syn::PathArguments::AngleBracketed(a) => a
                .args
                .iter()
                .filter_map(|ga| match ga {
                    syn::GenericArgument::Type(ty) => Some(ty.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        });
    let marker = quote! {
        impl #impl_g #p::ImplementedWithRemote<<dyn #trait_path as #p::InterfaceProxy>::Proxy, (#(#args,)*)>
            for #self_ty #where_clause {}
    };
    quote!(#item #marker #register)
}

/// Whether `path` names any type or const parameter of `generics`.
fn names_any(path: &syn::Path, generics: &syn::Generics) -> bool {
    fn walk(tokens: TokenStream, params: &[&syn::Ident]) -> bool {
        tokens.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(i) => params.iter().any(|p| **p == i),
            proc_macro2::TokenTree::Group(g) => walk(g.stream(), params),
            _ => false,
        })
    }
    let params: Vec<&syn::Ident> = generics
        .params
        .iter()
        .filter_map(|g| match g {
            syn::GenericParam::Type(t) => Some(&t.ident),
            syn::GenericParam::Const(c) => Some(&c.ident),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    !params.is_empty() && walk(quote!(#path), &params)
}

/// Registers `self_ty` as an implementation of interface `interface` (an
/// `ImplEntry`, read by the policy lint for its default roots).
fn register_impl(self_ty: &Type, interface: &impl quote::ToTokens, p: &TokenStream) -> TokenStream {
    let span = self_ty.span();
    quote_spanned! {span=>
        #p::inventory::submit! {
            #p::ImplEntry {
                type_name: #p::concat!(#p::module_path!(), "::", #p::stringify!(#self_ty)),
                interface: <dyn #interface as #p::Interface>::describe,
                file: ::core::file!(),
                line: ::core::line!(),
            }
        }
    }
}

/// `#[remote] impl ChatRoom { ... }`: the `pub` methods with a `&self`
/// receiver (except `#[remote(skip)]` ones) become the trait `ChatRoomRemote`,
/// (private helpers stay local: exposing is opt-in by visibility),
/// implemented for `ChatRoom` by calling the inherent methods, with
/// `ChatRoomClient` as its proxy. The block is registered as an
/// implementation of `ChatRoomRemote` (an `ImplEntry`).
pub(crate) fn inherent_impl(cx: &mut Ctxt, mut item: ItemImpl, p: &TokenStream) -> TokenStream {
    let type_ident = match &*item.self_ty {
        Type::Path(tp) if tp.qself.is_none() => tp.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(type_ident) = type_ident else {
        cx.error(
            &item.self_ty,
            "`#[remote]` on an inherent impl needs a named type, such as `impl ChatRoom`",
        );
        return quote!(#item);
    };
    if !item.generics.params.is_empty() {
        cx.error(
            &item.generics,
            "`#[remote]` on an inherent impl cannot be generic; declare a `#[remote]` trait \
             (`trait Store<T: Wire>`) and implement it instead",
        );
    }
    let trait_ident = format_ident!("{}Remote", type_ident);
    let mut methods = Vec::new();
    let mut trait_items = Vec::new();
    let mut vis: Option<Visibility> = None;
    for ii in &mut item.items {
        let ImplItem::Fn(f) = ii else { continue };
        let opts = attr::take_method_args(cx, &mut f.attrs, MethodPlace::Inherent);
        let has_receiver = matches!(f.sig.inputs.first(), Some(FnArg::Receiver(_)));
        // Only methods the type makes public are exposed to peers: a private
        // helper never becomes remotely callable by accident.
        let public = !matches!(f.vis, Visibility::Inherited);
        if opts.skip.is_some() || !has_receiver || !public {
            continue;
        }
        vis.get_or_insert_with(|| f.vis.clone());
        let docs = f.attrs.iter().filter(|a| a.path().is_ident("doc"));
        let mut sig = f.sig.clone();
        // A declaration without a body takes plain names, not patterns.
        for (i, arg) in sig
            .inputs
            .iter_mut()
            .filter(|a| matches!(a, FnArg::Typed(_)))
            .enumerate()
        {
            if let FnArg::Typed(t) = arg {
                if !matches!(&*t.pat, syn::Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() && pi.mutability.is_none())
                {
                    let name = match &*t.pat {
                        syn::Pat::Ident(pi) => pi.ident.clone(),
                        _ => format_ident!("arg{}", i),
                    };
                    *t.pat = syn::parse_quote!(#name);
                }
            }
        }
        let tf: syn::TraitItemFn = syn::parse_quote!(#(#docs)* #sig;);
        let mut m = Method::new(tf.clone(), opts.name, opts.requires_auth);
        m.priority = opts.priority;
        methods.push(m);
        trait_items.push(TraitItem::Fn(tf));
    }
    if methods.is_empty() {
        cx.error(
            &item.self_ty,
            "this `#[remote]` impl has no `pub` method with a `&self` receiver to expose; only \
             public methods are exposed to peers: make one `pub`, or remove `#[remote]`",
        );
        return quote!(#item);
    }
    let vis = vis.unwrap_or(Visibility::Inherited);
    let doc = format!(
        "Remote interface of [`{type_ident}`], made by `#[remote]` from its inherent methods.\n\n\
         Serve an object with `Remote::<dyn {trait_ident}>::new(Arc::new(obj))`; a peer \
         calls it through [`{type_ident}Client`] (import this trait to call its methods)."
    );
    let trait_item: ItemTrait = syn::parse_quote! {
        #[doc = #doc]
        #vis trait #trait_ident { #(#trait_items)* }
    };
    let client = format_ident!("{}Client", type_ident);
    let rt = RemoteTrait {
        item: trait_item,
        doc: attr::doc_string(&item.attrs),
        methods,
        client,
    };
    valid::check_trait(cx, &rt);
    if !cx.is_ok() {
        return quote!(#item);
    }
    let self_ty = &item.self_ty;
    let delegates = rt.methods.iter().map(|m| {
        let ident = &m.ident;
        let args = m.typed_args();
        let names = m.args.iter().map(|a| &a.ident);
        let ret = expand::return_type(&m.item.sig.output);
        let span = m.ident.span();
        if m.is_async {
            quote_spanned! {span=>
                fn #ident(&self, #(#args),*) -> #p::BoxFuture<'_, #ret> {
                    #p::Box::pin(<#self_ty>::#ident(self, #(#names),*))
                }
            }
        } else {
            quote_spanned! {span=>
                fn #ident(&self, #(#args),*) -> #ret {
                    <#self_ty>::#ident(self, #(#names),*)
                }
            }
        }
    });
    let serves = rt
        .methods
        .iter()
        .filter(|m| m.is_async)
        .map(|m| expand::inherent_serve(m, self_ty, p));
    let client_ident = &rt.client;
    let generated = expand::expand_trait(&rt, p);
    // Registered as an implementation of the generated trait, as
    // `impl Trait for Type` is: so the policy's default roots include it.
    let register = register_impl(self_ty, &trait_ident, p);
    quote! {
        #item
        #generated
        impl #p::ImplementedWithRemote<#client_ident, ()> for #self_ty {}
        impl #trait_ident for #self_ty {
            #(#delegates)*
            #(#serves)*
        }
        #register
    }
}
