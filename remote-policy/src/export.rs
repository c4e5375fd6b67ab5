//! The schema as JSON (format `remote-schema`, documented in `SCHEMA.md`).
//!
//! ```
//! use remote_core::schema::Schema;
//! use remote_policy::export;
//! let schema = Schema::default();
//! let json = export::to_json(&schema);
//! assert!(json.contains("\"format\": \"remote-schema\""));
//! assert_eq!(export::from_json(&json).unwrap(), schema);
//! let version = format!("\"version\": {}", remote_core::schema::SCHEMA_VERSION);
//! assert!(export::from_json(&json.replace(&version, "\"version\": 9")).is_err());
//! // A schema of version 1 still reads (`diff` leaves out what it lacks).
//! assert_eq!(export::from_json(&json.replace(&version, "\"version\": 1")).unwrap().version, 1);
//! ```

use std::path::Path;

use remote_core::schema::{Schema, SCHEMA_VERSION};

use crate::Error;

/// The schema as pretty-printed JSON, ending with a newline.
pub fn to_json(schema: &Schema) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("a schema always serializes");
    s.push('\n');
    s
}

/// Parses a schema and checks its format and version.
pub fn from_json(text: &str) -> Result<Schema, Error> {
    #[derive(serde::Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let header: Header = serde_json::from_str(text).map_err(Error::SchemaSyntax)?;
    // Version 1 lacks what version 2 added, which `diff` then leaves out
    // (`diff::flow`): a baseline saved before still compares.
    if header.format != "remote-schema" || !(1..=SCHEMA_VERSION).contains(&header.version) {
        return Err(Error::SchemaVersion {
            format: header.format,
            version: header.version,
            supported: SCHEMA_VERSION,
        });
    }
    let schema = serde_json::from_str(text).map_err(Error::SchemaSyntax)?;
    validate(&schema)?;
    Ok(schema)
}

/// Checks that every interface and type is stored under its own `path`,
/// and that no key was described from two declarations
/// ([`Schema::conflicts`]).
///
/// ```
/// use remote_policy::testing::*;
/// let mut schema = schema_with(vec![iface("app::Chat", vec![])], vec![]);
/// assert!(remote_policy::export::validate(&schema).is_ok());
/// let chat = schema.interfaces.remove("app::Chat").unwrap();
/// schema.interfaces.insert("app::Other".into(), chat);
/// assert!(remote_policy::export::validate(&schema).is_err());
/// ```
pub fn validate(schema: &Schema) -> Result<(), Error> {
    let bad = |what: &str, key: &str, path: &str| {
        Error::SchemaInvalid(format!(
            "{what} stored under key `{key}` has path `{path}`; the key must equal the path"
        ))
    };
    for (key, i) in &schema.interfaces {
        if *key != i.path {
            return Err(bad("interface", key, &i.path));
        }
    }
    for (key, t) in &schema.types {
        if *key != t.path {
            return Err(bad("type", key, &t.path));
        }
    }
    if let Some(c) = schema.conflicts.first() {
        let at = |l: &remote_core::schema::Location| match l.file.as_str() {
            "" => "a definition that gives no location (a hand-written `describe`)".to_owned(),
            file => format!("{file}:{}:{}", l.line, l.column),
        };
        return Err(Error::SchemaInvalid(format!(
            "two declarations share the key `{}` (at {} and at {}{}): the schema holds only the \
             first, so nothing can be said of what a peer reaches through the other; rename \
             one, or declare it in a module of its own",
            c.key,
            at(&c.first),
            at(&c.other),
            match schema.conflicts.len() {
                1 => String::new(),
                n => format!("; and {} more", n - 1),
            }
        )));
    }
    Ok(())
}

/// Reads a schema file.
pub fn load(path: &Path) -> Result<Schema, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    from_json(&text).map_err(|e| Error::InFile {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

/// Clears every source location (`""`, line 0, column 0), which SCHEMA.md
/// allows: a checked-in schema then changes only when the interfaces do.
///
/// ```
/// use remote_policy::testing::*;
/// let mut schema = schema_with(vec![iface("app::Chat", vec![method("m", vec![], u64_ty())])], vec![]);
/// remote_policy::export::strip_locations(&mut schema);
/// assert_eq!(schema.interfaces["app::Chat"].methods[0].location.line, 0);
/// ```
pub fn strip_locations(schema: &mut Schema) {
    for i in schema.interfaces.values_mut() {
        i.location = Default::default();
        for m in &mut i.methods {
            m.location = Default::default();
        }
    }
    for t in schema.types.values_mut() {
        t.location = Default::default();
        let fields: Vec<&mut remote_core::schema::FieldDef> = match &mut t.kind {
            remote_core::schema::TypeKind::Struct { fields } => fields.iter_mut().collect(),
            remote_core::schema::TypeKind::Enum { variants } => variants
                .iter_mut()
                .flat_map(|v| v.fields.iter_mut())
                .collect(),
        };
        for f in fields {
            f.location = None;
        }
    }
    for i in &mut schema.impls {
        i.location = Default::default();
    }
}
