//! Python stubs: one module with a dataclass per struct, a dataclass per
//! enum variant plus a `typing.Union` alias per enum, and a
//! `typing.Protocol` class per interface whose `async def` methods carry
//! the argument and return types.
//!
//! Every generated class records what a client needs on the wire:
//! `__rust_path__` (the schema key), `__wire_fields__` (field names on the
//! wire, in order; Python names differ where the Rust name is a Python
//! keyword or a tuple index), `__wire_variant__` on enum variants,
//! `__wire_names__` (Python method name → wire method name) and
//! `__requires_auth__` on interfaces. `TYPES` and `INTERFACES` map schema
//! keys to the generated objects.
//!
//! On top of the Protocols, the module is a typed client and server for the
//! `remote_rpc` Python runtime (`python/` in this repository): every
//! dataclass records its fields' types (`__wire_types__`), every Protocol
//! its methods' (`__wire_methods__`: wire name → Python name, argument,
//! result and error type descriptors, as `remote_rpc.typed` reads them), and
//! each interface gets a `...Client` class whose `async` methods call the
//! peer through a `remote_rpc.Proxy` and decode the results into the
//! dataclasses. A Python object serving an interface subclasses its
//! Protocol and receives typed arguments. `VARIANTS` and `CLIENTS` map
//! schema keys to enum variant classes and client classes. Without the
//! runtime installed the module still imports (for type checking only).
//!
//! Type mapping: integers `int`, floats `float`, `char` and strings `str`,
//! bytes `bytes`, sequences and arrays `typing.List`, maps `typing.Dict`,
//! `Option` `typing.Optional`, `Result` values `typing.Union[Ok[T], Err[E]]`,
//! tuples `typing.Tuple`, capabilities the Protocol class, streams
//! `typing.AsyncIterator`, the toolkit's error `RemoteError`, opaque types
//! `typing.Any`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use remote_core::schema::{FieldDef, InterfaceDef, Schema, Ty, TypeDef, TypeKind};

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "match", "case", "type", "_",
];

/// Module-level names the generated code uses itself.
const RESERVED: &[&str] = &[
    "typing",
    "dataclasses",
    "int",
    "str",
    "bytes",
    "float",
    "bool",
    "object",
    "Ok",
    "Err",
    "RemoteError",
    "TYPES",
    "INTERFACES",
    "SCHEMA_FORMAT",
    "SCHEMA_VERSION",
    "_T",
    "_E",
    "sys",
    "_rt",
    "_ClientBase",
    "VARIANTS",
    "CLIENTS",
];

/// Generates the stub module for `schema`.
///
/// ```
/// use remote_policy::testing::*;
/// let schema = schema_with(
///     vec![iface("app::Chat", vec![method("post", vec![("msg", named("app::Msg"))], u64_ty())])],
///     vec![strukt("app::Msg", vec![field("from", string()), field("body", string())])],
/// );
/// let py = remote_policy::stubs::python::generate(&schema);
/// assert!(py.contains("class Msg:"));
/// assert!(py.contains("    from_: str\n"));
/// assert!(py.contains("__wire_fields__: typing.ClassVar[typing.Tuple[str, ...]] = (\"from\", \"body\")"));
/// assert!(py.contains("async def post(self, msg: Msg) -> int:"));
/// // The typed client calls the `remote_rpc` runtime with the wire name,
/// // and the Protocol records the types the runtime converts with.
/// assert!(py.contains("class ChatClient(_ClientBase):"));
/// assert!(py.contains("return await self._invoke(\"post\", msg)"));
/// assert!(py.contains("\"post\": (\"post\", ((\"named\", \"app::Msg\"), ), \"int\", \"error\"),"));
/// assert!(py.contains("__wire_types__: typing.ClassVar[typing.Tuple[typing.Any, ...]] = (\"str\", \"str\", )"));
/// ```
pub fn generate(schema: &Schema) -> String {
    let names = Names::new(schema);
    let mut out = String::new();
    header(&mut out, schema);
    for def in schema.types.values() {
        type_def(&mut out, &names, def);
    }
    for iface in schema.interfaces.values() {
        interface(&mut out, &names, iface);
    }
    out.push_str("\nTYPES: typing.Dict[str, typing.Any] = {\n");
    for (key, name) in &names.types {
        let _ = writeln!(out, "    {}: {name},", lit(key));
    }
    out.push_str("}\n\nINTERFACES: typing.Dict[str, typing.Any] = {\n");
    for (key, name) in &names.interfaces {
        let _ = writeln!(out, "    {}: {name},", lit(key));
    }
    out.push_str("}\n\nVARIANTS: typing.Dict[str, typing.Dict[str, typing.Any]] = {\n");
    for def in schema.types.values() {
        if let TypeKind::Enum { variants } = &def.kind {
            let members: Vec<String> = variants
                .iter()
                .map(|v| {
                    let class = &names.variants[&(def.path.clone(), v.name.clone())];
                    format!("{}: {class}", lit(&v.name))
                })
                .collect();
            let _ = writeln!(out, "    {}: {{{}}},", lit(&def.path), members.join(", "));
        }
    }
    out.push_str("}\n\nCLIENTS: typing.Dict[str, typing.Any] = {\n");
    for (key, name) in &names.clients {
        let _ = writeln!(out, "    {}: {name},", lit(key));
    }
    out.push_str("}\n");
    out
}

/// A type descriptor for the `remote_rpc` runtime (see `remote_rpc.typed`).
fn desc(ty: &Ty) -> String {
    match ty {
        Ty::Unit => lit("unit"),
        Ty::Bool => lit("bool"),
        Ty::Int { .. } => lit("int"),
        Ty::Float { .. } => lit("float"),
        Ty::Char | Ty::String { .. } => lit("str"),
        Ty::Bytes { .. } => lit("bytes"),
        Ty::Seq { elem, .. } | Ty::Array { elem, .. } => format!("(\"list\", {})", desc(elem)),
        Ty::Map { key, value, .. } => format!("(\"map\", {}, {})", desc(key), desc(value)),
        Ty::Option(inner) => format!("(\"opt\", {})", desc(inner)),
        Ty::Result { ok, err } => format!("(\"result\", {}, {})", desc(ok), desc(err)),
        Ty::Tuple(items) => {
            let items: Vec<String> = items.iter().map(|t| format!("{}, ", desc(t))).collect();
            format!("(\"tuple\", ({}))", items.concat())
        }
        Ty::Named { path } => format!("(\"named\", {})", lit(path)),
        Ty::Capability { interface } => format!("(\"cap\", {})", lit(interface)),
        Ty::Stream { item, .. } => format!("(\"stream\", {})", desc(item)),
        Ty::RemoteError => lit("error"),
        _ => lit("any"),
    }
}

/// A Python string literal (JSON escapes are valid Python escapes).
fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn header(out: &mut String, schema: &Schema) {
    let _ = write!(
        out,
        r#""""Typed stubs generated by remote-policy from a remote-schema (version {version}).

Do not edit: regenerate with `remote-policy stubs python`.
"""
from __future__ import annotations

import dataclasses
import typing

try:
    import remote_rpc as _rt
except ImportError:  # the stubs still serve as type declarations
    _rt = None

_ClientBase: typing.Any = _rt.Client if _rt is not None else object

SCHEMA_FORMAT = {format}
SCHEMA_VERSION = {version}

_T = typing.TypeVar("_T")
_E = typing.TypeVar("_E")


@dataclasses.dataclass
class Ok(typing.Generic[_T]):
    """The `Ok` case of a Result value (`{{"Ok": value}}` on the wire)."""

    __wire_result__: typing.ClassVar[str] = "Ok"
    value: _T


@dataclasses.dataclass
class Err(typing.Generic[_E]):
    """The `Err` case of a Result value (`{{"Err": error}}` on the wire)."""

    __wire_result__: typing.ClassVar[str] = "Err"
    error: _E


class RemoteError(Exception):
    """The toolkit's own error (`remote_core::Error`); its wire form is in PROTOCOL.md."""
"#,
        version = schema.version,
        format = lit(&schema.format),
    );
}

/// Python names for every type, variant and interface, unique in the module.
struct Names {
    types: BTreeMap<String, String>,
    variants: BTreeMap<(String, String), String>,
    interfaces: BTreeMap<String, String>,
    clients: BTreeMap<String, String>,
}

impl Names {
    fn new(schema: &Schema) -> Names {
        let mut taken: BTreeSet<String> = RESERVED.iter().map(|s| (*s).to_owned()).collect();
        let mut fresh = |base: String| {
            let mut name = base.clone();
            let mut n = 2;
            while taken.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
            taken.insert(name.clone());
            name
        };
        let mut names = Names {
            types: BTreeMap::new(),
            variants: BTreeMap::new(),
            interfaces: BTreeMap::new(),
            clients: BTreeMap::new(),
        };
        for def in schema.types.values() {
            let name = fresh(ident(&type_ident(&def.path)));
            if let TypeKind::Enum { variants } = &def.kind {
                for v in variants {
                    let vname = fresh(format!("{name}_{}", ident(&v.name)));
                    names
                        .variants
                        .insert((def.path.clone(), v.name.clone()), vname);
                }
            }
            names.types.insert(def.path.clone(), name);
        }
        for iface in schema.interfaces.values() {
            let name = fresh(ident(&type_ident(&iface.path)));
            names
                .clients
                .insert(iface.path.clone(), fresh(format!("{name}Client")));
            names.interfaces.insert(iface.path.clone(), name);
        }
        names
    }
}

/// `app::Page<app::Msg, u8>` → `Page_Msg_u8`: the last segment of every path.
fn type_ident(path: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        let qualifier = tail.starts_with("::");
        if !word.is_empty() && !qualifier {
            parts.push(word);
        }
        let skip = tail.chars().next().map_or(0, char::len_utf8);
        rest = &tail[skip..];
    }
    parts.join("_")
}

/// A valid Python identifier from a Rust name.
fn ident(name: &str) -> String {
    let name = name.strip_prefix("r#").unwrap_or(name);
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'f');
    }
    if KEYWORDS.contains(&s.as_str()) || s == "self" {
        s.push('_');
    }
    s
}

fn annotation(names: &Names, ty: &Ty) -> String {
    let a = |t: &Ty| annotation(names, t);
    match ty {
        Ty::Unit => "None".into(),
        Ty::Bool => "bool".into(),
        Ty::Int { .. } => "int".into(),
        Ty::Float { .. } => "float".into(),
        Ty::Char | Ty::String { .. } => "str".into(),
        Ty::Bytes { .. } => "bytes".into(),
        Ty::Seq { elem, .. } | Ty::Array { elem, .. } => format!("typing.List[{}]", a(elem)),
        Ty::Map { key, value, .. } => format!("typing.Dict[{}, {}]", a(key), a(value)),
        Ty::Option(inner) => format!("typing.Optional[{}]", a(inner)),
        Ty::Result { ok, err } => format!("typing.Union[Ok[{}], Err[{}]]", a(ok), a(err)),
        Ty::Tuple(items) if items.is_empty() => "typing.Tuple[()]".into(),
        Ty::Tuple(items) => {
            format!(
                "typing.Tuple[{}]",
                items.iter().map(a).collect::<Vec<_>>().join(", ")
            )
        }
        Ty::Named { path } => names
            .types
            .get(path)
            .cloned()
            .unwrap_or_else(|| "typing.Any".into()),
        Ty::Capability { interface } => names
            .interfaces
            .get(interface)
            .cloned()
            .unwrap_or_else(|| "typing.Any".into()),
        Ty::Stream { item, .. } => format!("typing.AsyncIterator[{}]", a(item)),
        Ty::RemoteError => "RemoteError".into(),
        _ => "typing.Any".into(),
    }
}

/// `struct` (named fields), `tuple`, `newtype` or `unit`: how serde shapes it.
fn shape(fields: &[FieldDef]) -> &'static str {
    match fields {
        [] => "unit",
        [f] if f.name == "0" => "newtype",
        [f, ..] if f.name == "0" => "tuple",
        _ => "struct",
    }
}

fn dataclass(
    out: &mut String,
    names: &Names,
    name: &str,
    doc: &str,
    fields: &[FieldDef],
    extra: &str,
) {
    let _ = write!(
        out,
        "\n\n@dataclasses.dataclass\nclass {name}:\n    {}\n\n",
        lit(doc)
    );
    let _ = writeln!(
        out,
        "    __wire_shape__: typing.ClassVar[str] = {}",
        lit(shape(fields))
    );
    let wire: Vec<String> = fields.iter().map(|f| lit(&f.name)).collect();
    let tuple = match wire.len() {
        0 => "()".to_owned(),
        1 => format!("({},)", wire[0]),
        _ => format!("({})", wire.join(", ")),
    };
    let _ = writeln!(
        out,
        "    __wire_fields__: typing.ClassVar[typing.Tuple[str, ...]] = {tuple}"
    );
    let tys: Vec<String> = fields
        .iter()
        .map(|f| format!("{}, ", desc(&f.ty)))
        .collect();
    let _ = writeln!(
        out,
        "    __wire_types__: typing.ClassVar[typing.Tuple[typing.Any, ...]] = ({})",
        tys.concat()
    );
    out.push_str(extra);
    let mut used = BTreeSet::new();
    for f in fields {
        let mut py = ident(&f.name);
        while !used.insert(py.clone()) {
            py.push('_');
        }
        let secret = if f.secret {
            "  # secret: never sent by a compliant server"
        } else {
            ""
        };
        let _ = writeln!(out, "    {py}: {}{secret}", annotation(names, &f.ty));
    }
}

fn type_def(out: &mut String, names: &Names, def: &TypeDef) {
    let name = &names.types[&def.path];
    let loc = &def.location;
    let origin = format!("`{}` (defined at {}:{})", def.path, loc.file, loc.line);
    let path_attr = format!(
        "    __rust_path__: typing.ClassVar[str] = {}\n",
        lit(&def.path)
    );
    match &def.kind {
        TypeKind::Struct { fields } => {
            dataclass(
                out,
                names,
                name,
                &format!("Struct {origin}."),
                fields,
                &path_attr,
            );
        }
        TypeKind::Enum { variants } => {
            let mut members = Vec::new();
            for v in variants {
                let vname = &names.variants[&(def.path.clone(), v.name.clone())];
                let extra = format!(
                    "{path_attr}    __wire_variant__: typing.ClassVar[str] = {}\n",
                    lit(&v.name)
                );
                let doc = format!("Variant `{}` of enum {origin}.", v.name);
                dataclass(out, names, vname, &doc, &v.fields, &extra);
                members.push(lit(vname));
            }
            let alias = if members.is_empty() {
                "typing.NoReturn".to_owned()
            } else {
                format!("typing.Union[{}]", members.join(", "))
            };
            let _ = write!(out, "\n\n{name} = {alias}\n\"\"\"Enum {origin}.\"\"\"\n");
        }
    }
}

fn interface(out: &mut String, names: &Names, iface: &InterfaceDef) {
    let name = &names.interfaces[&iface.path];
    let loc = &iface.location;
    let mut doc = iface.doc.trim().to_owned();
    if !doc.is_empty() {
        doc.push_str("\n\n");
    }
    doc.push_str(&format!(
        "Remote interface `{}` (defined at {}:{}).",
        iface.path, loc.file, loc.line
    ));
    let _ = write!(
        out,
        "\n\nclass {name}(typing.Protocol):\n    {}\n\n",
        lit(&doc)
    );
    let _ = writeln!(
        out,
        "    __rust_path__: typing.ClassVar[str] = {}",
        lit(&iface.path)
    );
    let mut used = BTreeSet::new();
    let methods: Vec<(String, &remote_core::schema::MethodDef)> = iface
        .methods
        .iter()
        .map(|m| {
            let mut py = ident(&m.name);
            while py.starts_with("__") || !used.insert(py.clone()) {
                py.push('_');
                py.insert(0, 'm');
            }
            (py, m)
        })
        .collect();
    let wire: Vec<String> = methods
        .iter()
        .map(|(py, m)| format!("{}: {}", lit(py), lit(&m.wire_name)))
        .collect();
    let _ = writeln!(
        out,
        "    __wire_names__: typing.ClassVar[typing.Dict[str, str]] = {{{}}}",
        wire.join(", ")
    );
    let table: Vec<String> = methods
        .iter()
        .map(|(py, m)| {
            let args: Vec<String> = m
                .args
                .iter()
                .map(|a| format!("{}, ", desc(&a.ty)))
                .collect();
            format!(
                "        {}: ({}, ({}), {}, {}),\n",
                lit(&m.wire_name),
                lit(py),
                args.concat(),
                desc(&m.returns),
                desc(&m.error)
            )
        })
        .collect();
    let _ = write!(
        out,
        "    __wire_methods__: typing.ClassVar[typing.Dict[str, typing.Any]] = {{\n{}    }}\n",
        table.concat()
    );
    let auth: Vec<String> = methods
        .iter()
        .filter(|(_, m)| m.requires_auth)
        .map(|(py, _)| lit(py))
        .collect();
    let _ = writeln!(
        out,
        "    __requires_auth__: typing.ClassVar[typing.FrozenSet[str]] = frozenset({{{}}})",
        auth.join(", ")
    );
    for (py, m) in &methods {
        let mut args = vec!["self".to_owned()];
        let mut arg_names = BTreeSet::from(["self".to_owned()]);
        for a in &m.args {
            let mut an = ident(&a.name);
            while !arg_names.insert(an.clone()) {
                an.push('_');
            }
            args.push(format!("{an}: {}", annotation(names, &a.ty)));
        }
        let mut mdoc = m.doc.trim().to_owned();
        if !mdoc.is_empty() {
            mdoc.push_str("\n\n");
        }
        let _ = write!(mdoc, "Wire method `{}`.", m.wire_name);
        if !matches!(m.error, Ty::RemoteError) {
            let _ = write!(mdoc, " Fails with `{}`.", annotation(names, &m.error));
        }
        if m.requires_auth {
            mdoc.push_str(" Requires an authenticated connection.");
        }
        if !m.is_async {
            mdoc.push_str(" Blocking on the Rust side.");
        }
        let _ = write!(
            out,
            "\n    async def {py}({}) -> {}:\n        {}\n        ...\n",
            args.join(", "),
            annotation(names, &m.returns),
            lit(&mdoc)
        );
    }
    client(out, names, iface, &methods);
}

/// The typed client of an interface: each method calls the peer through
/// the `remote_rpc` runtime (`Client._invoke`), which encodes the arguments
/// and decodes the result (and a typed error's `data`) with the Protocol's
/// `__wire_methods__`.
fn client(
    out: &mut String,
    names: &Names,
    iface: &InterfaceDef,
    methods: &[(String, &remote_core::schema::MethodDef)],
) {
    let proto = &names.interfaces[&iface.path];
    let name = &names.clients[&iface.path];
    let doc = format!(
        "Calls a peer's `{}` (wrap a `remote_rpc.Proxy`: `{name}(conn.root())`).",
        iface.path
    );
    let _ = write!(
        out,
        "\n\nclass {name}(_ClientBase):\n    {}\n\n    __protocol__: typing.ClassVar[typing.Any] = {proto}\n",
        lit(&doc)
    );
    for (py, m) in methods {
        let mut params = vec!["self".to_owned()];
        let mut passed = Vec::new();
        let mut arg_names = BTreeSet::from(["self".to_owned()]);
        for a in &m.args {
            let mut an = ident(&a.name);
            while !arg_names.insert(an.clone()) {
                an.push('_');
            }
            params.push(format!("{an}: {}", annotation(names, &a.ty)));
            passed.push(an);
        }
        let call: Vec<String> = std::iter::once(lit(&m.wire_name)).chain(passed).collect();
        let _ = write!(
            out,
            "\n    async def {py}({}) -> {}:\n        return await self._invoke({})\n",
            params.join(", "),
            annotation(names, &m.returns),
            call.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        assert_eq!(type_ident("app::Page<app::Msg, u8>"), "Page_Msg_u8");
        assert_eq!(type_ident("Chat"), "Chat");
        assert_eq!(type_ident("[u8; 4]"), "u8_4");
        assert_eq!(ident("class"), "class_");
        assert_eq!(ident("0"), "f0");
        assert_eq!(ident("r#type"), "type_");
        assert_eq!(ident("self"), "self_");
    }
}
