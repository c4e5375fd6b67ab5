//! What the generated `describe` functions and registrations put in the
//! schema.

use remote_core::schema::{self, FieldDef, SchemaBuilder, Ty, TypeKind};
use remote_core::{Interface, Wire};

use crate::hostile::{Meters, Shape, Shapes, Store, Tagged};
use crate::renamed::Notes;

/// 1-based line of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> u32 {
    let i = src
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in source");
    u32::try_from(i + 1).unwrap()
}

#[test]
fn trait_describes_methods_in_order_with_options() {
    let mut b = SchemaBuilder::new();
    let ty = <dyn Shapes as Interface>::describe(&mut b);
    let key = "hygiene::hostile::Shapes";
    assert_eq!(
        ty,
        Ty::Capability {
            interface: key.to_owned()
        }
    );
    let s = b.finish();
    let def = &s.interfaces[key];
    assert_eq!(def.name, "Shapes");
    assert_eq!(def.path, key);
    assert_eq!(def.doc, "Shapes, async and blocking.");
    let names: Vec<(&str, &str, bool)> = def
        .methods
        .iter()
        .map(|m| (&*m.name, &*m.wire_name, m.is_async))
        .collect();
    assert_eq!(
        names,
        [
            ("area", "area", true),
            ("echo", "echo", false),
            ("twice", "twice", true),
            ("zero", "zero", false),
            ("tagged", "tag", true)
        ]
    );
    let tagged = &def.methods[4];
    assert!(tagged.requires_auth);
    assert!(!def.methods[0].requires_auth);
    assert_eq!(
        tagged.doc,
        "Renamed on the wire, only for authenticated peers."
    );
    let area = &def.methods[0];
    assert_eq!(area.args.len(), 1);
    assert_eq!(area.args[0].name, "shape");
    assert_eq!(
        area.args[0].ty,
        Ty::Named {
            path: "hygiene::hostile::Shape".into()
        }
    );
    assert_eq!(area.returns, Ty::Float { bits: 64 });
    assert_eq!(
        area.error,
        Ty::Named {
            path: "hygiene::hostile::ShapeError".into()
        }
    );
    // `remote_core::Result<T>` (one argument): the error type is inferred.
    assert_eq!(def.methods[3].error, Ty::RemoteError);
    assert_eq!(
        def.methods[3].returns,
        Ty::Int {
            bits: 8,
            signed: false
        }
    );
    // Types reached from the methods are defined too.
    assert!(s.types.contains_key("hygiene::hostile::Point"));
    assert!(s.types.contains_key("hygiene::hostile::Tagged<u8>"));

    let src = include_str!("hostile.rs");
    assert!(
        def.location.file.ends_with("hostile.rs"),
        "{}",
        def.location.file
    );
    assert_eq!(def.location.line, line_of(src, "trait Shapes"));
    assert_eq!(
        area.location.line,
        line_of(src, "async fn area(&self, shape: Shape) -> ::core::result")
    );
}

#[test]
fn generic_interface_keys_name_the_type_argument() {
    let mut b = SchemaBuilder::new();
    let ty = <dyn Store<String> as Interface>::describe(&mut b);
    let key = format!(
        "hygiene::hostile::Store<{}>",
        std::any::type_name::<String>()
    );
    assert_eq!(
        ty,
        Ty::Capability {
            interface: key.clone()
        }
    );
    let s = b.finish();
    let def = &s.interfaces[&key];
    assert_eq!(def.methods[0].args[0].ty, Ty::String { max_len: None });
    assert_eq!(
        def.methods[1].returns,
        Ty::Option(Box::new(Ty::String { max_len: None }))
    );
    // Another instance is another interface.
    let mut b = SchemaBuilder::new();
    assert_ne!(<dyn Store<u8> as Interface>::describe(&mut b), ty);
}

#[test]
fn derive_describes_fields_variants_and_secrets() {
    let mut b = SchemaBuilder::new();
    let ty = <Tagged<u8> as Wire>::describe(&mut b);
    assert_eq!(
        ty,
        Ty::Named {
            path: "hygiene::hostile::Tagged<u8>".into()
        }
    );
    let s = b.finish();
    let def = &s.types["hygiene::hostile::Tagged<u8>"];
    assert_eq!(def.name, "Tagged");
    assert!(!def.secret);
    let TypeKind::Struct { fields } = &def.kind else {
        panic!("{def:?}")
    };
    let expect = [
        FieldDef {
            name: "tag".into(),
            ty: Ty::String { max_len: None },
            secret: false,
            default: false,
            location: None,
        },
        FieldDef {
            name: "value".into(),
            ty: Ty::Int {
                bits: 8,
                signed: false,
            },
            secret: false,
            default: false,
            location: None,
        },
        FieldDef {
            name: "token".into(),
            ty: Ty::Option(Box::new(Ty::Int {
                bits: 64,
                signed: false,
            })),
            secret: true,
            default: false,
            location: None,
        },
    ];
    assert!(fields
        .iter()
        .all(|f| f.location.as_ref().is_some_and(|l| l.line > 0)));
    let fields: Vec<FieldDef> = fields
        .iter()
        .cloned()
        .map(|f| FieldDef {
            location: None,
            ..f
        })
        .collect();
    assert_eq!(fields, expect);
    assert_eq!(
        def.location.line,
        line_of(include_str!("hostile.rs"), "struct Tagged")
    );

    let mut b = SchemaBuilder::new();
    <Meters as Wire>::describe(&mut b);
    <Shape as Wire>::describe(&mut b);
    let s = b.finish();
    let TypeKind::Struct { fields } = &s.types["hygiene::hostile::Meters"].kind else {
        panic!()
    };
    assert_eq!(fields[0].name, "0");
    let TypeKind::Enum { variants } = &s.types["hygiene::hostile::Shape"].kind else {
        panic!()
    };
    let shape: Vec<(&str, usize)> = variants
        .iter()
        .map(|v| (&*v.name, v.fields.len()))
        .collect();
    assert_eq!(shape, [("Empty", 0), ("Circle", 2), ("Rect", 2)]);
    assert_eq!(
        variants[2].fields[1].ty,
        Ty::Tuple(vec![
            Ty::Int {
                bits: 32,
                signed: false
            };
            2
        ])
    );
}

#[test]
fn registrations_reach_the_collected_schema() {
    let s = schema::collect();
    for key in [
        "hygiene::hostile::Shapes",
        "hygiene::hostile::CounterRemote",
        "hygiene::renamed::Notes",
    ] {
        assert!(
            s.interfaces.contains_key(key),
            "{key} missing from {:?}",
            s.interfaces.keys()
        );
    }
    // Generic traits are not registered on their own.
    assert!(
        !s.interfaces.keys().any(|k| k.contains("Store")),
        "{:?}",
        s.interfaces.keys()
    );
    let impls: Vec<(&str, &str)> = s
        .impls
        .iter()
        .map(|i| (&*i.type_name, &*i.interface))
        .collect();
    assert!(
        impls.contains(&("hygiene::hostile::Impl", "hygiene::hostile::Shapes")),
        "{impls:?}"
    );
    assert!(
        impls.contains(&("hygiene::renamed::NoteBook", "hygiene::renamed::Notes")),
        "{impls:?}"
    );
    // The generic `impl Store<T> for MemStore<T>` is not registered.
    assert!(
        !impls.iter().any(|(t, _)| t.contains("MemStore")),
        "{impls:?}"
    );
    let counter = &s.interfaces["hygiene::hostile::CounterRemote"];
    let names: Vec<&str> = counter.methods.iter().map(|m| &*m.name).collect();
    assert_eq!(names, ["add", "get"]);
    let _ = <dyn Notes as Interface>::name();
}
