//! `#[remote(cache(ttl = "5s"))]` and `#[remote(invalidates(a, b))]` on
//! trait methods: parsing, the compile-time checks (a cached method takes
//! `&self` and no capability crosses it; invalidated names are cached
//! methods of the trait), and the `CacheRole` generated code passes.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::{FnArg, Ident, LitStr};

use crate::ast::Method;
use crate::ctxt::Ctxt;

/// A method's caching option.
pub(crate) enum CacheOpt {
    /// `cache(ttl = "..")`.
    Cached { ttl_ms: u64, span: Span },
    /// `invalidates(a, b)`: the names as written, then their wire names.
    Invalidates {
        names: Vec<Ident>,
        wire: Vec<String>,
    },
}

/// `memoize(ttl = "..")`: the server keeps replies.
pub(crate) struct MemoOpt {
    pub(crate) ttl_ms: u64,
    span: Span,
}

/// Parses `cache(ttl = "5s")`.
pub(crate) fn parse_cache(meta: &ParseNestedMeta<'_>) -> syn::Result<CacheOpt> {
    let (ttl_ms, span) = parse_ttl(meta, "cache")?;
    Ok(CacheOpt::Cached { ttl_ms, span })
}

/// Parses `memoize(ttl = "5s")`.
pub(crate) fn parse_memoize(meta: &ParseNestedMeta<'_>) -> syn::Result<MemoOpt> {
    let (ttl_ms, span) = parse_ttl(meta, "memoize")?;
    Ok(MemoOpt { ttl_ms, span })
}

/// Parses `<what>(ttl = "5s")`.
fn parse_ttl(meta: &ParseNestedMeta<'_>, what: &str) -> syn::Result<(u64, Span)> {
    let span = syn::spanned::Spanned::span(&meta.path);
    if !meta.input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            span,
            format!("`{what}` needs a time to live: `{what}(ttl = \"5s\")`"),
        ));
    }
    let mut ttl = None;
    meta.parse_nested_meta(|m| {
        if m.path.is_ident("ttl") {
            let lit: LitStr = m.value()?.parse()?;
            ttl = Some(parse_duration_ms(&lit.value()).ok_or_else(|| {
                syn::Error::new(
                    lit.span(),
                    "expected a duration such as \"500ms\", \"5s\", \"2m\" or \"1h\" (more than zero)",
                )
            })?);
            Ok(())
        } else {
            Err(m.error(format!(
                "the only option of `{what}(..)` is `ttl = \"5s\"`"
            )))
        }
    })?;
    match ttl {
        Some(ttl_ms) => Ok((ttl_ms, span)),
        None => Err(syn::Error::new(
            span,
            format!("`{what}(..)` needs a time to live: `{what}(ttl = \"5s\")`"),
        )),
    }
}

/// Parses `invalidates(get, list)`.
pub(crate) fn parse_invalidates(meta: &ParseNestedMeta<'_>) -> syn::Result<CacheOpt> {
    let mut names = Vec::new();
    meta.parse_nested_meta(|m| {
        names.push(m.path.require_ident()?.clone());
        Ok(())
    })?;
    if names.is_empty() {
        return Err(meta.error("`invalidates(..)` names the cached methods it invalidates"));
    }
    Ok(CacheOpt::Invalidates {
        names,
        wire: Vec::new(),
    })
}

/// `"500ms"`, `"5s"`, `"2m"`, `"1h"` in milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    (ms > 0).then_some(ms)
}

/// Whether a type names a capability (`Remote<..>` or `RemoteStream<..>`)
/// anywhere in it; returns the offending token.
fn capability_in(tokens: TokenStream) -> Option<Ident> {
    for tt in tokens {
        match tt {
            TokenTree::Ident(i) if i == "Remote" || i == "RemoteStream" => return Some(i),
            TokenTree::Group(g) => {
                if let Some(i) = capability_in(g.stream()) {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The checks of a cached or memoised method: `&self`, and no capability
/// in its arguments or result.
fn check_cacheable(cx: &mut Ctxt, m: &Method, span: Span, what: &str) {
    let by_ref = matches!(
        m.item.sig.inputs.first(),
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none()
    );
    if !by_ref {
        cx.push(syn::Error::new(
            span,
            format!(
                "a {what} method takes `&self`: its result must depend only on the object and \
                 the arguments"
            ),
        ));
    }
    let types = m
        .args
        .iter()
        .map(|a| a.ty.to_token_stream())
        .chain(std::iter::once(m.item.sig.output.to_token_stream()));
    for ty in types {
        if let Some(cap) = capability_in(ty) {
            let verb = if what == "cached" {
                "cached"
            } else {
                "memoised"
            };
            cx.error(
                &cap,
                format!(
                    "method `{}` cannot be {verb}: `{cap}` is a capability, and a {what} result \
                     or key must be plain `Wire` data (cache the methods of the object it names \
                     instead)",
                    m.ident
                ),
            );
        }
    }
}

/// Checks every method's option and resolves invalidated names to wire names.
pub(crate) fn check(cx: &mut Ctxt, methods: &mut [Method]) {
    let cached: Vec<(String, String)> = methods
        .iter()
        .filter(|m| matches!(m.cache, Some(CacheOpt::Cached { .. })) || m.memoize.is_some())
        .map(|m| (m.ident.to_string(), m.wire_name.clone()))
        .collect();
    for m in methods.iter_mut() {
        if let Some(memo) = &m.memoize {
            check_cacheable(cx, m, memo.span, "memoised");
        }
        match &mut m.cache {
            None => {}
            Some(CacheOpt::Cached { span, .. }) => {
                let span = *span;
                check_cacheable(cx, m, span, "cached");
            }
            Some(CacheOpt::Invalidates { names, wire }) => {
                for n in names.iter() {
                    match cached.iter().find(|(rust, _)| n == rust) {
                        Some((_, w)) => wire.push(w.clone()),
                        None => cx.error(
                            n,
                            format!(
                                "`invalidates({n})`: this trait has no method `{n}` marked \
                                 `#[remote(cache(..))]` or `#[remote(memoize(..))]`"
                            ),
                        ),
                    }
                }
            }
        }
    }
}

/// `&CacheRole::..` for a method with an option, `None` tokens otherwise.
pub(crate) fn role(m: &Method, p: &TokenStream) -> Option<TokenStream> {
    match m.cache.as_ref()? {
        CacheOpt::Cached { ttl_ms, .. } => Some(quote!(&#p::CacheRole::Cached { ttl_ms: #ttl_ms })),
        CacheOpt::Invalidates { wire, .. } => {
            Some(quote!(&#p::CacheRole::Invalidates(&[#(#wire),*])))
        }
    }
}

/// The serving side's part in a method's dispatch arm, as `(lookup,
/// invalidate, reply)`: a memoised method is looked up before its
/// arguments are decoded (a hit is answered without running it) and its
/// reply is stored; a write that invalidates cached methods tells every
/// other peer holding the object before its reply goes (CACHING.md).
pub(crate) fn dispatch_hooks(
    m: &Method,
    p: &TokenStream,
    dyn_ty: &TokenStream,
) -> (TokenStream, TokenStream, TokenStream) {
    let wire = &m.wire_name;
    let invalidate = match &m.cache {
        Some(CacheOpt::Invalidates { wire: names, .. }) => {
            quote!(#p::invalidated::<#dyn_ty>(&__cx, &__obj, &[#(#names),*]).await;)
        }
        _ => quote!(),
    };
    let Some(memo) = &m.memoize else {
        return (quote!(), invalidate, quote!(__cx.reply(__r)));
    };
    let ttl = memo.ttl_ms;
    let lookup = quote! {
        let (__memo, __cx) =
            match #p::memo_lookup::<#dyn_ty>(__cx, &self.0, #wire, #ttl, &__args) {
                #p::Ok(__miss) => __miss,
                #p::Err(__hit) => return #p::Ok(__hit),
            };
    };
    (lookup, invalidate, quote!(__cx.reply_memo(__r, __memo)))
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_parse_with_units_and_refuse_zero_or_junk() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("5s"), Some(5000));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        for bad in ["0s", "5", "s", "5 days", "-1s", ""] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }
}
