//! Short constructors for hand-written schemas, for tests of a policy or of
//! a stub generator.
//!
//! ```
//! use remote_policy::testing::*;
//! let schema = schema_with(
//!     vec![iface("app::Chat", vec![method("login", vec![("name", string())], named("app::Session"))])],
//!     vec![strukt("app::Session", vec![secret_field("token", string())])],
//! );
//! let report = remote_policy::check(&schema, &Default::default()).unwrap();
//! assert!(report.failed());
//! ```

use remote_core::schema::{
    ArgDef, FieldDef, InterfaceDef, Location, MethodDef, Schema, Ty, TypeDef, TypeKind, VariantDef,
};

/// A schema holding these interfaces and types.
pub fn schema_with(interfaces: Vec<InterfaceDef>, types: Vec<TypeDef>) -> Schema {
    let mut s = Schema::default();
    for i in interfaces {
        s.interfaces.insert(i.path.clone(), i);
    }
    for t in types {
        s.types.insert(t.path.clone(), t);
    }
    s
}

/// A fake source location: `file` at `line`.
pub fn at(file: &str, line: u32) -> Location {
    Location {
        file: file.to_owned(),
        line,
        column: 1,
    }
}

/// An interface at `fixtures.rs:1`.
pub fn iface(path: &str, methods: Vec<MethodDef>) -> InterfaceDef {
    InterfaceDef {
        path: path.to_owned(),
        name: remote_core::schema::short_name(path),
        methods,
        location: at("fixtures.rs", 1),
        doc: String::new(),
    }
}

/// An async method returning `Result<returns, remote_core::Error>`.
pub fn method(name: &str, args: Vec<(&str, Ty)>, returns: Ty) -> MethodDef {
    MethodDef {
        name: name.to_owned(),
        wire_name: name.to_owned(),
        is_async: true,
        args: args
            .into_iter()
            .map(|(n, ty)| ArgDef {
                name: n.to_owned(),
                ty,
            })
            .collect(),
        returns,
        error: Ty::RemoteError,
        requires_auth: false,
        cache: None,
        location: at("fixtures.rs", 2),
        doc: String::new(),
    }
}

/// The same method, marked `requires_auth`.
pub fn auth(mut m: MethodDef) -> MethodDef {
    m.requires_auth = true;
    m
}

/// The same method with error type `error`.
pub fn with_error(mut m: MethodDef, error: Ty) -> MethodDef {
    m.error = error;
    m
}

/// A struct at `fixtures.rs:10`.
pub fn strukt(path: &str, fields: Vec<FieldDef>) -> TypeDef {
    TypeDef {
        path: path.to_owned(),
        name: remote_core::schema::short_name(path),
        kind: TypeKind::Struct { fields },
        secret: false,
        location: at("fixtures.rs", 10),
        serde: Vec::new(),
    }
}

/// An enum at `fixtures.rs:20`.
pub fn enumeration(path: &str, variants: Vec<(&str, Vec<FieldDef>)>) -> TypeDef {
    TypeDef {
        path: path.to_owned(),
        name: remote_core::schema::short_name(path),
        kind: TypeKind::Enum {
            variants: variants
                .into_iter()
                .map(|(n, fields)| VariantDef {
                    name: n.to_owned(),
                    fields,
                })
                .collect(),
        },
        secret: false,
        location: at("fixtures.rs", 20),
        serde: Vec::new(),
    }
}

/// The same type, marked `#[wire(secret)]`.
pub fn secret(mut t: TypeDef) -> TypeDef {
    t.secret = true;
    t
}

/// A field.
pub fn field(name: &str, ty: Ty) -> FieldDef {
    FieldDef {
        name: name.to_owned(),
        ty,
        secret: false,
        default: false,
        location: None,
    }
}

/// A field marked `#[wire(secret)]`.
pub fn secret_field(name: &str, ty: Ty) -> FieldDef {
    FieldDef {
        name: name.to_owned(),
        ty,
        secret: true,
        default: false,
        location: None,
    }
}

/// The same field with `#[serde(default)]`.
pub fn defaulted(mut f: FieldDef) -> FieldDef {
    f.default = true;
    f
}

/// The same field declared at `file:line`.
pub fn field_at(mut f: FieldDef, file: &str, line: u32) -> FieldDef {
    f.location = Some(at(file, line));
    f
}

/// `Ty::Named`.
pub fn named(path: &str) -> Ty {
    Ty::Named {
        path: path.to_owned(),
    }
}

/// `Ty::Capability` (`Remote<dyn Trait>`).
pub fn cap(interface: &str) -> Ty {
    Ty::Capability {
        interface: interface.to_owned(),
    }
}

/// An unbounded `String`.
pub fn string() -> Ty {
    Ty::String { max_len: None }
}

/// `Bounded<String, N>`.
pub fn bounded_string(max: u64) -> Ty {
    Ty::String { max_len: Some(max) }
}

/// An unbounded `Vec<T>`.
pub fn seq(elem: Ty) -> Ty {
    Ty::Seq {
        elem: Box::new(elem),
        max_len: None,
    }
}

/// `Option<T>`.
pub fn option(inner: Ty) -> Ty {
    Ty::Option(Box::new(inner))
}

/// A stream of `T`.
pub fn stream(item: Ty) -> Ty {
    Ty::Stream {
        item: Box::new(item),
        source: None,
    }
}

/// `u64`.
pub fn u64_ty() -> Ty {
    Ty::Int {
        bits: 64,
        signed: false,
    }
}
