//! Typed view of a `#[remote]` trait. Keeps the syn nodes, so errors and
//! generated code carry the user's spans.

use proc_macro2::Span;
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, ReturnType, TraitItem, Type,
};

use crate::attr::{self, MethodPlace};
use crate::ctxt::Ctxt;

/// A trait under `#[remote]`, our attributes removed from `item`.
pub(crate) struct RemoteTrait {
    /// The trait as the user wrote it, minus `#[remote(...)]` on methods.
    pub(crate) item: ItemTrait,
    /// The methods, in declaration order.
    pub(crate) methods: Vec<Method>,
    /// Its doc comment.
    pub(crate) doc: String,
    /// The proxy type's name (`ChatClient`).
    pub(crate) client: Ident,
}

/// One method of a remote trait.
pub(crate) struct Method {
    /// The method as written (attributes stripped of ours).
    pub(crate) item: syn::TraitItemFn,
    /// Rust name.
    pub(crate) ident: Ident,
    /// Name on the wire.
    pub(crate) wire_name: String,
    /// `async fn` (else blocking).
    pub(crate) is_async: bool,
    /// `#[remote(requires_auth)]`.
    pub(crate) requires_auth: bool,
    /// `#[remote(cache(..))]` or `#[remote(invalidates(..))]`.
    pub(crate) cache: Option<crate::cache::CacheOpt>,
    /// `#[remote(priority = ..)]`: the `Priority` variant.
    pub(crate) priority: Option<Ident>,
    /// `#[remote(memoize(..))]`: the server keeps replies.
    pub(crate) memoize: Option<crate::cache::MemoOpt>,
    /// Arguments after the receiver.
    pub(crate) args: Vec<Arg>,
    /// `Result<T, E>`, when the return type is one.
    pub(crate) ret: Option<Ret>,
    /// Doc comment.
    pub(crate) doc: String,
}

/// A method argument.
pub(crate) struct Arg {
    /// Binding in generated signatures (the user's name, `argN` for patterns).
    pub(crate) ident: Ident,
    /// Name in the schema.
    pub(crate) name: String,
    /// Its type.
    pub(crate) ty: Type,
}

/// A method's `Result<T, E>`.
pub(crate) struct Ret {
    /// The whole return type.
    pub(crate) full: Type,
    /// `T`.
    pub(crate) ok: Type,
    /// `E`, when written (`Result<T>` aliases leave it to type inference).
    pub(crate) err: Option<Type>,
}

impl RemoteTrait {
    /// Builds the view; method option mistakes go to `cx`.
    pub(crate) fn from_syn(cx: &mut Ctxt, mut item: ItemTrait) -> RemoteTrait {
        let mut methods = Vec::new();
        for ti in &mut item.items {
            if let TraitItem::Fn(f) = ti {
                let opts = attr::take_method_args(cx, &mut f.attrs, MethodPlace::Trait);
                let mut m = Method::new(f.clone(), opts.name, opts.requires_auth);
                m.cache = opts.cache;
                m.priority = opts.priority;
                m.memoize = opts.memoize;
                methods.push(m);
            }
        }
        crate::cache::check(cx, &mut methods);
        let doc = attr::doc_string(&item.attrs);
        let client = quote::format_ident!("{}Client", item.ident);
        RemoteTrait {
            item,
            methods,
            doc,
            client,
        }
    }

    /// The trait's name.
    pub(crate) fn ident(&self) -> &Ident {
        &self.item.ident
    }

    /// Whether the trait has type parameters.
    pub(crate) fn is_generic(&self) -> bool {
        self.item.generics.type_params().next().is_some()
    }
}

impl Method {
    /// The parameters as a signature lists them, `name: Type` each (the
    /// receiver aside).
    pub(crate) fn typed_args(&self) -> Vec<proc_macro2::TokenStream> {
        self.args
            .iter()
            .map(|a| {
                let (i, ty) = (&a.ident, &a.ty);
                quote::quote!(#i: #ty)
            })
            .collect()
    }

    pub(crate) fn new(
        item: syn::TraitItemFn,
        name: Option<syn::LitStr>,
        requires_auth: bool,
    ) -> Method {
        let sig = &item.sig;
        let ident = sig.ident.clone();
        let wire_name = match name {
            Some(lit) => lit.value(),
            None => ident.to_string().trim_start_matches("r#").to_owned(),
        };
        let args = sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .enumerate()
            .map(|(i, t)| {
                let ident = arg_ident(&t.pat, i);
                let name = ident.to_string().trim_start_matches("r#").to_owned();
                Arg {
                    ident,
                    name,
                    ty: (*t.ty).clone(),
                }
            })
            .collect();
        let ret = Ret::from_output(&sig.output);
        let doc = attr::doc_string(&item.attrs);
        Method {
            is_async: sig.asyncness.is_some(),
            ident,
            wire_name,
            requires_auth,
            cache: None,
            priority: None,
            memoize: None,
            args,
            ret,
            doc,
            item,
        }
    }
}

fn arg_ident(pat: &Pat, index: usize) -> Ident {
    match pat {
        Pat::Ident(p) if p.subpat.is_none() && p.ident != "self" => p.ident.clone(),
        _ => Ident::new(&format!("arg{index}"), Span::call_site()),
    }
}

impl Ret {
    /// `Some` when `out` is a path type whose last segment is `Result<T>` or
    /// `Result<T, E>`.
    pub(crate) fn from_output(out: &ReturnType) -> Option<Ret> {
        let ReturnType::Type(_, ty) = out else {
            return None;
        };
        let Type::Path(tp) = &**ty else { return None };
        if tp.qself.is_some() {
            return None;
        }
        let last = tp.path.segments.last()?;
        if last.ident != "Result" {
            return None;
        }
        let PathArguments::AngleBracketed(ab) = &last.arguments else {
            return None;
        };
        let tys: Vec<&Type> = ab
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect();
        match tys.as_slice() {
            [ok] => Some(Ret {
                full: (**ty).clone(),
                ok: (*ok).clone(),
                err: None,
            }),
            [ok, err] => Some(Ret {
                full: (**ty).clone(),
                ok: (*ok).clone(),
                err: Some((*err).clone()),
            }),
            _ => None,
        }
    }
}
