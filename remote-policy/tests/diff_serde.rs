//! `remote-policy diff` and serde's container attributes: a type that
//! gains `#[serde(transparent)]` or `#[serde(tag = "t")]`, or a `(u64,
//! u32)` that becomes a `Duration`, crosses differently, and an old client
//! breaks against the new server; the schemas were the same and the diff
//! found no change (a review, pass 46). The schema now records those
//! attributes (and describes a `Duration` as what crosses).

use std::sync::Arc;

use remote_core::schema::{Schema, SchemaBuilder};
use remote_core::{Connection, ConnectionBuilder, Error, Remote};
use remote_policy::diff::{diff, ChangeKind};
use remote_policy::Policy;

pub mod v1 {
    use remote_core::{remote, Error, Wire};

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub struct Id {
        pub value: u64,
    }

    #[derive(Debug, Clone, PartialEq, Wire)]
    pub enum Shape {
        Circle { r: u32 },
        Square { side: u32 },
    }

    #[remote]
    pub trait Store {
        async fn get(&self, id: Id) -> Result<u64, Error>;
        async fn shape(&self) -> Result<Shape, Error>;
        async fn age(&self) -> Result<(u64, u32), Error>;
    }

    #[derive(Debug)]
    pub struct Server;

    #[remote]
    impl Store for Server {
        async fn get(&self, id: Id) -> Result<u64, Error> {
            Ok(id.value)
        }
        async fn shape(&self) -> Result<Shape, Error> {
            Ok(Shape::Circle { r: 1 })
        }
        async fn age(&self) -> Result<(u64, u32), Error> {
            Ok((5, 0))
        }
    }
}

pub mod v2 {
    use remote_core::{remote, Error, Wire};

    /// Same fields; now `#[serde(transparent)]`: encoded as a bare u64.
    #[derive(Debug, Clone, PartialEq, Wire)]
    #[serde(transparent)]
    pub struct Id {
        pub value: u64,
    }

    /// Same variants; now internally tagged: a map `{"t": "Circle", "r": 1}`.
    #[derive(Debug, Clone, PartialEq, Wire)]
    #[serde(tag = "t")]
    pub enum Shape {
        Circle { r: u32 },
        Square { side: u32 },
    }

    #[remote]
    pub trait Store {
        async fn get(&self, id: Id) -> Result<u64, Error>;
        async fn shape(&self) -> Result<Shape, Error>;
        // `(u64, u32)` → `Duration`: a struct, a map on the wire.
        async fn age(&self) -> Result<std::time::Duration, Error>;
    }

    #[derive(Debug)]
    pub struct Server;

    #[remote]
    impl Store for Server {
        async fn get(&self, id: Id) -> Result<u64, Error> {
            Ok(id.value)
        }
        async fn shape(&self) -> Result<Shape, Error> {
            Ok(Shape::Circle { r: 1 })
        }
        async fn age(&self) -> Result<std::time::Duration, Error> {
            Ok(std::time::Duration::from_secs(5))
        }
    }
}

/// The schema `describe` makes, its module renamed to `api` (the two
/// versions of one crate).
fn schema_of(describe: impl FnOnce(&mut SchemaBuilder), module: &str) -> Schema {
    let mut b = SchemaBuilder::new();
    describe(&mut b);
    let json =
        remote_policy::export::to_json(&b.finish()).replace(&format!("::{module}::"), "::api::");
    remote_policy::export::from_json(&json).unwrap()
}

#[test]
fn the_diff_reports_what_serde_encodes_differently() {
    let old = schema_of(|b| drop(b.ty::<Remote<dyn v1::Store>>()), "v1");
    let new = schema_of(|b| drop(b.ty::<Remote<dyn v2::Store>>()), "v2");
    assert_eq!(new.types["diff_serde::api::Id"].serde, ["transparent"]);
    assert_eq!(new.types["diff_serde::api::Shape"].serde, ["tag = \"t\""]);
    let policy = Policy::from_toml("roots = [\"*::Store\"]").unwrap();
    let d = diff(&old, &new, &policy).unwrap();
    let found: Vec<(ChangeKind, &str, bool)> = d
        .changes
        .iter()
        .map(|c| (c.kind, c.at.as_str(), c.fails()))
        .collect();
    for key in ["diff_serde::api::Id", "diff_serde::api::Shape"] {
        assert!(
            found.contains(&(ChangeKind::ShapeChanged, key, true)),
            "{key}: {found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|(_, at, fails)| at.contains("age") && *fails),
        "{found:#?}"
    );
    assert!(d.failed());
}

fn kind(e: &Error) -> String {
    match e {
        Error::Remote(r) => format!("{}: {}", r.kind, r.message),
        other => format!("local: {other}"),
    }
}

/// What the diff reports is real: the old client breaks on all three.
#[tokio::test]
async fn an_old_client_breaks_against_the_new_server() {
    let served: Remote<dyn v2::Store> = Remote::new(Arc::new(v2::Server));
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(served),
    )
    .await
    .unwrap();
    let old: Remote<dyn v1::Store> = client.root::<dyn v1::Store>();
    let e = old.get(v1::Id { value: 3 }).await.unwrap_err();
    assert!(kind(&e).starts_with("bad_arguments"), "{}", kind(&e));
    let e = old.shape().await.unwrap_err();
    assert!(
        kind(&e).contains("cannot decode return value"),
        "{}",
        kind(&e)
    );
    let e = old.age().await.unwrap_err();
    assert!(kind(&e).contains("invalid type: map"), "{}", kind(&e));
}

/// A baseline of schema version 1, which recorded no serde attributes and
/// described a `Duration` as a tuple, still compares with a schema of
/// today: what it lacks is left out, with a warning, not reported as a
/// breaking change (a review: every type with `rename_all` was).
#[test]
fn a_version_1_baseline_compares_without_false_changes() {
    use remote_core::schema::Ty;
    use remote_policy::testing::*;
    let u = |bits| Ty::Int {
        bits,
        signed: false,
    };
    let msg = || strukt("app::Msg", vec![field("body", string())]);
    let mut new_msg = msg();
    new_msg.serde = vec!["rename_all = \"camelCase\"".to_owned()];
    let duration = strukt(
        "std::time::Duration",
        vec![field("secs", u(64)), field("nanos", u(32))],
    );
    let new = schema_with(
        vec![iface(
            "app::Api",
            vec![
                method("get", vec![], named("app::Msg")),
                method("age", vec![], named("std::time::Duration")),
            ],
        )],
        vec![new_msg, duration],
    );
    let mut old = schema_with(
        vec![iface(
            "app::Api",
            vec![
                method("get", vec![], named("app::Msg")),
                method("age", vec![], Ty::Tuple(vec![u(64), u(32)])),
            ],
        )],
        vec![msg()],
    );
    old.version = 1;
    let policy = Policy::from_toml("roots = [\"app::Api\"]").unwrap();
    let d = diff(&old, &new, &policy).unwrap();
    assert!(!d.failed(), "{:#?}", d.changes);
    assert!(
        d.warnings.iter().any(|w| w.contains("version 1")),
        "{:?}",
        d.warnings
    );
    // Between two schemas of today, the same attribute is a change.
    let mut today = old.clone();
    today.version = remote_core::schema::SCHEMA_VERSION;
    let d = diff(&today, &new, &policy).unwrap();
    assert!(d
        .changes
        .iter()
        .any(|c| c.kind == ChangeKind::ShapeChanged && c.at == "app::Msg"));
}
