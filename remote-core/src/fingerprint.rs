//! Interface fingerprints: a short hash of what an interface looks like on
//! the wire (its methods' wire names, argument, result and error types,
//! recursively through the named types and interfaces they reach), so a
//! client can tell that a server's root is not the interface it expects
//! (PROTOCOL.md §6.2 gives the canonical text this hashes).
//!
//! Only what changes the bytes on the wire counts: argument names, doc
//! comments, source locations, `async`, authentication and caching marks,
//! length bounds and Rust module paths do not.

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::schema::{InterfaceDef, Schema, SchemaBuilder, Ty, TypeDef, TypeKind};
use crate::Interface;

/// The hello feature entry a side serving a root announces it with:
/// `root:<name>:<fingerprint>` (PROTOCOL.md §6.2).
pub(crate) const ROOT_PREFIX: &str = "root:";

/// An interface's name and fingerprint, as announced in a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootInfo {
    /// [`Interface::name`].
    pub(crate) name: String,
    /// 16 lowercase hex digits.
    pub(crate) fingerprint: String,
}

impl RootInfo {
    /// `T`'s name and fingerprint (computed once per type and process).
    pub(crate) fn of<T: ?Sized + Interface>() -> RootInfo {
        static CACHE: OnceLock<Mutex<HashMap<TypeId, RootInfo>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = TypeId::of::<T>();
        if let Some(found) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return found.clone();
        }
        let mut b = SchemaBuilder::new();
        let root = match T::describe(&mut b) {
            Ty::Capability { interface } => interface,
            // A hand-written `Interface` that does not describe itself: its
            // name alone.
            _ => String::new(),
        };
        let info = RootInfo {
            name: T::name().to_owned(),
            fingerprint: fingerprint(&b.finish(), &root),
        };
        cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, info.clone());
        info
    }

    /// The hello feature entry announcing this root.
    pub(crate) fn feature(&self) -> String {
        format!("{ROOT_PREFIX}{}:{}", self.name, self.fingerprint)
    }

    /// Reads a peer's announcement from its hello's feature list; `None`
    /// when it made none (an older peer, another runtime) or a malformed
    /// one (then nothing is checked).
    pub(crate) fn from_features<'a>(features: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let entry = features
            .into_iter()
            .find_map(|f| f.strip_prefix(ROOT_PREFIX))?;
        let (name, fp) = entry.rsplit_once(':')?;
        let hex = fp.len() == 16 && fp.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        (!name.is_empty() && hex).then(|| RootInfo {
            name: name.to_owned(),
            fingerprint: fp.to_owned(),
        })
    }

    /// How `self` (the peer's root) differs from `want`, if it does.
    pub(crate) fn mismatch(&self, want: &RootInfo) -> Option<Mismatch> {
        if self.name != want.name {
            return Some(Mismatch::Interface(format!(
                "the server's root is `{}`, not `{}`",
                crate::bounded::truncate(&self.name, 200),
                want.name
            )));
        }
        (self.fingerprint != want.fingerprint).then(|| {
            Mismatch::Version(format!(
                "the server's `{}` differs from this client's (interface fingerprint {} at the \
                 server, {} here: methods or their argument, result or error types changed; \
                 rebuild both from the same definition)",
                want.name, self.fingerprint, want.fingerprint
            ))
        })
    }
}

/// How a peer's root differs from the interface asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Another interface (another name).
    Interface(String),
    /// Another version of the same interface (another fingerprint): calls
    /// the two versions agree on still work (`remote-policy diff` says which).
    Version(String),
}

impl Mismatch {
    /// The message for [`crate::Error::WrongInterface`].
    pub(crate) fn into_message(self) -> String {
        match self {
            Mismatch::Interface(m) | Mismatch::Version(m) => m,
        }
    }
}

/// The fingerprint of the interface `root` (a key in `schema.interfaces`):
/// the first 8 bytes of the SHA-256 of [`canonical`], as 16 lowercase hex
/// digits.
pub(crate) fn fingerprint(schema: &Schema, root: &str) -> String {
    let digest = Sha256::digest(canonical(schema, root).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical text of the interface `root` (PROTOCOL.md §6.2): its own
/// line first, then one line per other interface and named type it
/// reaches, sorted and without repeats, joined by `\n`.
pub(crate) fn canonical(schema: &Schema, root: &str) -> String {
    let mut walk = Walk {
        schema,
        seen_interfaces: BTreeSet::new(),
        seen_types: BTreeSet::new(),
        lines: BTreeSet::new(),
    };
    walk.seen_interfaces.insert(root.to_owned());
    let first = match schema.interfaces.get(root) {
        Some(def) => walk.interface(def),
        None => String::new(),
    };
    let mut out = first.clone();
    for line in walk.lines.iter().filter(|l| **l != first) {
        out.push('\n');
        out.push_str(line);
    }
    out
}

struct Walk<'a> {
    schema: &'a Schema,
    seen_interfaces: BTreeSet<String>,
    seen_types: BTreeSet<String>,
    lines: BTreeSet<String>,
}

impl Walk<'_> {
    /// `interface Name { m(a, b) -> r ! e; ... }`, methods by wire name.
    fn interface(&mut self, def: &InterfaceDef) -> String {
        let mut methods: Vec<_> = def.methods.iter().collect();
        methods.sort_by(|a, b| a.wire_name.cmp(&b.wire_name));
        let methods: Vec<String> = methods
            .into_iter()
            .map(|m| {
                let args: Vec<String> = m.args.iter().map(|a| self.ty(&a.ty)).collect();
                let returns = self.ty(&m.returns);
                let error = self.ty(&m.error);
                format!(
                    "{}({}) -> {returns} ! {error}",
                    m.wire_name,
                    args.join(", ")
                )
            })
            .collect();
        format!("interface {} {{ {} }}", def.name, methods.join("; "))
    }

    /// `struct Name { a: T, ... }` or `enum Name { A, B(T, U), ... }`, in
    /// declaration order (the order is on the wire).
    fn named(&mut self, def: &TypeDef) -> String {
        match &def.kind {
            TypeKind::Struct { fields } => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.name, self.ty(&f.ty)))
                    .collect();
                format!("struct {} {{ {} }}", def.name, fields.join(", "))
            }
            TypeKind::Enum { variants } => {
                let variants: Vec<String> = variants
                    .iter()
                    .map(|v| {
                        if v.fields.is_empty() {
                            return v.name.clone();
                        }
                        let fields: Vec<String> = v
                            .fields
                            .iter()
                            .map(|f| format!("{}: {}", f.name, self.ty(&f.ty)))
                            .collect();
                        format!("{} {{ {} }}", v.name, fields.join(", "))
                    })
                    .collect();
                format!("enum {} {{ {} }}", def.name, variants.join(", "))
            }
        }
    }

    fn ty(&mut self, ty: &Ty) -> String {
        match ty {
            Ty::Unit => "()".into(),
            Ty::Bool => "bool".into(),
            Ty::Int { bits, signed } => format!("{}{bits}", if *signed { 'i' } else { 'u' }),
            Ty::Float { bits } => format!("f{bits}"),
            Ty::Char => "char".into(),
            Ty::String { .. } => "string".into(),
            Ty::Bytes { .. } => "bytes".into(),
            Ty::Seq { elem, .. } => format!("seq<{}>", self.ty(elem)),
            Ty::Array { elem, len } => format!("array<{}, {len}>", self.ty(elem)),
            Ty::Map { key, value, .. } => format!("map<{}, {}>", self.ty(key), self.ty(value)),
            Ty::Option(inner) => format!("option<{}>", self.ty(inner)),
            Ty::Result { ok, err } => format!("result<{}, {}>", self.ty(ok), self.ty(err)),
            Ty::Tuple(items) => {
                let items: Vec<String> = items.iter().map(|t| self.ty(t)).collect();
                format!("tuple<{}>", items.join(", "))
            }
            Ty::Named { path } => match self.schema.types.get(path) {
                Some(def) => {
                    if self.seen_types.insert(path.clone()) {
                        let line = self.named(def);
                        self.lines.insert(line);
                    }
                    def.name.clone()
                }
                None => format!("opaque<{path}>"),
            },
            Ty::Capability { interface } => match self.schema.interfaces.get(interface) {
                Some(def) => {
                    if self.seen_interfaces.insert(interface.clone()) {
                        let line = self.interface(def);
                        self.lines.insert(line);
                    }
                    format!("remote<{}>", def.name)
                }
                None => format!("remote<{interface}>"),
            },
            Ty::Stream { item, .. } => format!("stream<{}>", self.ty(item)),
            Ty::RemoteError => "error".into(),
            Ty::Opaque { name, .. } => format!("opaque<{name}>"),
            // A kind added later: its debug form (stable within a release).
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ArgDef, FieldDef, Location, MethodDef};

    fn method(wire_name: &str, args: Vec<(&str, Ty)>, returns: Ty) -> MethodDef {
        MethodDef {
            name: wire_name.to_owned(),
            wire_name: wire_name.to_owned(),
            is_async: true,
            args: args
                .into_iter()
                .map(|(name, ty)| ArgDef {
                    name: name.to_owned(),
                    ty,
                })
                .collect(),
            returns,
            error: Ty::RemoteError,
            requires_auth: false,
            cache: None,
            location: Location::default(),
            doc: String::new(),
        }
    }

    fn string() -> Ty {
        Ty::String { max_len: None }
    }

    /// `Kv` (the root) reaches the struct `Entry` and the interface
    /// `Watcher`; methods are listed out of wire-name order.
    fn kv(entry_tags: Ty, put_arg: &str) -> Schema {
        let mut s = Schema::default();
        let iface = |path: &str, name: &str, methods| InterfaceDef {
            path: path.to_owned(),
            name: name.to_owned(),
            methods,
            location: Location::default(),
            doc: String::new(),
        };
        let entry = Ty::Named {
            path: "app::Entry".into(),
        };
        s.interfaces.insert(
            "app::Kv".into(),
            iface(
                "app::Kv",
                "Kv",
                vec![
                    method(
                        "put",
                        vec![(put_arg, string()), ("value", entry.clone())],
                        Ty::Unit,
                    ),
                    method("get", vec![("key", string())], Ty::Option(Box::new(entry))),
                    method(
                        "watch",
                        vec![(
                            "who",
                            Ty::Capability {
                                interface: "app::Watcher".into(),
                            },
                        )],
                        Ty::Int {
                            bits: 64,
                            signed: false,
                        },
                    ),
                ],
            ),
        );
        s.interfaces.insert(
            "app::Watcher".into(),
            iface(
                "app::Watcher",
                "Watcher",
                vec![method("changed", vec![("key", string())], Ty::Unit)],
            ),
        );
        let field = |name: &str, ty| FieldDef {
            name: name.to_owned(),
            ty,
            secret: false,
            default: false,
            location: None,
        };
        s.types.insert(
            "app::Entry".into(),
            TypeDef {
                path: "app::Entry".into(),
                name: "Entry".into(),
                kind: TypeKind::Struct {
                    fields: vec![
                        field("data", Ty::Bytes { max_len: None }),
                        field("tags", entry_tags),
                    ],
                },
                secret: false,
                location: Location::default(),
                serde: vec![],
            },
        );
        s
    }

    fn tags() -> Ty {
        Ty::Seq {
            elem: Box::new(string()),
            max_len: None,
        }
    }

    /// The example of PROTOCOL.md §6.2, byte for byte.
    #[test]
    fn canonical_text_and_fingerprint_match_the_protocol_document() {
        let s = kv(tags(), "key");
        assert_eq!(
            canonical(&s, "app::Kv"),
            "interface Kv { get(string) -> option<Entry> ! error; \
             put(string, Entry) -> () ! error; watch(remote<Watcher>) -> u64 ! error }\n\
             interface Watcher { changed(string) -> () ! error }\n\
             struct Entry { data: bytes, tags: seq<string> }"
        );
        // Computed independently: python3 -c 'import hashlib;
        // print(hashlib.sha256(TEXT.encode()).hexdigest()[:16])'
        assert_eq!(fingerprint(&s, "app::Kv"), "d6df647c6a4ca0de");
    }

    #[test]
    fn only_the_wire_shape_counts() {
        let base = fingerprint(&kv(tags(), "key"), "app::Kv");
        // Argument names and length bounds are not on the wire.
        assert_eq!(fingerprint(&kv(tags(), "name"), "app::Kv"), base);
        let bounded = Ty::Seq {
            elem: Box::new(Ty::String { max_len: Some(8) }),
            max_len: Some(4),
        };
        assert_eq!(fingerprint(&kv(bounded, "key"), "app::Kv"), base);
        // A type reached through a field is.
        let changed = Ty::Seq {
            elem: Box::new(Ty::Int {
                bits: 32,
                signed: true,
            }),
            max_len: None,
        };
        assert_ne!(fingerprint(&kv(changed, "key"), "app::Kv"), base);
    }

    #[test]
    fn announcements_round_trip_and_malformed_ones_are_ignored() {
        let info = RootInfo {
            name: "Kv".into(),
            fingerprint: "0123456789abcdef".into(),
        };
        let feature = info.feature();
        assert_eq!(feature, "root:Kv:0123456789abcdef");
        assert_eq!(
            RootInfo::from_features(["keepalive", feature.as_str()]),
            Some(info)
        );
        for bad in [
            "root:Kv",
            "root::0123456789abcdef",
            "root:Kv:0123",
            "root:Kv:0123456789ABCDEF",
        ] {
            assert_eq!(RootInfo::from_features([bad]), None, "{bad}");
        }
        assert_eq!(RootInfo::from_features(["keepalive"]), None);
    }
}
