//! What `#[derive(Wire)]` and `#[remote]` register where the macros could
//! hide data from the checker: secret enum variants, and inherent
//! `#[remote] impl` blocks as default roots. A binary of its own, so its
//! `inventory` entries do not change `derived.rs`'s schema.

use remote_core::{remote, Error, Wire};
use remote_policy::{check, Policy, Report};

/// Marked secret on the type.
#[derive(Debug, Clone, Wire)]
#[wire(secret)]
pub struct ApiKey(pub u64);

#[derive(Debug, Clone, Wire)]
pub enum Event {
    Public(u8),
    #[wire(secret)]
    Rekeyed {
        old: u64,
        key: u64,
    },
    #[wire(secret)]
    Raw(u64),
}

#[remote]
pub trait Events {
    async fn next(&self) -> Result<Event, Error>;
}

/// A trait implementation, so the default roots are the `#[remote] impl`s.
#[remote]
pub trait Plain {
    async fn ping(&self) -> Result<u8, Error>;
}

#[derive(Debug)]
pub struct PlainServer;

#[remote]
impl Plain for PlainServer {
    async fn ping(&self) -> Result<u8, Error> {
        Ok(0)
    }
}

/// An inherent `#[remote] impl`: its interface `ObjRemote` is served too.
#[derive(Debug)]
pub struct Obj;

#[remote]
impl Obj {
    pub async fn key(&self) -> Result<ApiKey, Error> {
        Ok(ApiKey(3))
    }
}

fn rows(report: &Report) -> Vec<(String, String, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.rule.to_string(), f.at.clone(), f.chain_text()))
        .collect()
}

fn report(root: &str) -> Report {
    let policy = Policy::from_toml(&format!("roots = [{root:?}]")).unwrap();
    check(&remote_core::schema::collect(), &policy).unwrap()
}

#[test]
fn a_secret_variant_marks_its_fields_and_is_reported_flowing_out() {
    let report = report("derived_serde::Events");
    let ats: Vec<(String, String)> = rows(&report)
        .into_iter()
        .map(|(rule, at, _)| (rule, at))
        .collect();
    let secret = |at: &str| {
        (
            "secret-flows-out".to_owned(),
            format!("derived_serde::{at}"),
        )
    };
    assert_eq!(
        ats,
        [
            secret("Event.Raw.0"),
            secret("Event.Rekeyed.key"),
            secret("Event.Rekeyed.old"),
        ],
        "{:#?}",
        rows(&report)
    );
}

#[test]
fn an_inherent_remote_impl_is_a_default_root() {
    let schema = remote_core::schema::collect();
    let mut impls: Vec<&str> = schema.impls.iter().map(|i| i.interface.as_str()).collect();
    impls.sort_unstable();
    assert_eq!(impls, ["derived_serde::ObjRemote", "derived_serde::Plain"]);
    let obj = schema
        .impls
        .iter()
        .find(|i| i.interface.ends_with("ObjRemote"))
        .unwrap();
    assert_eq!(obj.type_name, "derived_serde::Obj");
    // No roots in the policy: the secret the inherent impl returns is found.
    let report = check(&schema, &Policy::default()).unwrap();
    assert_eq!(
        rows(&report),
        [(
            "secret-flows-out".to_owned(),
            "derived_serde::ApiKey".to_owned(),
            "root ObjRemote → ObjRemote.key() → returns → ApiKey".to_owned()
        )]
    );
}
