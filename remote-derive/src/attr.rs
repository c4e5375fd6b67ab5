//! Arguments of our attributes: `#[remote(...)]` on an item or a method,
//! `#[wire(...)]` on a type or a field. Parsed with `syn::meta::parser`
//! style (`Attribute::parse_nested_meta`), every mistake recorded in the
//! [`Ctxt`].

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::{Attribute, LitStr, Path};

use crate::ctxt::Ctxt;

/// Arguments of the outer `#[remote(...)]` attribute (trait or impl block).
pub(crate) struct ItemArgs {
    /// `crate = "path"`: where `remote_core` is, for renamed dependencies.
    pub(crate) krate: Option<Path>,
}

impl ItemArgs {
    /// Parses the tokens between the parentheses of `#[remote(...)]`.
    pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream) -> ItemArgs {
        let mut out = ItemArgs { krate: None };
        if args.is_empty() {
            return out;
        }
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                out.krate = Some(lit.parse()?);
                Ok(())
            } else {
                Err(meta.error(format!(
                    "unknown option `{}` for `#[remote]` on an item; the only option here is \
                     `crate = \"path::to::remote_core\"` (method options such as `name` and \
                     `requires_auth` go on the methods)",
                    path_text(&meta.path)
                )))
            }
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, args) {
            cx.push(e);
        }
        out
    }

    /// The path generated code uses for the runtime crate's private module.
    pub(crate) fn private_path(&self) -> TokenStream {
        match &self.krate {
            Some(p) => quote!(#p::__private),
            None => quote!(::remote_core::__private),
        }
    }
}

/// Options of `#[remote(...)]` on one method.
#[derive(Default)]
pub(crate) struct MethodArgs {
    /// `name = "wire_name"`.
    pub(crate) name: Option<LitStr>,
    /// `requires_auth`.
    pub(crate) requires_auth: bool,
    /// `skip` (inherent impls only): keep the method local.
    pub(crate) skip: Option<Span>,
    /// `cache(ttl = "5s")` or `invalidates(a, b)` (traits only).
    pub(crate) cache: Option<crate::cache::CacheOpt>,
    /// `priority = high` (`normal`, `low`): the `Priority` variant.
    pub(crate) priority: Option<syn::Ident>,
    /// `memoize(ttl = "5s")` (traits only).
    pub(crate) memoize: Option<crate::cache::MemoOpt>,
}

/// Where a method's attributes were found, for the list of allowed options.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MethodPlace {
    Trait,
    Inherent,
}

/// Reads and removes every `#[remote(...)]` attribute of a method.
pub(crate) fn take_method_args(
    cx: &mut Ctxt,
    attrs: &mut Vec<Attribute>,
    place: MethodPlace,
) -> MethodArgs {
    let mut out = MethodArgs::default();
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        if !attr.path().is_ident("remote") {
            kept.push(attr);
            continue;
        }
        if let syn::Meta::Path(_) = attr.meta {
            cx.error(
                &attr,
                "a bare `#[remote]` on a method does nothing; write options such as \
                 `#[remote(name = \"wire_name\")]` or `#[remote(requires_auth)]`, or remove it",
            );
            continue;
        }
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(lit.span(), "the wire name must not be empty"));
                }
                out.name = Some(lit);
            } else if meta.path.is_ident("requires_auth") {
                out.requires_auth = true;
            } else if meta.path.is_ident("priority") {
                out.priority = Some(parse_priority(&meta)?);
            } else if meta.path.is_ident("cache") && place == MethodPlace::Trait {
                out.cache = Some(crate::cache::parse_cache(&meta)?);
            } else if meta.path.is_ident("memoize") && place == MethodPlace::Trait {
                out.memoize = Some(crate::cache::parse_memoize(&meta)?);
            } else if meta.path.is_ident("invalidates") && place == MethodPlace::Trait {
                out.cache = Some(crate::cache::parse_invalidates(&meta)?);
            } else if meta.path.is_ident("skip") && place == MethodPlace::Inherent {
                out.skip = Some(syn::spanned::Spanned::span(&meta.path));
            } else {
                let allowed = match place {
                    MethodPlace::Trait => {
                        "`name = \"wire_name\"`, `requires_auth`, `priority = high`, \
                         `cache(ttl = \"5s\")`, `memoize(ttl = \"5s\")` and `invalidates(method, ..)`"
                    }
                    MethodPlace::Inherent => {
                        "`name = \"wire_name\"`, `requires_auth`, `priority = high` and `skip`"
                    }
                };
                return Err(meta.error(format!(
                    "unknown option `{}` in `#[remote(...)]` on a method; the options are {allowed}",
                    path_text(&meta.path)
                )));
            }
            Ok(())
        });
        if let Err(e) = res {
            cx.push(e);
        }
    }
    *attrs = kept;
    out
}

/// `priority = high | normal | low`: the `Priority` variant's name.
fn parse_priority(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<syn::Ident> {
    let class: syn::Ident = meta.value()?.parse()?;
    let variant = match class.to_string().as_str() {
        "high" => "High",
        "normal" => "Normal",
        "low" => "Low",
        other => {
            return Err(syn::Error::new(
                class.span(),
                format!("unknown priority `{other}`; write `high`, `normal` or `low`"),
            ))
        }
    };
    Ok(syn::Ident::new(variant, class.span()))
}

/// Options of `#[wire(...)]` on a type, a variant or a field.
#[derive(Default)]
pub(crate) struct WireArgs {
    /// `secret`: the value must never flow to a peer (checked by remote-policy).
    /// On a variant, every field of the variant is secret.
    pub(crate) secret: bool,
    /// The span of `secret`, for errors about where it cannot go.
    pub(crate) secret_span: Option<Span>,
    /// `crate = "path"` (on the type only): where `remote_core` is.
    pub(crate) krate: Option<Path>,
}

/// Where a `#[wire(...)]` attribute was found, for the options allowed there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum WirePlace {
    Type,
    Variant,
    Field,
}

/// Reads every `#[wire(...)]` attribute in `attrs` (they are derive helpers,
/// so they stay on the item). Only the type allows `crate = "..."`; an
/// unknown option is an error in every place, so a typo cannot drop a mark.
pub(crate) fn wire_args(cx: &mut Ctxt, attrs: &[Attribute], place: WirePlace) -> WireArgs {
    let mut out = WireArgs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("wire")) {
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("secret") {
                out.secret = true;
                out.secret_span = Some(syn::spanned::Spanned::span(&meta.path));
                Ok(())
            } else if meta.path.is_ident("crate") && place == WirePlace::Type {
                let lit: LitStr = meta.value()?.parse()?;
                out.krate = Some(lit.parse()?);
                Ok(())
            } else {
                let allowed = match place {
                    WirePlace::Type => {
                        "the options here are `secret` and `crate = \"path::to::remote_core\"`"
                    }
                    WirePlace::Variant => {
                        "the only option on a variant is `secret` (it marks every field of the \
                         variant)"
                    }
                    WirePlace::Field => "the only option on a field is `secret`",
                };
                Err(meta.error(format!(
                    "unknown option `{}` in `#[wire(...)]`; {allowed}",
                    path_text(&meta.path)
                )))
            }
        });
        if let Err(e) = res {
            cx.push(e);
        }
    }
    out
}

/// The doc comment of an item, lines joined with `\n`.
pub(crate) fn doc_string(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                let v = s.value();
                lines.push(v.strip_prefix(' ').unwrap_or(&v).trim_end().to_owned());
            }
        }
    }
    lines.join("\n").trim().to_owned()
}

fn path_text(p: &Path) -> String {
    p.to_token_stream().to_string().replace(' ', "")
}
