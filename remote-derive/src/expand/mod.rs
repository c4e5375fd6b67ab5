//! Code generation for a `#[remote]` trait, one function per generated item
//! (as tarpc's `ServiceGenerator`). Every path is absolute: `p` is
//! `::remote_core::__private` or the `crate = "..."` override.

mod deferred;
mod describe;
mod dispatch;
mod pipeline;
mod proxy;
mod serve;
mod shared;
mod trait_def;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::RemoteTrait;
use crate::attr::ItemArgs;
use crate::ctxt::Ctxt;
use crate::{impl_block, valid};
use describe::register;
use dispatch::{dispatch, interface};
use proxy::client;
pub(crate) use serve::{inherent_serve, rewrite_impl_fn};
pub(crate) use shared::{location, vec_expr};
use trait_def::trait_def;
pub(crate) use trait_def::{boxed_body, return_type};

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
    out.extend(deferred::deferred(t, p));
    out.extend(dispatch(t, p));
    out.extend(interface(t, p));
    out.extend(register(t, p));
    out.extend(pipeline::pipeline(t, p));
    out
}
