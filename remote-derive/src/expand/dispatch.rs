//! The serving side: the private dispatcher that decodes a call and runs
//! the method, and the trait object's `Interface` impl.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Ident;

use super::deferred::deferred_ident;
use super::describe::describe_body;
use super::shared::{dispatch_ident, dyn_and_path, guarded_where};
use crate::ast::{Method, RemoteTrait};

/// The private `__ChatDispatch` and its `Dispatch` implementation.
pub(crate) fn dispatch(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let ident = t.ident();
    let name = ident.to_string();
    let d = dispatch_ident(ident);
    let (impl_g, ty_g, where_clause) = t.item.generics.split_for_impl();
    let (dyn_ty, _) = dyn_and_path(t);
    // Each method runs in a function of its own: one frame holding every
    // method's arguments overflowed a debug build's stack on any call of
    // an interface with large inline arguments (red-team pass 41).
    let (arms, fns): (Vec<TokenStream>, Vec<TokenStream>) = t
        .methods
        .iter()
        .enumerate()
        .map(|(i, m)| dispatch_arm(t, m, i, p))
        .unzip();
    let guard = guarded_where(t, p);
    let describe = describe_body(t, p);
    let client = &t.client;
    let marker = if t.is_generic() {
        quote!(__marker: ::core::marker::PhantomData,)
    } else {
        quote!()
    };
    let priority = method_priority(t, p);
    let deferred = deferred_ident(ident);
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
            #[inline]
            fn deferred(target: #p::Deferred<#dyn_ty>) -> #p::Arc<#dyn_ty> {
                #p::Arc::new(#deferred(target))
            }
        }

        impl #impl_g #d #ty_g #guard {
            #(#fns)*
        }

        impl #impl_g #p::Dispatch for #d #ty_g #guard {
            #[inline]
            fn interface_name(&self) -> &'static str {
                #name
            }
            #[inline]
            fn object_addr(&self) -> #p::Option<usize> {
                #p::Some(#p::Arc::as_ptr(&self.0) as *const () as usize)
            }
            #[inline]
            fn as_any(&self) -> &dyn #p::Any {
                self
            }
            #[inline]
            fn call(
                &self,
                __method: &str,
                __args: #p::Args<'_>,
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

/// A method's match arm in `Dispatch::call`, and the function it calls,
/// which decodes the arguments and makes the handler's future (with room
/// for arguments large inline: `codec/dispatch_stack.rs` in
/// `remote-core`).
fn dispatch_arm(
    t: &RemoteTrait,
    m: &Method,
    index: usize,
    p: &TokenStream,
) -> (TokenStream, TokenStream) {
    let (dyn_ty, trait_path) = dyn_and_path(t);
    let wire = &m.wire_name;
    let ident = &m.ident;
    let call_fn = format_ident!("__remote_call_{}", index);
    let vars: Vec<Ident> = (0..m.args.len())
        .map(|i| format_ident!("__a{}", i))
        .collect();
    let tys: Vec<&syn::Type> = m.args.iter().map(|a| &a.ty).collect();
    let args_ty = quote!((#(#tys,)*));
    let auth = if m.requires_auth {
        quote!(__cx.require_auth(#wire)?;)
    } else {
        quote!()
    };
    let call = quote!(<#dyn_ty as #trait_path>::#ident(&*__obj, #(#vars),*));
    // A blocking method's arguments go to the pool's thread boxed, and
    // its body runs there with room for them (`blocking_on_stack`).
    let (boxed, run) = if m.is_async {
        (quote!(), quote!(#call.await))
    } else {
        (
            quote!(let __boxed = #p::Box::new((#(#vars,)*));),
            quote!(#p::blocking(&__cx, move || {
                #p::blocking_on_stack::<#args_ty, _>(__boxed, move |(#(#vars,)*)| #call)
            }).await),
        )
    };
    let (lookup, invalidate, reply) = crate::cache::dispatch_hooks(m, p, &dyn_ty);
    let body = if m.is_async && lookup.is_empty() && invalidate.is_empty() {
        // One box, made by the object (`serve.rs`), not one around another.
        let serve = super::serve::dispatch_call(m, &dyn_ty, &trait_path, &vars);
        quote! {
            #auth
            let (#(#vars,)*): #args_ty = #p::decode_args(__args)?;
            #p::Ok(#serve)
        }
    } else {
        quote! {
            #auth
            #lookup
            let (#(#vars,)*): #args_ty = #p::decode_args(__args)?;
            #boxed
            let __obj = ::core::clone::Clone::clone(&self.0);
            let __fut: #p::CallFuture = #p::Box::pin(async move {
                let __r = #run;
                #invalidate
                #reply
            });
            #p::Ok(__fut)
        }
    };
    let arm = quote!(#wire => self.#call_fn(__args, __cx),);
    let f = quote! {
        // An optimized build may inline it into `call`: it lets the arms'
        // slots share the frame; an unoptimized build inlines nothing.
        #[inline]
        fn #call_fn(
            &self,
            __args: #p::Args<'_>,
            __cx: #p::CallCx,
        ) -> #p::Result<#p::CallFuture, #p::Error> {
            #p::dispatch_on_stack::<#args_ty, _>(move || {
                let __fut: #p::Result<#p::CallFuture, #p::Error> = (move || { #body })();
                __fut.map(#p::future_on_stack::<#args_ty>)
            })
        }
    };
    (arm, f)
}

/// `impl Interface for dyn Chat`.
pub(crate) fn interface(t: &RemoteTrait, p: &TokenStream) -> TokenStream {
    let ident = t.ident();
    let name = ident.to_string();
    let d = dispatch_ident(ident);
    let client = &t.client;
    let (impl_g, ty_g, where_clause) = t.item.generics.split_for_impl();
    let (dyn_ty, trait_path) = dyn_and_path(t);
    let cached = t
        .methods
        .iter()
        .any(|m| m.cache.is_some() || m.memoize.is_some());
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
            fn deferred(target: #p::Deferred<Self>) -> #p::Arc<Self> {
                use #p::{ViaChecked as _, ViaUnchecked as _};
                (&&#p::Probe::<#d #ty_g, Self>::NEW).deferred(target)
            }
            #[inline]
            fn handle(this: &Self) -> #p::Option<&#p::Handle> {
                <Self as #trait_path>::__remote_handle(this)
            }
            fn describe(b: &mut #p::SchemaBuilder) -> #p::Ty {
                <#d #ty_g>::describe(b)
            }
            const CACHED: ::core::primitive::bool = #cached;
        }
    }
}
