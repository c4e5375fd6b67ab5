//! `#[derive(Wire)]`: serde's traits through a hidden shadow copy of the type
//! (serde's `remote = "..."` derive gives correct code for every shape), plus
//! `Wire` with a `describe` that defines the type's `TypeDef`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, GenericParam, Ident};

use crate::attr::{self, WirePlace};
use crate::ctxt::Ctxt;
use crate::wire_field::{self, serde_ident, serde_names, serde_skipped};

/// Container attributes with which serde encodes another type than the
/// one described (or not this derive's code at all): refused.
const OTHER_TYPE_ON_WIRE: &[&str] = &["into", "from", "try_from", "remote"];

/// Field attributes with which serde encodes the field by other code than
/// its type's: the field is described as `Ty::Opaque`.
const OTHER_CODE_ON_WIRE: &[&str] = &["with", "serialize_with", "deserialize_with", "getter"];

/// The whole derive; errors come back as `compile_error!`s.
pub(crate) fn derive(input: DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let type_args = attr::wire_args(&mut cx, &input.attrs, WirePlace::Type);
    if let Some(id) = serde_ident(&input.attrs, OTHER_TYPE_ON_WIRE) {
        cx.error(
            &id,
            format!(
                "`#[derive(Wire)]` does not support `#[serde({id} = \"...\")]`: serde would \
                 encode another type than the fields this derive describes, so the schema and \
                 the policy checker would see the wrong data; implement `Wire` (and serde's \
                 traits) by hand, with a `describe` that describes what crosses the wire (for \
                 example `fn describe(b) -> Ty {{ b.ty::<Target>() }}`)"
            ),
        );
    }
    let p = match &type_args.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::remote_core::__private),
    };
    for gp in &input.generics.params {
        if let GenericParam::Lifetime(l) = gp {
            cx.error(
                l,
                "a `Wire` type cannot have lifetime parameters: values that cross the wire own \
                 their data; use owned types such as `String` and `Vec<T>`",
            );
        }
    }
    let kind = match &input.data {
        Data::Struct(s) => {
            let fields = field_defs(
                &mut cx,
                &s.fields,
                serde_names(&input.attrs, &["default"]),
                None,
                &p,
            );
            quote!(#p::TypeKind::Struct { fields: #fields })
        }
        Data::Enum(e) => {
            let variants = e.variants.iter().map(|v| {
                let name = v.ident.to_string();
                let args = attr::wire_args(&mut cx, &v.attrs, WirePlace::Variant);
                if let (Some(span), Fields::Unit) = (args.secret_span, &v.fields) {
                    cx.push(syn::Error::new(
                        span,
                        "`#[wire(secret)]` on a variant marks its fields secret, and a unit \
                         variant has none; mark the enum `#[wire(secret)]` instead",
                    ));
                }
                if let Some(id) = serde_ident(&v.attrs, OTHER_CODE_ON_WIRE) {
                    cx.error(
                        &id,
                        format!(
                            "`#[derive(Wire)]` does not support `#[serde({id} = \"...\")]` on a \
                             variant: other data than the variant's fields would cross the \
                             wire; put it on the fields (they are then described as opaque), \
                             or implement `Wire` by hand"
                        ),
                    );
                }
                let fields = field_defs(&mut cx, &v.fields, false, Some((&name, args.secret)), &p);
                quote!(#p::VariantDef { name: #p::ToString::to_string(#name), fields: #fields })
            });
            let variants = crate::expand::vec_expr(variants.collect(), &p);
            quote!(#p::TypeKind::Enum { variants: #variants })
        }
        Data::Union(u) => {
            cx.error(
                u.union_token,
                "`#[derive(Wire)]` supports structs and enums, not unions: a union's active \
                 field is unknown, so it cannot be encoded",
            );
            quote!()
        }
    };
    if !cx.is_ok() {
        return cx.to_compile_errors();
    }
    let asserts = wire_asserts(&input.data, &p);
    let field_fns = wire_field::helpers(&input, &wire_bounded(&input.generics, &p), &p);
    let shadow = shadow(&input, &p);
    let buffered = buffered(&input);
    let serde_impls = serde_impls(&input, buffered, &p);
    let ident = &input.ident;
    let name = ident.to_string();
    let secret = type_args.secret;
    let serde_attrs = wire_field::serde_container(&input.attrs);
    let generics = wire_bounded(&input.generics, &p);
    let (impl_g, ty_g, where_clause) = generics.split_for_impl();
    let span = ident.span();
    let location = crate::expand::location(span, &p);
    quote! {
        const _: () = {
            #[allow(dead_code)]
            fn __assert_fields_are_wire #impl_g () #where_clause {
                #asserts
            }
            #field_fns
            #shadow
            #serde_impls

            impl #impl_g #p::Wire for #ident #ty_g #where_clause {
                fn describe(b: &mut #p::SchemaBuilder) -> #p::Ty {
                    let path = #p::ToString::to_string(::core::any::type_name::<Self>());
                    let at = #location;
                    b.define_type_at(::core::clone::Clone::clone(&path), ::core::any::TypeId::of::<Self>(), &at, |b| #p::TypeDef {
                        path,
                        name: #p::ToString::to_string(#name),
                        kind: #kind,
                        secret: #secret,
                        location: ::core::clone::Clone::clone(&at),
                        serde: <[_]>::into_vec(#p::Box::new([#(#p::ToString::to_string(#serde_attrs)),*])),
                    })
                }
            }
        };
    }
}

/// `Vec<FieldDef>` expression for a struct's or variant's fields.
/// `container_default`: the struct has `#[serde(default)]`;
/// `variant`: the variant's name, and whether it is `#[wire(secret)]`.
fn field_defs(
    cx: &mut Ctxt,
    fields: &Fields,
    container_default: bool,
    variant: Option<(&str, bool)>,
    p: &TokenStream,
) -> TokenStream {
    let all_secret = variant.is_some_and(|(_, secret)| secret);
    // Every field's `#[wire(...)]` is read, skipped ones too: a typo is an
    // error wherever it is.
    let args: Vec<_> = fields
        .iter()
        .map(|f| attr::wire_args(cx, &f.attrs, WirePlace::Field))
        .collect();
    let defs: Vec<TokenStream> = fields
        .iter()
        .zip(args)
        .enumerate()
        .filter(|(_, (f, _))| !serde_skipped(&f.attrs))
        .map(|(i, (f, args))| {
            let name = match &f.ident {
                Some(id) => id.to_string().trim_start_matches("r#").to_owned(),
                None => i.to_string(),
            };
            let (ty, secret) = (&f.ty, args.secret || all_secret);
            let ty_expr = match serde_ident(&f.attrs, OTHER_CODE_ON_WIRE) {
                // Other code than the type's encodes it: fail closed.
                Some(how) => {
                    let suffix = match variant {
                        Some((v, _)) => format!(".{v}.{name} (#[serde({how})])"),
                        None => format!(".{name} (#[serde({how})])"),
                    };
                    quote! {
                        {
                        // Its type still counts in what the server weighs
                        // serde's buffer at (`SchemaBuilder::densest`).
                        {
                            use #p::{FieldNotWire as _, FieldWire as _};
                            (&&#p::FieldProbe::<#ty>::NEW).sized(b);
                        }
                        #p::Ty::Opaque {
                            name: {
                                let mut name = #p::ToString::to_string(
                                    ::core::any::type_name::<Self>(),
                                );
                                name.push_str(#suffix);
                                name
                            },
                            // What crosses is made from it: a secret it
                            // holds crosses too (review pass 46: a secret
                            // type's field encoded as hex was described
                            // by its name alone, and passed the check).
                            declared: ::core::option::Option::Some(#p::Box::new({
                                use #p::{FieldNotWire as _, FieldWire as _};
                                (&&#p::FieldProbe::<#ty>::NEW).describe(b)
                            })),
                        }
                        }
                    }
                }
                None => wire_field::describe_ty(ty, p),
            };
            // Absent from what decodes, as a default field may be (red-team
            // pass 39: counted as decoded, a 2 KiB skipped field made its
            // struct weigh 8 bytes an item).
            let default =
                container_default || serde_names(&f.attrs, &["default", "skip_deserializing"]);
            let span = f.ident.as_ref().map_or_else(|| f.ty.span(), |i| i.span());
            let location = crate::expand::location(span, p);
            quote! {
                #p::FieldDef {
                    name: #p::ToString::to_string(#name),
                    ty: #ty_expr,
                    secret: #secret,
                    default: #default,
                    location: ::core::option::Option::Some(#location),
                }
            }
        })
        .collect();
    crate::expand::vec_expr(defs, p)
}

/// A spanned `assert_wire::<FieldTy>()` for every field serde encodes.
fn wire_asserts(data: &Data, p: &TokenStream) -> TokenStream {
    wire_field::all_fields(data)
        .into_iter()
        .filter(|f| !serde_skipped(&f.attrs))
        .map(|f| {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> #p::assert_wire::<#ty>();)
        })
        .collect()
}

fn shadow_ident(ident: &Ident) -> Ident {
    format_ident!("__Wire{}", ident)
}

/// Only `serde` and `cfg` attributes survive on the shadow copy.
fn keep_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("serde") || a.path().is_ident("cfg"))
        .collect()
}

/// The hidden copy that serde derives `remote = "Type<..>"` code for.
fn shadow(input: &DeriveInput, p: &TokenStream) -> TokenStream {
    let ident = &input.ident;
    let shadow = shadow_ident(ident);
    let has_params = input.generics.type_params().next().is_some();
    let (generics, bound) = if has_params && !serde_names(&input.attrs, &["bound"]) {
        // As in `serde_impls`: `Wire` bounds only, and serde told to infer none.
        (
            wire_bounded(&input.generics, p),
            quote!(#[serde(bound = "")]),
        )
    } else {
        (input.generics.clone(), quote!())
    };
    let generics = &generics;
    let where_clause = &generics.where_clause;
    // serde adds the generic arguments itself.
    let remote = ident.to_string();
    let serde_crate = format!("{p}::serde").replace(' ', "");
    let attrs = keep_attrs(&input.attrs);
    let all = wire_field::all_fields(&input.data);
    let container_default = serde_names(&input.attrs, &["default"]);
    let params: Vec<&Ident> = input.generics.type_params().map(|t| &t.ident).collect();
    let fields = |fields: &Fields| -> TokenStream {
        let fs = fields.iter().map(|f| {
            let attrs = keep_attrs(&f.attrs);
            let index = all.iter().position(|g| std::ptr::eq(*g, f)).unwrap_or(0);
            let routed = wire_field::shadow_attrs(f, index, container_default, &params);
            let ty = &f.ty;
            match &f.ident {
                Some(id) => quote!(#(#attrs)* #routed #id: #ty),
                None => quote!(#(#attrs)* #routed #ty),
            }
        });
        match fields {
            Fields::Named(_) => quote!({ #(#fs,)* }),
            Fields::Unnamed(_) => quote!(( #(#fs,)* )),
            Fields::Unit => quote!(),
        }
    };
    let body = match &input.data {
        Data::Struct(s) => {
            let fs = fields(&s.fields);
            match &s.fields {
                Fields::Named(_) => quote!(struct #shadow #generics #where_clause #fs),
                _ => quote!(struct #shadow #generics #fs #where_clause;),
            }
        }
        Data::Enum(e) => {
            let vs = e.variants.iter().map(|v| {
                let attrs = keep_attrs(&v.attrs);
                let vi = &v.ident;
                let fs = fields(&v.fields);
                let disc = v.discriminant.as_ref().map(|(eq, d)| quote!(#eq #d));
                quote!(#(#attrs)* #vi #fs #disc)
            });
            quote!(enum #shadow #generics #where_clause { #(#vs,)* })
        }
        Data::Union(_) => quote!(),
    };
    quote! {
        #[derive(#p::serde::Serialize, #p::serde::Deserialize)]
        #[serde(crate = #serde_crate, remote = #remote)]
        #bound
        #(#attrs)*
        #[allow(dead_code, non_camel_case_types, clippy::all)]
        #body
    }
}

/// `generics` with `Wire` added to every type parameter not already bounded
/// by it (inline or in the `where` clause): the same bound twice makes the
/// serde bounds it implies ambiguous (E0283), as in `struct Page<T: Wire>`.
fn wire_bounded(generics: &syn::Generics, p: &TokenStream) -> syn::Generics {
    let names_wire = |b: &syn::TypeParamBound| {
        matches!(b, syn::TypeParamBound::Trait(t)
            if t.path.segments.last().is_some_and(|s| s.ident == "Wire"))
    };
    let in_where = |ident: &Ident| {
        generics
            .where_clause
            .iter()
            .flat_map(|w| &w.predicates)
            .any(|pr| {
                matches!(pr, syn::WherePredicate::Type(pt)
                if matches!(&pt.bounded_ty, syn::Type::Path(tp) if tp.path.is_ident(ident))
                    && pt.bounds.iter().any(names_wire))
            })
    };
    let mut g = generics.clone();
    for tp in g.type_params_mut() {
        if !tp.bounds.iter().any(names_wire) && !in_where(&tp.ident) {
            tp.bounds.push(syn::parse_quote!(#p::Wire));
        }
    }
    g
}

/// Whether serde decodes the type through its own buffer (`Content`): an
/// untagged or internally (or adjacently) tagged enum, an untagged
/// variant, a flattened field. The server weighs what serde builds from the
/// buffer by the type's largest type while such a type decodes
/// (`Buffered` in `remote-core`'s `codec/weigh.rs`).
fn buffered(input: &DeriveInput) -> bool {
    let variants: Vec<&syn::Variant> = match &input.data {
        syn::Data::Enum(e) => e.variants.iter().collect(),
        _ => Vec::new(),
    };
    serde_names(&input.attrs, &["untagged", "tag"])
        || variants
            .iter()
            .any(|v| serde_names(&v.attrs, &["untagged"]))
        || wire_field::all_fields(&input.data)
            .iter()
            .any(|f| serde_names(&f.attrs, &["flatten"]))
}

/// `Serialize` and `Deserialize` for the real type, delegating to the
/// shadow's generated functions; `buffered`: see [`buffered`]. Both run
/// with a level's worth of stack left at least (`decode_on_stack`,
/// `codec/stack.rs` in `remote-core`): a recursive value's every level is
/// a named type.
fn serde_impls(input: &DeriveInput, buffered: bool, p: &TokenStream) -> TokenStream {
    let ident = &input.ident;
    let shadow = shadow_ident(ident);
    // Type parameters are bounded by `Wire` alone: it implies both serde
    // traits, and a serde bound next to a written `T: Wire` would give the
    // solver two ways to prove `T: Deserialize<'de>` (E0283).
    let ser_g = wire_bounded(&input.generics, p);
    let mut de_g = ser_g.clone();
    de_g.params.insert(0, syn::parse_quote!('de));
    let (ser_impl, ty_g, ser_where) = ser_g.split_for_impl();
    let (de_impl, _, de_where) = de_g.split_for_impl();
    let weigh = buffered.then(|| quote!(let __weighing = #p::Buffered::of::<Self, __D>()?;));
    // serde decodes a buffered enum by trying each variant in turn, and a
    // debug build keeps each try's results in the one frame: a level's
    // stack grows with all the variants' fields, not the largest (red-team
    // pass 41: 32 untagged variants of 8 KiB overflowed 2 MiB at depth 0).
    // So does its `visit_enum` for an externally tagged enum's newtype
    // variants (pass 42: 64 variants of 8 KiB, a 7-byte call).
    let tried: Vec<&syn::Type> = if buffered || matches!(input.data, Data::Enum(_)) {
        wire_field::all_fields(&input.data)
            .iter()
            .filter(|f| !f.attrs.iter().any(|a| a.path().is_ident("cfg")))
            .map(|f| &f.ty)
            .collect()
    } else {
        Vec::new()
    };
    let tried = quote!(0usize #(+ ::core::mem::size_of::<#tried>())*);
    // What a field holds on the stack beyond its size as it decodes (a
    // `Box<[T; 16]>`'s array, red-team pass 42): a field routed through
    // the probe gets room for it as it decodes (`decode_field`); the
    // others (a type parameter, a box or list of one, a field serde
    // decodes its own way) at this level, through a probe (a skipped
    // field need not be `Wire`). Fields decode one after another: the
    // most of them, not their sum.
    let params: Vec<&syn::Ident> = input.generics.type_params().map(|t| &t.ident).collect();
    let held: Vec<&syn::Type> = wire_field::all_fields(&input.data)
        .iter()
        .filter(|f| !f.attrs.iter().any(|a| a.path().is_ident("cfg")))
        .filter(|f| !wire_field::routed(f, &params))
        .map(|f| &f.ty)
        .collect();
    let held = quote!({
        let __held = 0usize;
        #(let __held = ::core::cmp::Ord::max(__held, (&&#p::HeldProbe::<#held>::NEW).held_beyond());)*
        __held
    });
    quote! {
        impl #ser_impl #p::serde::Serialize for #ident #ty_g #ser_where {
            fn serialize<__S>(&self, serializer: __S) -> #p::Result<__S::Ok, __S::Error>
            where
                __S: #p::serde::Serializer,
            {
                #p::encode_on_stack(move || #shadow::serialize(self, serializer))
            }
        }
        impl #de_impl #p::serde::Deserialize<'de> for #ident #ty_g #de_where {
            fn deserialize<__D>(deserializer: __D) -> #p::Result<Self, __D::Error>
            where
                __D: #p::serde::Deserializer<'de>,
            {
                use #p::{HeldOther as _, HeldWire as _};
                #p::decode_on_stack::<Self, _, _>(#tried, #held, move || {
                    #weigh
                    #shadow::deserialize(deserializer)
                })
            }
        }
    }
}
