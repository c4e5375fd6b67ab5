//! Semantic checks of a `#[remote]` trait. Each mistake is reported at its
//! own span with what to write instead; all of them are collected.

use std::collections::BTreeMap;

use quote::ToTokens;
use syn::{
    FnArg, GenericArgument, GenericParam, Generics, PathArguments, ReturnType, TraitItem, Type,
    TypeParamBound, WherePredicate,
};

use crate::ast::{Method, RemoteTrait};
use crate::ctxt::Ctxt;

/// Arguments travel as a tuple, and `Wire` is implemented for tuples up to 12.
const MAX_ARGS: usize = 12;

/// Checks the whole trait.
pub(crate) fn check_trait(cx: &mut Ctxt, t: &RemoteTrait) {
    let item = &t.item;
    if let Some(u) = &item.unsafety {
        cx.error(
            u,
            "a `#[remote]` trait cannot be `unsafe`: a peer could not uphold its contract",
        );
    }
    if let Some(a) = &item.auto_token {
        cx.error(a, "`#[remote]` does not apply to auto traits");
    }
    check_supertraits(cx, item);
    check_trait_generics(cx, &item.generics);
    for ti in &item.items {
        match ti {
            TraitItem::Fn(_) => {}
            TraitItem::Const(c) => cx.error(
                &c.ident,
                "associated constants are not supported in a `#[remote]` trait: a proxy has no \
                 way to know the remote object's value; use a method such as \
                 `fn limit(&self) -> Result<u32, remote_core::Error>`, or a `const` outside the trait",
            ),
            TraitItem::Type(ty) => cx.error(
                &ty.ident,
                "associated types are not supported in a `#[remote]` trait: the trait must be \
                 usable as `dyn Trait` with every type known; make it a type parameter \
                 (`trait Store<T: Wire>`) or use a concrete type",
            ),
            TraitItem::Macro(m) => cx.error(
                m,
                "`#[remote]` cannot see the methods a macro would produce; write the methods out",
            ),
            other => cx.error(other, "this item is not supported in a `#[remote]` trait; only methods are"),
        }
    }
    let mut seen: BTreeMap<&str, &Method> = BTreeMap::new();
    for m in &t.methods {
        check_method(cx, m);
        if let Some(first) = seen.insert(&m.wire_name, m) {
            cx.error(
                &m.ident,
                format!(
                    "two methods have the wire name {:?} (`{}` and `{}`); give one of them \
                     `#[remote(name = \"...\")]`",
                    m.wire_name, first.ident, m.ident
                ),
            );
        }
        if m.ident.to_string().starts_with("__remote") {
            cx.error(
                &m.ident,
                "method names starting with `__remote` are reserved for generated code",
            );
        }
    }
}

fn check_supertraits(cx: &mut Ctxt, item: &syn::ItemTrait) {
    for b in &item.supertraits {
        let ok = match b {
            TypeParamBound::Lifetime(l) => l.ident == "static",
            TypeParamBound::Trait(t) => t.path.segments.last().is_some_and(|s| {
                (s.ident == "Send" || s.ident == "Sync") && s.arguments.is_empty()
            }),
            _ => false,
        };
        if !ok {
            cx.error(
                b,
                "a `#[remote]` trait cannot have supertraits (other than `Send`, `Sync` and \
                 `'static`, which it gets anyway): the generated client could not implement them; \
                 add the methods to this trait, or pass a second object as `Remote<dyn Other>`",
            );
        }
    }
}

/// Type parameters need `T: Wire`; lifetimes and const parameters are refused.
pub(crate) fn check_trait_generics(cx: &mut Ctxt, g: &Generics) {
    for p in &g.params {
        match p {
            GenericParam::Lifetime(l) => cx.error(
                l,
                "a `#[remote]` trait cannot have lifetime parameters: values cross the wire \
                 by value and remote objects are `'static`; use owned types",
            ),
            GenericParam::Const(c) => cx.error(
                c,
                "a `#[remote]` trait cannot have const parameters; use a type parameter or a \
                 method argument",
            ),
            GenericParam::Type(tp) => {
                let in_where = g
                    .where_clause
                    .iter()
                    .flat_map(|w| &w.predicates)
                    .any(|pred| match pred {
                        WherePredicate::Type(pt) => {
                            is_param(&pt.bounded_ty, &tp.ident)
                                && pt.bounds.iter().any(is_wire_bound)
                        }
                        _ => false,
                    });
                if !tp.bounds.iter().any(is_wire_bound) && !in_where {
                    let name = &tp.ident;
                    cx.error(
                        tp,
                        format!(
                            "type parameter `{name}` of a `#[remote]` trait must be bounded by \
                             `Wire`, because its values cross the wire: write `{name}: Wire` \
                             (`remote_core::Wire`)"
                        ),
                    );
                }
            }
        }
    }
}

fn is_param(ty: &Type, ident: &syn::Ident) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident(ident))
}

fn is_wire_bound(b: &TypeParamBound) -> bool {
    matches!(b, TypeParamBound::Trait(t) if t.path.segments.last().is_some_and(|s| s.ident == "Wire"))
}

fn check_method(cx: &mut Ctxt, m: &Method) {
    let sig = &m.item.sig;
    let name = &sig.ident;
    if let Some(c) = &sig.constness {
        cx.error(c, "a remote method cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        cx.error(
            u,
            "a remote method cannot be `unsafe`: a peer could not uphold its contract",
        );
    }
    if let Some(abi) = &sig.abi {
        cx.error(abi, "a remote method cannot have an `extern` ABI");
    }
    if let Some(v) = &sig.variadic {
        cx.error(v, "a remote method cannot be variadic");
    }
    check_receiver(cx, m);
    if !sig.generics.params.is_empty() {
        cx.error(
            &sig.generics,
            format!(
                "remote method `{name}` cannot be generic: `dyn Trait` cannot dispatch generic \
                 methods and the wire needs concrete types; use concrete types, or make the type \
                 a parameter of the trait (`trait Store<T: Wire>`)"
            ),
        );
    } else if let Some(w) = &sig.generics.where_clause {
        cx.error(
            w,
            format!("remote method `{name}` cannot have a `where` clause"),
        );
    }
    for arg in &m.args {
        check_arg_type(cx, &arg.ty);
    }
    if m.args.len() > MAX_ARGS {
        cx.error(
            &sig.inputs,
            format!(
                "remote method `{name}` has {} arguments; at most {MAX_ARGS} are supported \
                 (arguments travel as a tuple); group them in a `#[derive(Wire)]` struct",
                m.args.len()
            ),
        );
    }
    check_return(cx, m);
}

fn check_receiver(cx: &mut Ctxt, m: &Method) {
    let sig = &m.item.sig;
    let name = &sig.ident;
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) => {
            if r.colon_token.is_some() {
                cx.error(
                    r,
                    format!(
                        "remote method `{name}` must take `&self`: a remote object is shared by \
                         every peer that holds it, so custom receivers are not supported"
                    ),
                );
            } else if r.reference.is_none() {
                cx.error(
                    r,
                    format!(
                        "remote method `{name}` takes `self` by value, but a remote object is \
                         shared (behind an `Arc`) and cannot be consumed by a call; take `&self`"
                    ),
                );
            } else if r.mutability.is_some() {
                cx.error(
                    r,
                    format!(
                        "remote method `{name}` takes `&mut self`, but a remote object is shared \
                         by every peer that holds it; take `&self` and keep mutable state behind \
                         a `Mutex`, `RwLock` or atomic"
                    ),
                );
            } else if let Some((_, Some(lt))) = &r.reference {
                cx.error(lt, "write `&self` without a named lifetime");
            }
        }
        _ => cx.error(
            &sig.ident,
            format!(
                "remote method `{name}` has no `&self` receiver: remote methods are called on an \
                 object; add `&self` as the first parameter (a constructor belongs outside the \
                 trait)"
            ),
        ),
    }
}

/// References and `impl Trait` anywhere in an argument type.
fn check_arg_type(cx: &mut Ctxt, ty: &Type) {
    match ty {
        Type::Reference(r) => {
            let owned = owned_suggestion(&r.elem);
            cx.error(
                ty,
                format!(
                    "remote method arguments cannot be references: arguments are sent by value \
                     to the object, which may be in another process; use an owned type such as \
                     `{owned}`"
                ),
            );
        }
        Type::ImplTrait(_) => cx.error(
            ty,
            "`impl Trait` arguments are not supported in remote methods: the wire needs a \
             concrete type; use a concrete `Wire` type, or `Remote<dyn YourTrait>` to pass an \
             object by reference",
        ),
        Type::Path(p) => {
            for seg in &p.path.segments {
                if let PathArguments::AngleBracketed(ab) = &seg.arguments {
                    for a in &ab.args {
                        if let GenericArgument::Type(t) = a {
                            check_arg_type(cx, t);
                        }
                    }
                }
            }
        }
        Type::Tuple(t) => t.elems.iter().for_each(|t| check_arg_type(cx, t)),
        Type::Array(a) => check_arg_type(cx, &a.elem),
        Type::Paren(p) => check_arg_type(cx, &p.elem),
        Type::Slice(_) => cx.error(ty, "an unsized slice cannot be an argument; use `Vec<T>`"),
        Type::Ptr(_) => cx.error(ty, "raw pointers cannot cross the wire; use an owned value"),
        _ => {}
    }
}

fn owned_suggestion(elem: &Type) -> String {
    match elem {
        Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
        Type::Slice(s) => format!("Vec<{}>", tokens(&s.elem)),
        Type::Path(p) if p.path.is_ident("Path") => "PathBuf".to_owned(),
        other => tokens(other),
    }
}

fn tokens(t: &impl ToTokens) -> String {
    let s = t.to_token_stream().to_string();
    s.replace(" < ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace(":: ", "::")
        .replace(" ::", "::")
}

fn check_return(cx: &mut Ctxt, m: &Method) {
    let sig = &m.item.sig;
    let name = &sig.ident;
    if m.ret.is_some() {
        if let Some(r) = &m.ret {
            check_arg_type_in_return(cx, &r.ok);
        }
        return;
    }
    const WHY: &str = "so that a lost connection or a failure in the remote object can be \
                       reported to the caller";
    match &sig.output {
        ReturnType::Default => cx.error(
            sig,
            format!(
                "remote method `{name}` must return `Result<T, E>` {WHY}; write \
                 `-> Result<(), remote_core::Error>` (or your own error type that implements \
                 `From<remote_core::Error>`)"
            ),
        ),
        ReturnType::Type(_, ty) => {
            let hint = match &**ty {
                Type::ImplTrait(_) => format!(
                    "; write `async fn {name}(...) -> Result<T, E>` instead of returning a future"
                ),
                Type::Path(tp)
                    if tp.path.segments.len() == 1 && !tp.path.segments[0].arguments.is_empty() =>
                {
                    format!(
                    "; for example `-> Result<{}, remote_core::Error>` (a type alias for a result \
                     must be named `Result`, as `remote_core::Result<T>` is)",
                    tokens(ty)
                )
                }
                _ => format!(
                    "; for example `-> Result<{}, remote_core::Error>`",
                    tokens(ty)
                ),
            };
            cx.error(
                ty,
                format!(
                    "remote method `{name}` must return `Result<T, E>` {WHY}, not `{}`{hint}",
                    tokens(ty)
                ),
            );
        }
    }
}

fn check_arg_type_in_return(cx: &mut Ctxt, ty: &Type) {
    if let Type::Reference(_) = ty {
        cx.error(
            ty,
            "a remote method cannot return a reference: results are sent by value; return an \
             owned type",
        );
    }
}
