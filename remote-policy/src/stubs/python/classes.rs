//! The generated classes: a dataclass per struct and enum variant, and a
//! Protocol and a typed client per interface.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use remote_core::schema::{FieldDef, InterfaceDef, Ty, TypeDef, TypeKind};

use super::names::{ident, Names};
use super::types::{annotation, desc, lit};

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

pub(super) fn type_def(out: &mut String, names: &Names, def: &TypeDef) {
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

pub(super) fn interface(out: &mut String, names: &Names, iface: &InterfaceDef) {
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
