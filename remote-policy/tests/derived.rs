//! Fixtures written with the real `#[remote]` and `#[derive(Wire)]`,
//! collected from `inventory` with `remote_core::schema::collect()`.

pub mod app {
    use remote_core::wire::Bounded;
    use remote_core::{remote, Remote, Wire};

    /// Marked secret on the type.
    #[derive(Debug, Clone, Wire)]
    #[wire(secret)]
    pub struct ApiKey(pub u64);

    #[derive(Debug, Clone, Wire)]
    pub struct User {
        pub name: Bounded<String, 32>,
        #[wire(secret)]
        pub password_hash: Bounded<Vec<u8>, 64>,
    }

    #[derive(Debug, Clone, Wire)]
    pub enum Event {
        Joined(User),
        Rekeyed { old: u64, key: ApiKey },
    }

    #[derive(Debug, Wire, thiserror::Error)]
    pub enum LoginError {
        #[error("denied")]
        Denied { expected: Option<ApiKey> },
        #[error("connection failed: {}", .0.as_str())]
        Connection(Bounded<String, 256>),
    }

    impl From<remote_core::Error> for LoginError {
        fn from(e: remote_core::Error) -> Self {
            LoginError::Connection(Bounded::new(e.to_string().chars().take(64).collect()).unwrap())
        }
    }

    #[remote]
    pub trait Api {
        // Cached: the policy still follows it (the secret below is found
        // through it).
        #[remote(cache(ttl = "5s"))]
        async fn whoami(&self) -> Result<User, remote_core::Error>;
        async fn events(&self) -> Result<Option<Vec<Event>>, remote_core::Error>;
        #[remote(invalidates(whoami))]
        async fn login(&self, name: Bounded<String, 32>) -> Result<(), LoginError>;
        async fn subscribe(&self, listener: Remote<dyn Listener>)
            -> Result<(), remote_core::Error>;
        async fn open(&self) -> Result<Remote<dyn Room>, remote_core::Error>;
        #[remote(requires_auth)]
        async fn admin(&self) -> Result<Remote<dyn Admin>, remote_core::Error>;
        async fn post(&self, text: String) -> Result<u64, remote_core::Error>;
    }

    #[remote]
    pub trait Listener {
        async fn on_rekey(&self, key: ApiKey) -> Result<(), remote_core::Error>;
    }

    #[remote]
    pub trait Room {
        async fn vault(&self) -> Result<Remote<dyn Vault>, remote_core::Error>;
    }

    #[remote]
    pub trait Vault {
        async fn read(&self) -> Result<ApiKey, remote_core::Error>;
    }

    #[remote]
    pub trait Admin {
        fn shutdown(&self) -> Result<(), remote_core::Error>;
    }
}

/// Look-alikes of `app` that do not leak: secrets only flow in.
pub mod clean {
    use remote_core::wire::Bounded;
    use remote_core::{remote, Error, Remote};

    use super::app::ApiKey;

    #[remote]
    pub trait Safe {
        async fn store(&self, key: ApiKey) -> Result<(), Error>;
        async fn name(&self) -> Result<Bounded<String, 32>, Error>;
        async fn ask(&self, asker: Remote<dyn Asker>) -> Result<(), Error>;
        async fn sink(&self) -> Result<Remote<dyn Sink>, Error>;
    }

    /// A callback: what it returns flows in.
    #[remote]
    pub trait Asker {
        async fn key(&self) -> Result<ApiKey, Error>;
    }

    #[remote]
    pub trait Sink {
        async fn put(&self, key: ApiKey, note: Bounded<String, 64>) -> Result<(), Error>;
    }
}

/// A served implementation, so `Api` is a root by default.
pub mod server {
    use remote_core::wire::Bounded;
    use remote_core::{remote, Error, Remote};

    use super::app::*;

    #[derive(Debug)]
    pub struct Server;

    #[remote]
    impl Api for Server {
        async fn whoami(&self) -> Result<User, Error> {
            Err(Error::unknown_method("Api", "whoami"))
        }
        async fn events(&self) -> Result<Option<Vec<Event>>, Error> {
            Ok(None)
        }
        async fn login(&self, _name: Bounded<String, 32>) -> Result<(), LoginError> {
            Ok(())
        }
        async fn subscribe(&self, _listener: Remote<dyn Listener>) -> Result<(), Error> {
            Ok(())
        }
        async fn open(&self) -> Result<Remote<dyn Room>, Error> {
            Err(Error::unknown_method("Api", "open"))
        }
        async fn admin(&self) -> Result<Remote<dyn Admin>, Error> {
            Err(Error::unknown_method("Api", "admin"))
        }
        async fn post(&self, _text: String) -> Result<u64, Error> {
            Ok(0)
        }
    }
}

use remote_policy::{check, Policy, Report};

/// The line of the first source line containing `needle`, as `file:line`.
fn at(needle: &str) -> String {
    let src = include_str!("derived.rs");
    let line = src.lines().position(|l| l.contains(needle)).expect(needle) + 1;
    format!("remote-policy/tests/derived.rs:{line}")
}

fn rows(report: &Report) -> Vec<(String, String, String, String)> {
    report
        .findings
        .iter()
        .map(|f| {
            let loc = f
                .definition
                .as_ref()
                .or(f.location.as_ref())
                .map(|l| format!("{}:{}", l.file, l.line))
                .unwrap_or_default();
            (f.rule.to_string(), f.at.clone(), f.chain_text(), loc)
        })
        .collect()
}

fn row(rule: &str, at: &str, chain: &str, loc: String) -> (String, String, String, String) {
    (
        rule.to_owned(),
        format!("derived::{at}"),
        chain.to_owned(),
        loc,
    )
}

#[test]
fn collected_descriptors_carry_the_marks() {
    let schema = remote_core::schema::collect();
    assert!(schema.types["derived::app::ApiKey"].secret);
    let user = &schema.types["derived::app::User"];
    let remote_core::schema::TypeKind::Struct { fields } = &user.kind else {
        panic!("{user:?}")
    };
    assert_eq!(
        fields
            .iter()
            .map(|f| (f.name.as_str(), f.secret))
            .collect::<Vec<_>>(),
        [("name", false), ("password_hash", true)]
    );
    let api = &schema.interfaces["derived::app::Api"];
    assert!(
        api.methods
            .iter()
            .find(|m| m.name == "admin")
            .unwrap()
            .requires_auth
    );
    let role = |name: &str| {
        api.methods
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} is listed"))
            .cache
            .clone()
    };
    assert_eq!(
        role("whoami"),
        Some(remote_core::schema::CacheDef::Cached { ttl_ms: 5_000 })
    );
    assert_eq!(
        role("login"),
        Some(remote_core::schema::CacheDef::Invalidates {
            methods: vec!["whoami".into()]
        })
    );
    assert_eq!(schema.impls.len(), 1);
    assert_eq!(schema.impls[0].interface, "derived::app::Api");
}

#[test]
fn every_leak_of_the_app_module_is_found_from_the_default_root() {
    let schema = remote_core::schema::collect();
    // No roots in the policy: the interfaces with a `#[remote] impl` (Api).
    let report = check(&schema, &Policy::default()).unwrap();
    let secret = "secret-flows-out";
    assert_eq!(
        rows(&report),
        [
            // Each secret once, with its shortest chain.
            row(
                secret,
                "app::ApiKey",
                "root Api → Api.subscribe() → arg listener → callback Remote<dyn Listener> → \
                 Listener.on_rekey() [we call the peer] → arg key → ApiKey",
                at("pub struct ApiKey"),
            ),
            // The field's own line, not the struct's.
            row(
                secret,
                "app::User.password_hash",
                "root Api → Api.whoami() → returns → User → .password_hash",
                at("pub password_hash")
            ),
            row(
                "unbounded-input",
                "app::Api.post(text)",
                "root Api → Api.post() → arg text",
                at("async fn post(&self, text: String)")
            ),
        ]
    );
    let also: Vec<(usize, Vec<String>)> = report
        .findings
        .iter()
        .map(|f| (f.also, f.also_at.clone()))
        .collect();
    assert_eq!(
        also[0],
        (
            3,
            vec![
                "derived::app::Api.events->returns".to_owned(),
                "derived::app::Api.login->error".to_owned(),
                "derived::app::Vault.read->returns".to_owned(),
            ]
        )
    );
    assert_eq!(
        also[1],
        (1, vec!["derived::app::Api.events->returns".to_owned()])
    );
    // The `-->` location is where the value crosses: the callback's method.
    let on_rekey = report.findings[0].location.as_ref().unwrap();
    assert_eq!(
        format!("{}:{}", on_rekey.file, on_rekey.line),
        at("async fn on_rekey(&self, key: ApiKey)")
    );
}

#[test]
fn admin_is_reachable_only_after_authentication() {
    let schema = remote_core::schema::collect();
    let auth = Policy::from_toml(
        "roots = [\"derived::app::Api\"]\n[rules]\nsecret-flows-out = \"off\"\nunbounded-input = \"off\"\n\
         [[capability]]\ninterface = \"*::Admin\"\nreachable = \"auth\"",
    )
    .unwrap();
    assert_eq!(rows(&check(&schema, &auth).unwrap()), []);
    let never = Policy::from_toml(
        "roots = [\"derived::app::Api\"]\n[rules]\nsecret-flows-out = \"off\"\nunbounded-input = \"off\"\n\
         [[capability]]\ninterface = \"*::Admin\"\nreachable = \"never\"",
    )
    .unwrap();
    let report = check(&schema, &never).unwrap();
    assert_eq!(
        rows(&report),
        [row(
            "forbidden-capability",
            "app::Admin",
            "root Api → Api.admin() → returns → Remote<dyn Admin>",
            at("pub trait Admin")
        )]
    );
    assert!(!report.findings[0].pre_auth);
}

#[test]
fn the_clean_look_alikes_report_nothing() {
    let schema = remote_core::schema::collect();
    // The peer's `Asker` returns a remote error: bounded by the runtime.
    let policy = Policy::from_toml("roots = [\"derived::clean::Safe\"]").unwrap();
    let report = check(&schema, &policy).unwrap();
    assert_eq!(rows(&report), []);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let reached: Vec<&str> = report.surface.roots[0]
        .interfaces
        .iter()
        .map(|i| i.interface.as_str())
        .collect();
    assert_eq!(
        reached,
        [
            "derived::clean::Safe",
            "derived::clean::Asker",
            "derived::clean::Sink"
        ]
    );
}

#[test]
fn run_cli_checks_the_compiled_in_schema_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sarif = dir.path().join("policy.sarif");
    let code = remote_policy::run_cli_with(
        [
            "remote-policy",
            "check",
            "-o",
            dir.path().join("report.txt").to_str().unwrap(),
            "--sarif",
            sarif.to_str().unwrap(),
        ],
        Some(remote_core::schema::collect()),
    );
    assert_eq!(code, std::process::ExitCode::from(1));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "remote-policy/tests/derived.rs"
    );
    let text = std::fs::read_to_string(dir.path().join("report.txt")).unwrap();
    assert!(
        text.ends_with(
            "remote-policy: 3 errors, 0 warnings, 0 allowed (1 root, 5 interfaces, 11 methods)\n"
        ),
        "{text}"
    );
}

#[test]
fn a_served_generic_collection_is_checked_once_named() {
    use remote_core::collections::RemoteList;
    use remote_core::Remote;
    // Generic interfaces are not registered by `#[remote]`: the chat example
    // serves a `RemoteList<String>` as its root, and names it here.
    let schema = remote_policy::collect_with(|b| {
        b.ty::<Remote<dyn RemoteList<String>>>();
    });
    let root = schema
        .interfaces
        .keys()
        .find(|k| k.contains("RemoteList"))
        .expect("RemoteList<String> is in the schema")
        .clone();
    let policy = Policy::from_toml(&format!("roots = [{root:?}]")).unwrap();
    let report = check(&schema, &policy).unwrap();
    let push = format!("{root}.push(item)");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == remote_policy::Rule::UnboundedInput && f.at == push),
        "{:#?}",
        rows(&report)
    );
}
