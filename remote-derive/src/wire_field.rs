//! How `#[derive(Wire)]` serializes, deserializes and describes each field:
//! through `__private::FieldProbe` (remote-core's `checked.rs`), so a field
//! that is not `Wire` is reported once, by the derive's
//! `assert_wire::<Field>()`, and not again by serde's code as a missing
//! `Serialize` and `Deserialize` impl.
//!
//! The shadow copy that serde derives for gets
//! `#[serde(serialize_with = "__wire_ser_N", deserialize_with = "__wire_de_N")]`
//! on each such field, and the derive emits those two functions. A named
//! `Option<..>` field also gets `#[serde(default)]`, which keeps serde's
//! rule that a missing optional field is `None` (serde applies it only to
//! fields without `deserialize_with`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, ToTokens};
use syn::{Attribute, Data, DeriveInput, Field};

/// Whether a `#[serde(...)]` attribute in `attrs` names one of `idents`
/// (as `skip`, `default`, `default = "path"`, `bound = ".."`).
pub(crate) fn serde_names(attrs: &[Attribute], idents: &[&str]) -> bool {
    serde_ident(attrs, idents).is_some()
}

/// The first of `idents` that a `#[serde(...)]` attribute in `attrs` names
/// at its top level (`into` in `#[serde(into = "T")]`), for errors. The
/// invisible groups a `macro_rules!` fragment (`#[serde($m)]`, `$m:meta`)
/// arrives in are looked through, as serde does (a review hid `into` and
/// `serialize_with` so).
pub(crate) fn serde_ident(attrs: &[Attribute], idents: &[&str]) -> Option<syn::Ident> {
    fn find(tokens: proc_macro2::TokenStream, idents: &[&str]) -> Option<syn::Ident> {
        tokens.into_iter().find_map(|t| match t {
            proc_macro2::TokenTree::Ident(i) if idents.iter().any(|name| i == name) => Some(i),
            proc_macro2::TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::None => {
                find(g.stream(), idents)
            }
            _ => None,
        })
    }
    attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .filter_map(|a| a.meta.require_list().ok())
        .find_map(|list| find(list.tokens.clone(), idents))
}

/// serde's container attributes in `attrs` that change how a value
/// crosses, as written (`tag = "t"`), for the schema: what a diff of two
/// versions compares (adding `#[serde(tag = "t")]` changed the encoding,
/// and the schemas were the same: a review).
pub(crate) fn serde_container(attrs: &[Attribute]) -> Vec<String> {
    const FLAGS: &[&str] = &["transparent", "untagged", "deny_unknown_fields"];
    const VALUES: &[&str] = &["tag", "content", "rename_all", "rename_all_fields"];
    let mut out = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        // What serde itself refuses is its error, not ours.
        let _ = a.parse_nested_meta(|meta| {
            let name = meta.path.get_ident().map(ToString::to_string);
            let name = name.unwrap_or_default();
            if meta.input.peek(syn::Token![=]) {
                let value = meta.value()?;
                match value.parse::<syn::LitStr>() {
                    Ok(lit) if VALUES.contains(&name.as_str()) => {
                        out.push(format!("{name} = {:?}", lit.value()));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _: syn::Expr = value.parse()?;
                    }
                }
            } else if meta.input.peek(syn::token::Paren) {
                // `rename_all(serialize = "..", deserialize = "..")`.
                let inner;
                syn::parenthesized!(inner in meta.input);
                let tokens: TokenStream = inner.parse()?;
                if VALUES.contains(&name.as_str()) {
                    out.push(format!("{name}({tokens})"));
                }
            } else if FLAGS.contains(&name.as_str()) {
                out.push(name);
            }
            Ok(())
        });
    }
    out.sort();
    out
}

/// Whether serde skips this field entirely (`#[serde(skip)]`), so it need
/// not be `Wire`.
pub(crate) fn serde_skipped(attrs: &[Attribute]) -> bool {
    serde_names(attrs, &["skip"])
}

/// Every field of a struct or enum, in declaration order (variant by
/// variant): field `N` of [`shadow_attrs`] and [`helpers`].
pub(crate) fn all_fields(data: &Data) -> Vec<&Field> {
    match data {
        Data::Struct(s) => s.fields.iter().collect(),
        Data::Enum(e) => e.variants.iter().flat_map(|v| &v.fields).collect(),
        Data::Union(_) => Vec::new(),
    }
}

/// Whether `ty` is `Wire` whatever the crate defines: a primitive, `String`,
/// a type parameter (the derive bounds each by `Wire`), or `Option`, `Vec`,
/// `VecDeque`, `Box` or a tuple of such. Written by name, so a crate that
/// defines its own `String` gets serde's errors for it besides `Wire`'s.
fn always_wire(ty: &syn::Type, params: &[&syn::Ident]) -> bool {
    const PLAIN: &[&str] = &[
        "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
        "i128", "isize", "f32", "f64", "String",
    ];
    const WRAPPERS: &[&str] = &["Option", "Vec", "VecDeque", "Box"];
    match ty {
        syn::Type::Paren(t) => always_wire(&t.elem, params),
        syn::Type::Group(t) => always_wire(&t.elem, params),
        syn::Type::Tuple(t) => t.elems.iter().all(|e| always_wire(e, params)),
        syn::Type::Path(tp) if tp.qself.is_none() && tp.path.segments.len() == 1 => {
            let seg = &tp.path.segments[0];
            match &seg.arguments {
                syn::PathArguments::None => {
                    PLAIN.iter().any(|n| seg.ident == n) || params.iter().any(|p| seg.ident == **p)
                }
                syn::PathArguments::AngleBracketed(a) if a.args.len() == 1 => {
                    WRAPPERS.iter().any(|n| seg.ident == n)
                        && matches!(&a.args[0], syn::GenericArgument::Type(inner)
                            if always_wire(inner, params))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether the field goes through the probe: not when its type is
/// [`always_wire`] (serde's code for it cannot fail), nor when the user's
/// serde attributes already say how it is encoded or skip one direction.
pub(crate) fn routed(f: &Field, params: &[&syn::Ident]) -> bool {
    !always_wire(&f.ty, params)
        && !serde_names(
            &f.attrs,
            &[
                "skip",
                "skip_serializing",
                "skip_deserializing",
                "with",
                "serialize_with",
                "deserialize_with",
                "flatten",
                "getter",
            ],
        )
}

/// Whether `ty` is written `Option<..>` (any path ending in `Option`).
fn is_option(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(tp)
        if tp.qself.is_none() && tp.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// The serde attributes added to the shadow's copy of field `index`.
/// `container_default`: the struct has `#[serde(default)]`.
pub(crate) fn shadow_attrs(
    f: &Field,
    index: usize,
    container_default: bool,
    params: &[&syn::Ident],
) -> TokenStream {
    if !routed(f, params) {
        return quote!();
    }
    let ser = format!("__wire_ser_{index}");
    let de = format!("__wire_de_{index}");
    let default = if f.ident.is_some()
        && is_option(&f.ty)
        && !container_default
        && !serde_names(&f.attrs, &["default"])
    {
        quote!(#[serde(default)])
    } else {
        quote!()
    };
    quote! {
        #[serde(serialize_with = #ser, deserialize_with = #de)]
        #default
    }
}

/// Whether `tokens` contain the identifier `ident`.
fn mentions(tokens: TokenStream, ident: &syn::Ident) -> bool {
    tokens.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == *ident,
        proc_macro2::TokenTree::Group(g) => mentions(g.stream(), ident),
        _ => false,
    })
}

/// `generics` cut to the parameters that `ty` names (and the `where`
/// predicates about those alone): serde calls a field's function with the
/// field only, so every parameter must be inferable from its type.
fn generics_of(ty: &syn::Type, generics: &syn::Generics) -> syn::Generics {
    let names = |gp: &syn::GenericParam| match gp {
        syn::GenericParam::Type(t) => Some(t.ident.clone()),
        syn::GenericParam::Const(c) => Some(c.ident.clone()),
        syn::GenericParam::Lifetime(_) => None,
    };
    let all: Vec<syn::Ident> = generics.params.iter().filter_map(names).collect();
    let used = |i: &syn::Ident| mentions(ty.to_token_stream(), i);
    let mut g = generics.clone();
    g.params = generics
        .params
        .iter()
        .filter(|gp| names(gp).is_some_and(|i| used(&i)))
        .cloned()
        .collect();
    if let Some(w) = &mut g.where_clause {
        w.predicates = w
            .predicates
            .iter()
            .filter(|pr| {
                all.iter()
                    .all(|i| used(i) || !mentions(pr.to_token_stream(), i))
            })
            .cloned()
            .collect();
    }
    g
}

/// The `serialize_with` / `deserialize_with` functions of every routed
/// field, generic over the type's (`Wire`-bounded) parameters it names.
pub(crate) fn helpers(
    input: &DeriveInput,
    generics: &syn::Generics,
    p: &TokenStream,
) -> TokenStream {
    let params: Vec<&syn::Ident> = input.generics.type_params().map(|t| &t.ident).collect();
    all_fields(&input.data)
        .into_iter()
        .enumerate()
        .filter(|(_, f)| routed(f, &params))
        .map(|(i, f)| {
            let generics = generics_of(&f.ty, generics);
            let mut ser_g = generics.clone();
            ser_g
                .params
                .push(syn::parse_quote!(__S: #p::serde::Serializer));
            let mut de_g = generics;
            de_g.params.insert(0, syn::parse_quote!('de));
            de_g.params
                .push(syn::parse_quote!(__D: #p::serde::Deserializer<'de>));
            let (ser_impl, _, ser_where) = ser_g.split_for_impl();
            let (de_impl, _, de_where) = de_g.split_for_impl();
            let ty = &f.ty;
            let ser = format_ident!("__wire_ser_{}", i);
            let de = format_ident!("__wire_de_{}", i);
            quote! {
                #[allow(dead_code)]
                fn #ser #ser_impl (
                    value: &#ty,
                    serializer: __S,
                ) -> #p::Result<__S::Ok, __S::Error> #ser_where {
                    use #p::{FieldNotWire as _, FieldWire as _};
                    (&&#p::FieldProbe::<#ty>::NEW).serialize(value, serializer)
                }
                #[allow(dead_code)]
                fn #de #de_impl (deserializer: __D) -> #p::Result<#ty, __D::Error> #de_where {
                    use #p::{FieldNotWire as _, FieldWire as _};
                    (&&#p::FieldProbe::<#ty>::NEW).deserialize(deserializer)
                }
            }
        })
        .collect()
}

/// The `Ty` of a field in the type's description (`b.ty::<Field>()`
/// through the probe, so it does not repeat the field's error).
pub(crate) fn describe_ty(ty: &syn::Type, p: &TokenStream) -> TokenStream {
    quote! {
        {
            use #p::{FieldNotWire as _, FieldWire as _};
            (&&#p::FieldProbe::<#ty>::NEW).describe(b)
        }
    }
}
