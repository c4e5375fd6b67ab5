//! Code generation for a `#[remote]` trait, one function per generated item
//! (as tarpc's `ServiceGenerator`). Every path is absolute: `p` is
//! `::remote_core::__private` or the `crate = "..."` override.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, TraitItem};

use crate::ast::{Method, RemoteTrait};
use crate::attr::ItemArgs;
use crate::ctxt::Ctxt;
use crate::{impl_block, valid};

/// `#[remote]`: picks the expansion for the item kind. On errors, the item is
/// still emitted (without our attributes) next to the `compile_error!`s, so
/// the rest of the crate resolves.
pub(crate) fn entry(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = ItemArgs::parse(&mut cx, args);
    let p = args.private_path();
    let item: syn::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let err = e.to_compile_error();
            return quote!(#input #err);
        }
    };
    let out = match item {
        syn::Item::Trait(t) => {
            let rt = RemoteTrait::from_syn(&mut cx, t);
            valid::check_trait(&mut cx, &rt);
            if cx.is_ok() {
                expand_trait(&rt, &p)
            } else {
                let item = &rt.item;
                quote!(#item)
            }
        }
        syn::Item::Impl(i) if i.trait_.is_some() => impl_block::trait_impl(&mut cx, i, &p),
        syn::Item::Impl(i) => impl_block::inherent_impl(&mut cx, i, &p),
        other => {
            let what = match &other {
                syn::Item::Struct(s) => Some((&s.ident, "a struct")),
                syn::Item::Enum(e) => Some((&e.ident, "an enum")),
                syn::Item::Fn(f) => Some((&f.sig.ident, "a function")),
                _ => None,
            };
            let hint = "it goes on a trait (to make it a remote interface) or on an impl block \
                        (`impl Trait for Type`, or `impl Type` to expose its methods); a struct \
                        or enum that crosses the wire by value needs `#[derive(Wire)]` instead";
            match what {
                Some((ident, kind)) => cx.error(
                    ident,
                    format!("`#[remote]` cannot be used on {kind}: {hint}"),
                ),
                None => cx.error(
                    &other,
                    format!("`#[remote]` cannot be used on this item: {hint}"),
                ),
            }
            quote!(#other)
        }
    };
    let errors = cx.to_compile_errors();
    quote!(#out #errors)
}

/// Everything generated for a trait that passed the checks.
pub(crate) fn expand_trait(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let mut out = trait_def(t, p);
    out.extend(client(t, p));
    out.extend(dispatch(t, p));
    out.extend(interface(t, p));
    out.extend(register(t, p));
    out
}

fn dispatch_ident(trait_ident: &Ident) -> Ident {
    format_ident!("__{}Dispatch", trait_ident)
}

/// `dyn Chat<T>` as a type, and `Chat<T>` as a trait path.
fn dyn_and_path(t: &RemoteTrait) -> (TokenStream, TokenStream) {
    let ident = t.ident();
    let (_, ty_g, _) = t.item.generics.split_for_impl();
    (quote!(dyn #ident #ty_g), quote!(#ident #ty_g))
}

/// The trait's `where` clause plus, for every type in a signature, a
/// `for<'__w> Ty: Wire` (or, for an error type, `RemoteErrorType`)
/// predicate. The proxy's and the dispatcher's impls carry it, so a type
/// that cannot cross is assumed to within them and is reported once, by the
/// describer (see [`dispatch`]), not once per use; the `Interface` impl
/// reaches them through `__private::Checked` (see remote-core's
/// `checked.rs`). The `for<'__w>` keeps the predicate from being a trivial
/// (global) bound, which stable Rust would reject on its own.
fn guarded_where(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
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
fn type_args_tuple(t: &RemoteTrait) -> TokenStream {
    let params = t.item.generics.type_params().map(|tp| &tp.ident);
    quote!((#(#params,)*))
}

/// The trait itself: async methods boxed, `Send + Sync + 'static` added,
/// plus the hidden `__remote_handle` method.
pub(crate) fn trait_def(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let item = &t.item;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let ident = &item.ident;
    let generics = &item.generics;
    let where_clause = &generics.where_clause;
    let supers = item.supertraits.iter();
    let client = &t.client;
    let (_, ty_g, _) = generics.split_for_impl();
    let args = type_args_tuple(t);
    let methods = item.items.iter().map(|ti| match ti {
        TraitItem::Fn(f) => boxed_trait_fn(f, p),
        other => quote!(#other),
    });
    quote! {
        #(#attrs)*
        #vis trait #ident #generics: #(#supers +)* #p::RemoteImpl<#client #ty_g, #args>
            + ::core::marker::Send + ::core::marker::Sync + 'static
        #where_clause
        {
            #(#methods)*
            /// The proxy's handle; `None` for a local object. Generated by `#[remote]`.
            #[doc(hidden)]
            fn __remote_handle(&self) -> #p::Option<&#p::Handle> {
                #p::None
            }
        }
    }
}

/// `async fn m(&self, a: A) -> R` becomes `fn m(&self, a: A) -> BoxFuture<'_, R>`;
/// a default body is wrapped in `Box::pin(async move { .. })`.
fn boxed_trait_fn(f: &syn::TraitItemFn, p: &TokenStream) -> TokenStream {
    if f.sig.asyncness.is_none() {
        return quote!(#f);
    }
    let mut sig = f.sig.clone();
    sig.asyncness = None;
    let ret = return_type(&f.sig.output);
    sig.output = syn::parse_quote_spanned!(ret.span()=> -> #p::BoxFuture<'_, #ret>);
    let attrs = &f.attrs;
    match &f.default {
        None => quote!(#(#attrs)* #sig;),
        Some(body) => {
            let body = boxed_body(&ret, body, p);
            quote!(#(#attrs)* #sig { #body })
        }
    }
}

/// The return type of a signature, `()` if none.
pub(crate) fn return_type(out: &syn::ReturnType) -> TokenStream {
    match out {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    }
}

/// `Box::pin(async move { body })`, with the output type fixed before the
/// body is checked so `?` and `.into()` infer as in an `async fn`.
pub(crate) fn boxed_body(ret: &TokenStream, body: &syn::Block, p: &TokenStream) -> TokenStream {
    let stmts = &body.stmts;
    quote_spanned! {body.span()=>
        #p::Box::pin(async move {
            if let #p::Some(__ret) = #p::None::<#ret> {
                #[allow(unreachable_code)]
                return __ret;
            }
            let __ret: #ret = { #(#stmts)* };
            #[allow(unreachable_code)]
            __ret
        })
    }
}

/// `pub struct ChatClient`, its `Clone`, `Debug`, `from_handle` and its
/// implementation of the trait.
pub(crate) fn client(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let ident = t.ident();
    let vis = &t.item.vis;
    let client = &t.client;
    let generics = &t.item.generics;
    let (impl_g, ty_g, where_clause) = generics.split_for_impl();
    let (_, trait_path) = dyn_and_path(t);
    let params: Vec<&Ident> = generics.type_params().map(|tp| &tp.ident).collect();
    let (marker_field, marker_init) = if params.is_empty() {
        (quote!(), quote!())
    } else {
        (
            quote!(__marker: ::core::marker::PhantomData<fn() -> (#(#params,)*)>,),
            quote!(__marker: ::core::marker::PhantomData,),
        )
    };
    let doc = format!(
        "Proxy for a remote [`{ident}`]: implements `{ident}` by sending each call through its \
         `Handle`.\n\nGenerated by `#[remote]`. Get one from a \
         connection (as `Remote<dyn {ident}>`) or with `from_handle`; cloning is cheap."
    );
    let methods = t.methods.iter().map(|m| client_method(m, p));
    let name = client.to_string();
    let guard = guarded_where(t, p);
    let args = type_args_tuple(t);
    quote! {
        #[doc = #doc]
        #vis struct #client #impl_g #where_clause {
            handle: #p::Handle,
            #marker_field
        }

        impl #impl_g #client #ty_g #where_clause {
            /// A proxy that sends calls through `handle`.
            #[allow(dead_code)]
            #vis fn from_handle(handle: #p::Handle) -> Self {
                #client { handle, #marker_init }
            }
        }

        impl #impl_g ::core::clone::Clone for #client #ty_g #where_clause {
            #[inline]
            fn clone(&self) -> Self {
                #client { handle: ::core::clone::Clone::clone(&self.handle), #marker_init }
            }
        }

        impl #impl_g ::core::fmt::Debug for #client #ty_g #where_clause {
            #[inline]
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name).field("handle", &self.handle).finish()
            }
        }

        impl #impl_g #p::ImplementedWithRemote<#client #ty_g, #args> for #client #ty_g #where_clause {}

        impl #impl_g #trait_path for #client #ty_g #guard {
            #(#methods)*
            #[inline]
            fn __remote_handle(&self) -> #p::Option<&#p::Handle> {
                #p::Some(&self.handle)
            }
        }
    }
}

fn client_method(m: &Method, p: &TokenStream) -> TokenStream {
    let ident = &m.ident;
    let wire = &m.wire_name;
    let args = m.args.iter().map(|a| {
        let (i, ty) = (&a.ident, &a.ty);
        quote!(#i: #ty)
    });
    let names = m.args.iter().map(|a| &a.ident);
    let ret = return_type(&m.item.sig.output);
    let span = m.ident.span();
    if let Some(role) = crate::cache::role(m, p) {
        let call = if m.is_async {
            quote!(call_with)
        } else {
            quote!(call_blocking_with)
        };
        let ret = if m.is_async {
            quote!(#p::BoxFuture<'_, #ret>)
        } else {
            ret
        };
        return quote_spanned! {span=>
            #[inline]
            fn #ident(&self, #(#args),*) -> #ret {
                #p::#call(&self.handle, #wire, #role, (#(#names,)*))
            }
        };
    }
    if m.is_async {
        quote_spanned! {span=>
            #[inline]
            fn #ident(&self, #(#args),*) -> #p::BoxFuture<'_, #ret> {
                #p::call(&self.handle, #wire, (#(#names,)*))
            }
        }
    } else {
        quote_spanned! {span=>
            #[inline]
            fn #ident(&self, #(#args),*) -> #ret {
                #p::call_blocking(&self.handle, #wire, (#(#names,)*))
            }
        }
    }
}

/// The private `__ChatDispatch` and its `Dispatch` implementation.
pub(crate) fn dispatch(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let ident = t.ident();
    let name = ident.to_string();
    let d = dispatch_ident(ident);
    let (impl_g, ty_g, where_clause) = t.item.generics.split_for_impl();
    let (dyn_ty, _) = dyn_and_path(t);
    let arms = t.methods.iter().map(|m| dispatch_arm(t, m, p));
    let guard = guarded_where(t, p);
    let describe = describe_body(t, p);
    let client = &t.client;
    let marker = if t.is_generic() {
        quote!(__marker: ::core::marker::PhantomData,)
    } else {
        quote!()
    };
    let priority = method_priority(t, p);
    quote! {
        #[doc(hidden)]
        struct #d #impl_g (#p::Arc<#dyn_ty>) #where_clause;

        impl #impl_g #d #ty_g #where_clause {
            /// The interface's schema. Not guarded (see `guarded_where`): the
            /// `describe_wire` / `describe_error` calls here are where a
            /// type that cannot cross is reported.
            fn describe(b: &mut #p::SchemaBuilder) -> #p::Ty {
                #describe
            }
        }

        impl #impl_g #p::Checked for #d #ty_g #guard {
            type Interface = #dyn_ty;
            #[inline]
            fn into_dispatch(this: #p::Arc<#dyn_ty>) -> #p::Arc<dyn #p::Dispatch> {
                #p::Arc::new(#d(this))
            }
            #[inline]
            fn proxy(handle: #p::Handle) -> #p::Arc<#dyn_ty> {
                #p::Arc::new(#client { handle, #marker })
            }
        }

        impl #impl_g #p::Dispatch for #d #ty_g #guard {
            #[inline]
            fn interface_name(&self) -> &'static str {
                #name
            }
            #[inline]
            fn as_any(&self) -> &dyn #p::Any {
                self
            }
            #[inline]
            fn call(
                &self,
                __method: &str,
                __args: #p::Args,
                __cx: #p::CallCx,
            ) -> #p::Result<#p::CallFuture, #p::Error> {
                match __method {
                    #(#arms)*
                    _ => #p::Err(#p::Error::unknown_method(#name, __method)),
                }
            }
            #priority
        }
    }
}

/// `Dispatch::method_priority`, for a trait with `#[remote(priority = ..)]`
/// methods (others keep the default: the connection's class).
fn method_priority(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let arms: Vec<TokenStream> = t
        .methods
        .iter()
        .filter_map(|m| {
            let class = m.priority.as_ref()?;
            let wire = &m.wire_name;
            Some(quote!(#wire => #p::Some(#p::Priority::#class),))
        })
        .collect();
    if arms.is_empty() {
        return quote!();
    }
    quote! {
        fn method_priority(&self, __method: &str) -> #p::Option<#p::Priority> {
            match __method {
                #(#arms)*
                _ => #p::None,
            }
        }
    }
}

fn dispatch_arm(t: &RemoteTrait, m: &Method, p: &TokenStream) -> TokenStream {
    let (dyn_ty, trait_path) = dyn_and_path(t);
    let wire = &m.wire_name;
    let ident = &m.ident;
    let vars: Vec<Ident> = (0..m.args.len())
        .map(|i| format_ident!("__a{}", i))
        .collect();
    let tys = m.args.iter().map(|a| &a.ty);
    let auth = if m.requires_auth {
        quote!(__cx.require_auth(#wire)?;)
    } else {
        quote!()
    };
    let call = quote!(<#dyn_ty as #trait_path>::#ident(&*__obj, #(#vars),*));
    let run = if m.is_async {
        quote!(#call.await)
    } else {
        quote!(#p::blocking(&__cx, move || #call).await)
    };
    let (lookup, invalidate, reply) = crate::cache::dispatch_hooks(m, p, &dyn_ty);
    quote! {
        #wire => {
            #auth
            #lookup
            let (#(#vars,)*): (#(#tys,)*) = #p::decode_args(__args)?;
            let __obj = ::core::clone::Clone::clone(&self.0);
            let __fut: #p::CallFuture = #p::Box::pin(async move {
                let __r = #run;
                #invalidate
                #reply
            });
            #p::Ok(__fut)
        }
    }
}

/// `impl Interface for dyn Chat`.
pub(crate) fn interface(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let ident = t.ident();
    let name = ident.to_string();
    let d = dispatch_ident(ident);
    let client = &t.client;
    let (impl_g, ty_g, where_clause) = t.item.generics.split_for_impl();
    let (dyn_ty, trait_path) = dyn_and_path(t);
    // Not guarded (see `guarded_where`): proving `Remote<dyn Chat>: Wire`
    // needs this impl, so a guard naming such a type would be a cycle. The
    // casts go through the guarded `Checked` impl when it holds.
    quote! {
        impl #impl_g #p::InterfaceProxy for #dyn_ty #where_clause {
            type Proxy = #client #ty_g;
        }

        impl #impl_g #p::Interface for #dyn_ty #where_clause {
            fn name() -> &'static str {
                #name
            }
            #[inline]
            fn into_dispatch(this: #p::Arc<Self>) -> #p::Arc<dyn #p::Dispatch> {
                use #p::{ViaChecked as _, ViaUnchecked as _};
                (&&#p::Probe::<#d #ty_g, Self>::NEW).dispatcher(this)
            }
            #[inline]
            fn from_dispatch(d: &#p::Arc<dyn #p::Dispatch>) -> #p::Option<#p::Arc<Self>> {
                match #p::Dispatch::as_any(&**d).downcast_ref::<#d #ty_g>() {
                    #p::Some(d) => #p::Some(::core::clone::Clone::clone(&d.0)),
                    #p::None => #p::None,
                }
            }
            #[inline]
            fn proxy(handle: #p::Handle) -> #p::Arc<Self> {
                use #p::{ViaChecked as _, ViaUnchecked as _};
                (&&#p::Probe::<#d #ty_g, Self>::NEW).proxy(handle)
            }
            #[inline]
            fn handle(this: &Self) -> #p::Option<&#p::Handle> {
                <Self as #trait_path>::__remote_handle(this)
            }
            fn describe(b: &mut #p::SchemaBuilder) -> #p::Ty {
                <#d #ty_g>::describe(b)
            }
        }
    }
}

/// Body of `Interface::describe`: the spanned `Wire` assertions, then the
/// `InterfaceDef`.
fn describe_body(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
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
    quote! {
        let name: #p::String = #name;
        let key: #p::String = #key;
        #p::describe_interface(b, key, name, &#p::InterfaceDesc {
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
        Some(r) => {
            let ok = &r.ok;
            let err = match &r.err {
                Some(e) => quote_spanned!(e.span()=> #p::describe_error::<#e>),
                // `Result<T>` alias: let inference find `E`.
                None => {
                    let full = &r.full;
                    quote!(#p::error_of(::core::marker::PhantomData::<#full>))
                }
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
