//! What `#[derive(Wire)]` and `#[remote]` register where serde or the macro
//! could hide data from the checker: fields encoded by other code
//! (`#[serde(with)]` and kin), secret enum variants, and inherent
//! `#[remote] impl` blocks as default roots. A binary of its own, so its
//! `inventory` entries do not change `derived.rs`'s schema.

use remote_core::{remote, Error, Wire};
use remote_policy::{check, Policy, Report, Rule};

/// Marked secret on the type.
#[derive(Debug, Clone, Wire)]
#[wire(secret)]
pub struct ApiKey(pub u64);

/// Encodes a `u64` as a secret key: other data than the field's type.
fn ser_key<S: serde::Serializer>(_v: &u64, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&ApiKey(7), s)
}

/// Decodes anything a peer sends, of any size.
fn de_any<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let _: String = serde::Deserialize::deserialize(d)?;
    Ok(0)
}

mod as_key {
    pub(super) fn serialize<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(v, s)
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        serde::Deserialize::deserialize(d)
    }
}

#[derive(Debug, Clone, Wire)]
pub struct With {
    pub plain: u8,
    #[serde(serialize_with = "ser_key")]
    pub id: u64,
    #[serde(with = "as_key")]
    pub n: u32,
}

#[derive(Debug, Clone, Wire)]
pub struct Input {
    #[serde(deserialize_with = "de_any")]
    pub tag: u8,
}

#[derive(Debug, Clone, Wire)]
pub enum Choice {
    Key(#[serde(serialize_with = "ser_key")] u64),
}

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
pub trait Encoded {
    async fn with(&self) -> Result<With, Error>;
    async fn put(&self, input: Input) -> Result<(), Error>;
    async fn choice(&self) -> Result<Choice, Error>;
    async fn via_macro(&self) -> Result<ViaMacro, Error>;
}

/// The attribute through a `macro_rules!` fragment, which arrives in an
/// invisible group that serde reads through (a review: it was described
/// as a plain `u64`).
macro_rules! field_with {
    ($m:meta) => {
        #[derive(Debug, Clone, Wire)]
        pub struct ViaMacro {
            #[serde($m)]
            pub id: u64,
        }
    };
}

field_with!(serialize_with = "ser_key");

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
fn a_field_encoded_by_serde_with_is_an_unchecked_type() {
    let report = report("derived_serde::Encoded");
    let unchecked: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.rule == Rule::UncheckedType)
        .map(|f| f.at.as_str())
        .collect();
    assert_eq!(
        unchecked,
        [
            "derived_serde::Choice.Key.0 (#[serde(serialize_with)])",
            "derived_serde::Input.tag (#[serde(deserialize_with)])",
            "derived_serde::ViaMacro.id (#[serde(serialize_with)])",
            "derived_serde::With.id (#[serde(serialize_with)])",
            "derived_serde::With.n (#[serde(with)])",
        ],
        "{:#?}",
        rows(&report)
    );
    assert!(report.failed());
    let with = report
        .findings
        .iter()
        .find(|f| f.at == "derived_serde::With.n (#[serde(with)])")
        .unwrap();
    assert!(
        with.message.starts_with(
            "field `derived_serde::With.n` is encoded by its own code (`#[serde(with)]`)"
        ),
        "{}",
        with.message
    );
    // Flowing in, an opaque field is also of unknown size.
    assert!(report
        .findings
        .iter()
        .any(|f| f.rule == Rule::UnboundedInput && f.at == "derived_serde::Input.tag"));
    // The plain field is still described by its type.
    let schema = remote_core::schema::collect();
    let remote_core::schema::TypeKind::Struct { fields } =
        &schema.types["derived_serde::With"].kind
    else {
        panic!()
    };
    assert!(matches!(
        fields[0].ty,
        remote_core::schema::Ty::Int { bits: 8, .. }
    ));
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
