use std::path::PathBuf;

/// What can go wrong before a check runs. Findings are not errors: they are
/// in the [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An error about the contents of a file.
    #[error("in {}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// The policy is not valid TOML or has unknown keys.
    #[error("invalid policy")]
    PolicySyntax(#[source] Box<toml::de::Error>),
    /// The policy parses but says something impossible.
    #[error("invalid policy: {0}")]
    PolicyInvalid(String),
    /// The schema is not valid JSON of the expected shape.
    #[error("invalid schema")]
    SchemaSyntax(#[source] serde_json::Error),
    /// The schema is of another format or version.
    #[error("unsupported schema: format `{format}` version {version} (this checker reads `remote-schema` version {supported})")]
    SchemaVersion {
        /// The file's `format`.
        format: String,
        /// The file's `version`.
        version: u32,
        /// The version this checker reads.
        supported: u32,
    },
    /// The standalone binary was run without `--schema FILE`.
    #[error("no schema: pass --schema FILE (a file written by `remote-policy schema`)")]
    NoSchema,
    /// The schema has no interface: nothing would be checked.
    #[error("the schema has no interfaces: if this program checks its own crate, add `use your_crate as _;` so the crate (and its #[remote] descriptors) is linked")]
    EmptySchema,
    /// The schema stores an interface or type under a key that is not its
    /// `path`, so keys and chains would disagree.
    #[error("invalid schema: {0}")]
    SchemaInvalid(String),
    /// `[secrets]` or `[[capability]]` patterns of the policy match nothing
    /// in the schema, so the rule they write would silently be off.
    #[error("policy patterns match nothing in the schema (a typo would turn a rule off): {}", .0.join("; "))]
    UnmatchedPattern(Vec<String>),
    /// A root named by the policy is not an interface of the schema.
    #[error("root `{root}` matches no interface of the schema{hint}", root = .0, hint = generic_hint(.0))]
    UnknownRoot(String),
}

/// A generic trait is in the schema only once a concrete instance is named.
fn generic_hint(pattern: &str) -> String {
    let instance = if pattern.contains('<') {
        format!(
            "dyn {}",
            pattern.trim_start_matches('*').trim_start_matches("::")
        )
    } else {
        format!(
            "dyn {}<YourType>",
            remote_core::schema::short_name(pattern).trim_matches('*')
        )
    };
    format!(
        " (if it is a generic interface, `#[remote]` cannot register it alone: name a concrete instance with `remote_core::register_interface!({instance});` in the crate, or `remote_policy::collect_with` in the policy binary)"
    )
}
