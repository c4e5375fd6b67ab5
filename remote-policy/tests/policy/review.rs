//! Regressions of review findings, each on the reviewer's schema.

use remote_core::schema::{Schema, Ty, TypeDef};
use remote_policy::testing::*;
use remote_policy::{check, Error, Policy, Report};

fn checked(schema: &Schema, policy: &str) -> Report {
    check(schema, &Policy::from_toml(policy).unwrap()).unwrap()
}

/// (rule, at, root, allowed, chain) of every finding.
fn summary(r: &Report) -> Vec<(String, String, String, bool, String)> {
    r.findings
        .iter()
        .map(|f| {
            (
                f.rule.id().to_owned(),
                f.at.clone(),
                f.root.clone(),
                f.allowed.is_some(),
                f.chain_text(),
            )
        })
        .collect()
}

fn s(
    rule: &str,
    at: &str,
    root: &str,
    allowed: bool,
    chain: &str,
) -> (String, String, String, bool, String) {
    (rule.into(), at.into(), root.into(), allowed, chain.into())
}

fn user() -> TypeDef {
    strukt(
        "app::User",
        vec![
            field("name", bounded_string(8)),
            secret_field("hash", bounded_string(8)),
        ],
    )
}

fn two_roots() -> Schema {
    schema_with(
        vec![
            iface(
                "app::Ops",
                vec![method("dir", vec![], cap("app::Directory"))],
            ),
            iface(
                "app::Public",
                vec![method("dir", vec![], cap("app::Directory"))],
            ),
            iface(
                "app::Directory",
                vec![method("get", vec![], named("app::User"))],
            ),
        ],
        vec![user()],
    )
}

#[test]
fn an_allow_scoped_by_root_does_not_hide_the_leak_from_another_root() {
    let policy = r#"
roots = ["app::Ops", "app::Public"]
[[allow]]
rule = "secret-flows-out"
at = "app::User.hash"
root = "app::Ops"
reason = "operators may see hashes"
"#;
    let r = checked(&two_roots(), policy);
    assert!(r.failed());
    assert_eq!(
        summary(&r),
        [s(
            "secret-flows-out",
            "app::User.hash",
            "app::Public",
            false,
            "root Public → Public.dir() → returns → Remote<dyn Directory> → Directory.get() → returns → User → .hash"
        )]
    );
    assert_eq!(
        r.warnings,
        ["[[allow]] entry 1 (rule `secret-flows-out`, at `app::User.hash`) covers only some paths: \
          the finding stays for root `app::Public` through root Public → Public.dir() → returns → \
          Remote<dyn Directory> → Directory.get() → returns → User → .hash"]
    );
    // Allowing it from both roots passes.
    let both = policy.replace("root = \"app::Ops\"", "root = \"app::*\"");
    let r = checked(&two_roots(), &both);
    assert!(!r.failed());
    assert_eq!(
        summary(&r),
        [s(
            "secret-flows-out",
            "app::User.hash",
            "app::Ops",
            true,
            "root Ops → Ops.dir() → returns → Remote<dyn Directory> → Directory.get() → returns → User → .hash"
        )]
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_root_scoped_allow_does_not_hide_a_forbidden_capability_from_another_root() {
    let policy = r#"
roots = ["app::Ops", "app::Public"]
[[capability]]
interface = "app::Directory"
reachable = "never"
[[allow]]
rule = "forbidden-capability"
at = "app::Directory"
root = "app::Ops"
reason = "operators use the directory"
"#;
    let r = checked(
        &two_roots(),
        &format!("{policy}[rules]\nsecret-flows-out = \"off\""),
    );
    assert!(r.failed());
    assert_eq!(
        summary(&r),
        [
            s(
                "forbidden-capability",
                "app::Directory",
                "app::Ops",
                true,
                "root Ops → Ops.dir() → returns → Remote<dyn Directory>"
            ),
            s(
                "forbidden-capability",
                "app::Directory",
                "app::Public",
                false,
                "root Public → Public.dir() → returns → Remote<dyn Directory>"
            ),
        ]
    );
}

fn two_paths() -> Schema {
    schema_with(
        vec![
            iface(
                "app::Chat",
                vec![
                    method("admin", vec![], cap("app::Admin")),
                    method("misc", vec![], cap("app::Misc")),
                ],
            ),
            iface(
                "app::Admin",
                vec![method("directory", vec![], cap("app::Directory"))],
            ),
            iface("app::Misc", vec![method("more", vec![], cap("app::More"))]),
            iface(
                "app::More",
                vec![method("directory", vec![], cap("app::Directory"))],
            ),
            iface(
                "app::Directory",
                vec![method("get", vec![], named("app::User"))],
            ),
        ],
        vec![user()],
    )
}

const VIA_ADMIN: &str = r#"
roots = ["app::Chat"]
[[allow]]
rule = "secret-flows-out"
at = "app::User.hash"
via = "app::Admin.directory"
reason = "admins audit hashes"
"#;

#[test]
fn an_allow_with_via_does_not_hide_another_path_to_the_same_site() {
    let r = checked(&two_paths(), VIA_ADMIN);
    assert!(r.failed());
    assert_eq!(
        summary(&r),
        [s(
            "secret-flows-out",
            "app::User.hash",
            "app::Chat",
            false,
            "root Chat → Chat.misc() → returns → Remote<dyn Misc> → Misc.more() → returns → \
             Remote<dyn More> → More.directory() → returns → Remote<dyn Directory> → \
             Directory.get() → returns → User → .hash"
        )]
    );
    // Allowing the other path too passes, with the shortest chain.
    let both = format!(
        "{VIA_ADMIN}[[allow]]\nrule = \"secret-flows-out\"\nat = \"app::User.hash\"\n\
         via = \"app::More.directory\"\nreason = \"the more page audits hashes\"\n"
    );
    let r = checked(&two_paths(), &both);
    assert!(!r.failed());
    assert_eq!(r.findings.len(), 1);
    assert_eq!(
        r.findings[0].allowed.as_deref(),
        Some("admins audit hashes")
    );
    assert!(r.findings[0].chain_text().contains("Admin.directory()"));
    assert_eq!(
        r.warnings,
        ["[[allow]] entry 2 (rule `secret-flows-out`, at `app::User.hash`) matches no finding"]
    );
}

#[test]
fn a_via_allow_on_one_site_does_not_hide_an_unbounded_field_at_another() {
    let schema = schema_with(
        vec![iface(
            "app::Chat",
            vec![
                method("import", vec![("p", named("app::Profile"))], Ty::Unit),
                method("signup", vec![("p", named("app::Profile"))], Ty::Unit),
            ],
        )],
        vec![strukt("app::Profile", vec![field("bio", string())])],
    );
    let policy = r#"
roots = ["app::Chat"]
[[allow]]
rule = "unbounded-input"
at = "app::Profile.bio"
via = "app::Chat.import(p)"
reason = "import is checked by the importer"
"#;
    let r = checked(&schema, policy);
    assert!(r.failed());
    assert_eq!(
        summary(&r),
        [s(
            "unbounded-input",
            "app::Profile.bio",
            "app::Chat",
            false,
            "root Chat → Chat.signup() → arg p → Profile → .bio"
        )]
    );
    assert_eq!(r.findings[0].site.as_deref(), Some("app::Chat.signup(p)"));
    assert_eq!(
        r.findings[0].message,
        "string without a length bound in field `app::Profile.bio`, in argument `p` of `Chat.signup`, before authentication"
    );
    // Allowing it at both sites passes.
    let both = policy.replace("app::Chat.import(p)", "app::Chat.*(p)");
    let r = checked(&schema, &both);
    assert!(!r.failed());
    assert_eq!(r.findings.len(), 1);
    assert!(r.findings[0].allowed.is_some());
}

fn typo_schema() -> Schema {
    schema_with(
        vec![
            iface(
                "app::Chat",
                vec![method("admin", vec![], cap("app::Admin"))],
            ),
            iface("app::Admin", vec![method("get", vec![], named("app::Key"))]),
        ],
        vec![strukt("app::Key", vec![field("k", u64_ty())])],
    )
}

const TYPO: &str = r#"
roots = ["app::Chat"]
[secrets]
types = ["app::Keys"]
[[capability]]
interface = "app::Admn"
reachable = "never"
"#;

#[test]
fn secrets_and_capability_patterns_that_match_nothing_are_errors() {
    let err = check(&typo_schema(), &Policy::from_toml(TYPO).unwrap()).unwrap_err();
    assert!(matches!(err, Error::UnmatchedPattern(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "policy patterns match nothing in the schema (a typo would turn a rule off): \
         [secrets] type `app::Keys` matches no type of the schema; \
         [[capability]] `app::Admn` matches no interface of the schema"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, TYPO).unwrap();
    let code = remote_policy::run_cli_with(
        ["remote-policy", "check", "--policy", path.to_str().unwrap()],
        Some(typo_schema()),
    );
    assert_eq!(code, std::process::ExitCode::from(2));
    // Fixed, the same policy runs (and finds the forbidden capability).
    let fixed = TYPO
        .replace("app::Keys", "app::Key")
        .replace("app::Admn", "app::Admin");
    let r = checked(&typo_schema(), &fixed);
    assert_eq!(
        summary(&r),
        [
            s("secret-flows-out", "app::Key", "app::Chat", false, "root Chat → Chat.admin() → returns → Remote<dyn Admin> → Admin.get() → returns → Key"),
            s("forbidden-capability", "app::Admin", "app::Chat", false, "root Chat → Chat.admin() → returns → Remote<dyn Admin>"),
        ]
    );
}

/// The reviewer's `keypath` schema: key `app::A` holds an interface whose
/// path is `app::B`.
fn keypath_schema() -> Schema {
    let a = iface(
        "app::B",
        vec![
            method("x", vec![], Ty::Unit),
            method("y", vec![], cap("app::C")),
        ],
    );
    let b = iface("app::B", vec![]);
    let c = iface("app::C", vec![method("z", vec![], Ty::Unit)]);
    let mut s = Schema::default();
    s.interfaces.insert("app::A".into(), a);
    s.interfaces.insert("app::B".into(), b);
    s.interfaces.insert("app::C".into(), c);
    s
}

#[test]
fn schema_keys_that_differ_from_their_paths_are_rejected() {
    for order in [
        r#"roots = ["app::B", "app::A"]"#,
        r#"roots = ["app::A", "app::B"]"#,
    ] {
        let policy = format!("{order}\n[[capability]]\ninterface=\"app::C\"\nreachable=\"never\"");
        let err = check(&keypath_schema(), &Policy::from_toml(&policy).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid schema: interface stored under key `app::A` has path `app::B`; the key must equal the path"
        );
    }
    let json = remote_policy::export::to_json(&keypath_schema());
    let err = remote_policy::export::from_json(&json).unwrap_err();
    assert!(matches!(err, Error::SchemaInvalid(_)), "{err:?}");

    // keypath-type: a secret type stored under another key.
    let mut sec = secret(strukt("app::S2", vec![field("k", u64_ty())]));
    sec.path = "app::S2".into();
    let mut s = schema_with(
        vec![iface(
            "app::Chat",
            vec![method("get", vec![], named("app::Wrap"))],
        )],
        vec![strukt("app::Wrap", vec![field("s", named("app::S"))])],
    );
    s.types.insert("app::S".into(), sec);
    let err = check(&s, &Policy::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid schema: type stored under key `app::S` has path `app::S2`; the key must equal the path"
    );
    let err = remote_policy::export::from_json(&remote_policy::export::to_json(&s)).unwrap_err();
    assert!(matches!(err, Error::SchemaInvalid(_)), "{err:?}");

    // The standalone binary refuses the file with exit status 2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.schema.json");
    std::fs::write(&path, json).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remote-policy"))
        .args(["check", "--schema", path.to_str().unwrap()])
        .current_dir(dir.path())
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the key must equal the path"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `T0 { next: T1 } … T(n-1) { next: String }`, taken by `Chat.put(t: T0)`.
fn deep(n: usize) -> Schema {
    let mut types = Vec::new();
    for i in 0..n {
        let ty = if i + 1 < n {
            named(&format!("app::T{}", i + 1))
        } else {
            string()
        };
        types.push(strukt(&format!("app::T{i}"), vec![field("next", ty)]));
    }
    schema_with(
        vec![iface(
            "app::Chat",
            vec![method("put", vec![("t", named("app::T0"))], Ty::Unit)],
        )],
        types,
    )
}

#[test]
fn a_deep_type_chain_is_reported_as_unchecked_instead_of_overflowing_the_stack() {
    // 10,000 nested types aborted the process; this runs on a test thread's
    // default (2 MiB) stack.
    let r = checked(&deep(10_000), r#"roots = ["app::Chat"]"#);
    assert!(r.failed());
    let rows: Vec<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.rule.id(), f.at.as_str()))
        .collect();
    assert_eq!(rows, [("unchecked-type", "app::T127")]);
    assert!(
        r.findings[0]
            .message
            .starts_with("a type nests more than 256 steps deep inside `app::T127`"),
        "{}",
        r.findings[0].message
    );
    // A shallow chain is still seen to its end.
    let r = checked(&deep(100), r#"roots = ["app::Chat"]"#);
    let rows: Vec<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.rule.id(), f.at.as_str()))
        .collect();
    assert_eq!(rows, [("unbounded-input", "app::T99.next")]);
}

#[test]
fn an_opaque_argument_is_unbounded_input_and_a_callbacks_remote_error_is_bounded() {
    let schema = schema_with(
        vec![
            iface(
                "app::Chat",
                vec![
                    method("subscribe", vec![("l", cap("app::Listener"))], Ty::Unit),
                    method(
                        "load",
                        vec![(
                            "blob",
                            Ty::Opaque {
                                name: "vendor::Blob".into(),
                                declared: None,
                            },
                        )],
                        Ty::Unit,
                    ),
                ],
            ),
            iface("app::Listener", vec![method("ask", vec![], u64_ty())]),
        ],
        vec![],
    );
    let policy = "roots = [\"app::Chat\"]\n[rules]\nunchecked-type = \"off\"";
    let r = checked(&schema, policy);
    assert!(r.failed());
    assert_eq!(
        summary(&r),
        [s(
            "unbounded-input",
            "app::Chat.load(blob)",
            "app::Chat",
            false,
            "root Chat → Chat.load() → arg blob"
        ),]
    );
    assert_eq!(
        r.findings[0].message,
        "opaque type (the checker cannot see its size), in argument `blob` of `Chat.load`, before authentication"
    );
    // The runtime bounds a received remote error (remote_core::Limits).
    assert_eq!(r.findings.len(), 1);
    // Our own methods' errors flow out, and are not input.
    assert!(r
        .findings
        .iter()
        .all(|f| !f.at.starts_with("app::Chat.subscribe->")));
    // A bound on the opaque type's name silences it.
    let bounded = format!("{policy}\n[[bound]]\nat = \"vendor::Blob\"\nmax_bytes = 64");
    let r = checked(&schema, &bounded);
    assert!(!r.failed(), "{:?}", summary(&r));
    assert!(r.findings.is_empty());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_via_allow_does_not_hide_a_forbidden_capability_reached_another_way() {
    let policy = r#"
roots = ["app::Chat"]
[rules]
secret-flows-out = "off"
[[capability]]
interface = "app::Directory"
reachable = "never"
[[allow]]
rule = "forbidden-capability"
at = "app::Directory"
via = "app::Admin.directory"
reason = "admins browse the directory"
"#;
    let r = checked(&two_paths(), policy);
    assert!(r.failed());
    assert_eq!(
        summary(&r),
        [s(
            "forbidden-capability",
            "app::Directory",
            "app::Chat",
            false,
            "root Chat → Chat.misc() → returns → Remote<dyn Misc> → Misc.more() → returns → \
             Remote<dyn More> → More.directory() → returns → Remote<dyn Directory>"
        )]
    );
}
