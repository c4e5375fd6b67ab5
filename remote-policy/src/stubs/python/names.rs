//! Python names for the generated module: identifiers from Rust names and
//! paths (keywords and the module's own names avoided), unique per module.

use std::collections::{BTreeMap, BTreeSet};

use remote_core::schema::{Schema, TypeKind};

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

/// Python names for every type, variant and interface, unique in the module.
pub(super) struct Names {
    pub(super) types: BTreeMap<String, String>,
    pub(super) variants: BTreeMap<(String, String), String>,
    pub(super) interfaces: BTreeMap<String, String>,
    pub(super) clients: BTreeMap<String, String>,
}

impl Names {
    pub(super) fn new(schema: &Schema) -> Names {
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
pub(super) fn ident(name: &str) -> String {
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
    // Python mangles a name that starts with two underscores inside a
    // class body (`__Hidden` in `class __HiddenClient` became
    // `_HiddenClient__Hidden`, and the module failed to import: a review).
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || s.starts_with("__") {
        s.insert(0, 'f');
    }
    if KEYWORDS.contains(&s.as_str()) || s == "self" {
        s.push('_');
    }
    s
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
        assert_eq!(ident("__Hidden"), "f__Hidden");
        assert_eq!(ident("_private"), "_private");
    }
}
