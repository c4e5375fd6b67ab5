//! Proves `remote-policy diff` verdicts on the wire: two versions of one
//! interface (`v1` and `v2`, same wire names) served over
//! `Connection::pair`, an old client against a new server and a new client
//! against an old server. Each call succeeds or fails exactly as the
//! verdict of the diff between the two versions' schemas says.

use std::sync::Arc;

use remote_core::schema::{Schema, SchemaBuilder};
use remote_core::{Connection, ConnectionBuilder, Error, Remote};
use remote_policy::diff::{diff, ChangeKind, Verdict};
use remote_policy::Policy;

pub mod v1 {
    use remote_core::{remote, Error, Wire};

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub struct Profile {
        pub name: String,
    }

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub struct Tag {
        pub name: String,
    }

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub enum Status {
        Online,
        Away { minutes: u32 },
    }

    #[remote]
    pub trait Accounts {
        async fn get(&self, id: u32) -> Result<Profile, Error>;
        async fn put(&self, profile: Profile) -> Result<u32, Error>;
        async fn status(&self, busy: bool) -> Result<Status, Error>;
        async fn find(&self, name: String) -> Result<u32, Error>;
        async fn count(&self, n: u32) -> Result<u32, Error>;
        async fn hello(&self, name: String) -> Result<String, Error>;
        async fn tag(&self, tag: Tag) -> Result<u32, Error>;
    }

    #[derive(Debug)]
    pub struct Server;

    #[remote]
    impl Accounts for Server {
        async fn get(&self, id: u32) -> Result<Profile, Error> {
            Ok(Profile {
                name: format!("user{id}"),
            })
        }
        async fn put(&self, profile: Profile) -> Result<u32, Error> {
            Ok(profile.name.len() as u32)
        }
        async fn status(&self, _busy: bool) -> Result<Status, Error> {
            Ok(Status::Away { minutes: 5 })
        }
        async fn find(&self, name: String) -> Result<u32, Error> {
            Ok(name.len() as u32)
        }
        async fn count(&self, n: u32) -> Result<u32, Error> {
            Ok(n)
        }
        async fn hello(&self, name: String) -> Result<String, Error> {
            Ok(format!("hello {name}"))
        }
        async fn tag(&self, tag: Tag) -> Result<u32, Error> {
            Ok(tag.name.len() as u32)
        }
    }
}

pub mod v2 {
    use remote_core::{remote, Error, Wire};

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub struct Profile {
        pub name: String,
        /// Added, optional.
        pub email: Option<String>,
        /// Added with a default.
        #[serde(default)]
        pub karma: u64,
    }

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub struct Tag {
        pub name: String,
        /// Added, required.
        pub level: u32,
    }

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub enum Status {
        Online,
        Away {
            minutes: u32,
        },
        /// Added.
        Busy,
    }

    #[remote]
    pub trait Accounts {
        /// Argument widened u32 → u64.
        async fn get(&self, id: u64) -> Result<Profile, Error>;
        async fn put(&self, profile: Profile) -> Result<u32, Error>;
        async fn status(&self, busy: bool) -> Result<Status, Error>;
        /// Argument appended (an Option).
        async fn find(&self, name: String, exact: Option<bool>) -> Result<u32, Error>;
        /// Return value widened u32 → u64.
        async fn count(&self, n: u32) -> Result<u64, Error>;
        /// Rust name and argument name changed, wire name kept.
        #[remote(name = "hello")]
        async fn greet(&self, who: String) -> Result<String, Error>;
        async fn tag(&self, tag: Tag) -> Result<u32, Error>;
        /// Added.
        async fn ping(&self) -> Result<(), Error>;
    }

    #[derive(Debug)]
    pub struct Server;

    #[remote]
    impl Accounts for Server {
        async fn get(&self, id: u64) -> Result<Profile, Error> {
            Ok(Profile {
                name: format!("user{id}"),
                email: Some("a@b".into()),
                karma: 3,
            })
        }
        async fn put(&self, profile: Profile) -> Result<u32, Error> {
            Ok(profile.name.len() as u32 + profile.karma as u32 + profile.email.map_or(0, |_| 100))
        }
        async fn status(&self, busy: bool) -> Result<Status, Error> {
            Ok(if busy {
                Status::Busy
            } else {
                Status::Away { minutes: 5 }
            })
        }
        async fn find(&self, name: String, exact: Option<bool>) -> Result<u32, Error> {
            Ok(name.len() as u32 + if exact.is_some() { 10 } else { 0 })
        }
        async fn count(&self, n: u32) -> Result<u64, Error> {
            Ok(u64::from(n) << 32)
        }
        async fn greet(&self, who: String) -> Result<String, Error> {
            Ok(format!("hi {who}"))
        }
        async fn tag(&self, tag: Tag) -> Result<u32, Error> {
            Ok(tag.level)
        }
        async fn ping(&self) -> Result<(), Error> {
            Ok(())
        }
    }
}

/// The kind of a remote error (`bad_arguments`, `unknown_method`), or the
/// local decode failure.
fn kind(e: &Error) -> String {
    match e {
        Error::Remote(r) => r.kind.clone(),
        other => format!("local: {other}"),
    }
}

/// The schema of one version, with the module renamed to `api` so both
/// versions use the same keys (the wire never carries them).
fn schema_of(describe: impl FnOnce(&mut SchemaBuilder), module: &str) -> Schema {
    let mut b = SchemaBuilder::new();
    describe(&mut b);
    let json =
        remote_policy::export::to_json(&b.finish()).replace(&format!("::{module}::"), "::api::");
    remote_policy::export::from_json(&json).unwrap()
}

fn verdicts() -> Vec<(ChangeKind, String, Verdict)> {
    let old = schema_of(|b| drop(b.ty::<Remote<dyn v1::Accounts>>()), "v1");
    let new = schema_of(|b| drop(b.ty::<Remote<dyn v2::Accounts>>()), "v2");
    let policy = Policy::from_toml("roots = [\"*::Accounts\"]").unwrap();
    diff(&old, &new, &policy)
        .unwrap()
        .changes
        .into_iter()
        .map(|c| {
            (
                c.kind,
                c.at.replace("compat_roundtrip::api::", ""),
                c.verdict,
            )
        })
        .collect()
}

#[test]
fn the_diff_of_the_two_versions() {
    use ChangeKind as K;
    use Verdict as V;
    let expected: Vec<(ChangeKind, String, Verdict)> = [
        (K::ArgumentRetyped, "Accounts.get(id)", V::BreaksOldServers),
        (
            K::ReturnChanged,
            "Accounts.count->returns",
            V::BreaksOldClients,
        ),
        (K::ArgumentAdded, "Accounts.find(exact)", V::BreaksBoth),
        (K::RustNameChanged, "Accounts.greet", V::Safe),
        (K::ArgumentRenamed, "Accounts.greet(who)", V::Safe),
        (K::MethodAdded, "Accounts.ping", V::Safe),
        (K::FieldAddedOptional, "Profile.email", V::Safe),
        // #[serde(default)], recorded in the schema.
        (K::FieldAddedOptional, "Profile.karma", V::Safe),
        (K::VariantAdded, "Status.Busy", V::BreaksOldClients),
        (K::FieldAddedRequired, "Tag.level", V::BreaksOldClients),
    ]
    .into_iter()
    .map(|(k, at, v)| (k, at.to_owned(), v))
    .collect();
    let mut got = verdicts();
    let mut want = expected;
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn old_client_against_new_server() {
    let served: Remote<dyn v2::Accounts> = Remote::new(Arc::new(v2::Server));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(served),
    )
    .await
    .unwrap();
    let old: Remote<dyn v1::Accounts> = client.root::<dyn v1::Accounts>();
    // get(id) widened (breaks-old-servers only): old clients' ids still fit.
    // Profile.email (safe) and karma: the old decoder ignores the new keys.
    assert_eq!(
        old.get(4).await.unwrap(),
        v1::Profile {
            name: "user4".into()
        }
    );
    // Profile.email (safe): missing Option key → None; karma: #[serde(default)] → 0.
    assert_eq!(
        old.put(v1::Profile { name: "ann".into() }).await.unwrap(),
        3
    );
    // greet (rust-name-changed, argument-renamed: safe): same wire name, same position.
    assert_eq!(old.hello("bo".into()).await.unwrap(), "hi bo");
    // Status.Busy (breaks-old-clients): old variants still decode, the new one does not.
    assert_eq!(
        old.status(false).await.unwrap(),
        v1::Status::Away { minutes: 5 }
    );
    let e = old.status(true).await.unwrap_err();
    assert!(e.to_string().contains("unknown variant `Busy`"), "{e}");
    // find(exact) added (breaks-both): the argument array is too short.
    assert_eq!(
        kind(&old.find("ann".into()).await.unwrap_err()),
        "bad_arguments"
    );
    // count widened return (breaks-old-clients): a value above u32::MAX is refused.
    let e = old.count(1).await.unwrap_err();
    assert!(kind(&e).starts_with("local:"), "{e}");
    assert_eq!(old.count(0).await.unwrap(), 0);
    // Tag.level required (breaks-old-clients): missing field.
    let e = old.tag(v1::Tag { name: "x".into() }).await.unwrap_err();
    assert_eq!(kind(&e), "bad_arguments");
    assert!(e.to_string().contains("missing field `level`"), "{e}");
}

#[tokio::test]
async fn new_client_against_old_server() {
    let served: Remote<dyn v1::Accounts> = Remote::new(Arc::new(v1::Server));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(served),
    )
    .await
    .unwrap();
    let new: Remote<dyn v2::Accounts> = client.root::<dyn v2::Accounts>();
    // Profile.email (safe): missing key → None; karma: default.
    let p = new.get(4).await.unwrap();
    assert_eq!((p.email, p.karma), (None, 0));
    // get(id) widened (breaks-old-servers): an id above u32::MAX is refused.
    assert_eq!(kind(&new.get(1 << 40).await.unwrap_err()), "bad_arguments");
    // Profile (safe): the old server ignores email and karma.
    let p = v2::Profile {
        name: "ann".into(),
        email: Some("x".into()),
        karma: 9,
    };
    assert_eq!(new.put(p).await.unwrap(), 3);
    // greet (safe).
    assert_eq!(new.greet("bo".into()).await.unwrap(), "hello bo");
    // count (safe this way): u32 values fit a u64.
    assert_eq!(new.count(7).await.unwrap(), 7);
    // Status (safe this way): the old server sends only variants the new client knows.
    assert_eq!(
        new.status(true).await.unwrap(),
        v2::Status::Away { minutes: 5 }
    );
    // find(exact) added (breaks-both): the argument array is too long, even with None.
    assert_eq!(
        kind(&new.find("ann".into(), None).await.unwrap_err()),
        "bad_arguments"
    );
    // Tag.level (safe this way): the old server ignores the new key.
    assert_eq!(
        new.tag(v2::Tag {
            name: "xy".into(),
            level: 1
        })
        .await
        .unwrap(),
        2
    );
    // ping added (safe for old clients): a new client calling it on an old server.
    assert_eq!(kind(&new.ping().await.unwrap_err()), "unknown_method");
}
