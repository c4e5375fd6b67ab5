//! Two declarations described under one key: `std::any::type_name` gives
//! items in two blocks of one function (or two versions of one crate) the
//! same path, and `module_path!()` gives a trait declared in a function
//! the key of its module's trait of that name. The schema kept the first
//! and dropped the other without a word, so a secret declared second was
//! never seen (found by a review: a decoy placed first hid a leak). Now
//! the schema records the conflict and the checker refuses it. Its own
//! binary: the decoys are in every schema this program collects.
#![allow(dead_code, missing_docs, unreachable_pub)]

use remote_core::{remote, Error, Wire};
use remote_policy::{Error as PolicyError, Policy};

#[derive(Debug, Clone, Wire)]
#[wire(secret)]
pub struct ApiKey(pub u64);

pub mod types {
    use super::*;

    pub fn declarations() {
        {
            #[derive(Debug, Clone, Wire)]
            pub struct Token(pub u64);
            #[remote]
            pub trait Public {
                async fn a(&self) -> Result<Token, Error>;
            }
        }
        {
            #[derive(Debug, Clone, Wire)]
            #[wire(secret)]
            pub struct Token(pub u64);
            #[remote]
            pub trait Leaky {
                async fn b(&self) -> Result<Token, Error>;
            }
        }
    }
}

pub mod traits {
    use super::*;

    pub fn declarations() {
        // The decoy: the same key as the module's `Api`.
        #[remote]
        pub trait Api {
            async fn k(&self) -> Result<u8, Error>;
        }
    }

    #[remote]
    pub trait Api {
        async fn k(&self) -> Result<crate::ApiKey, Error>;
    }
}

/// Two types under one key that one declaration makes: `Gen<Token>` of
/// two `Token`s, the decoy's described first (a second review: told apart
/// by declaration only, the secret `Token` was never described at all).
pub mod generic {
    use super::*;

    #[derive(Debug, Clone, Wire)]
    pub struct Gen<T: Wire> {
        pub v: T,
    }

    #[remote]
    pub trait Store<T: Wire> {
        async fn get(&self) -> Result<T, Error>;
    }

    pub fn declarations() {
        #[derive(Debug, Clone, Wire)]
        pub struct Token(pub u64);
        type Decoy = Token;
        {
            #[derive(Debug, Clone, Wire)]
            #[wire(secret)]
            pub struct Token(pub u64);
            #[remote]
            pub trait Leaky {
                async fn a(&self) -> Result<Gen<Decoy>, Error>;
                async fn b(&self) -> Result<Gen<Token>, Error>;
                async fn c(&self) -> Result<remote_core::Remote<dyn Store<Decoy>>, Error>;
                async fn d(&self) -> Result<remote_core::Remote<dyn Store<Token>>, Error>;
            }
        }
    }
}

/// Two types one macro expansion declares: one location for both.
pub mod by_macro {
    use super::*;

    macro_rules! two_tokens {
        () => {
            pub fn declarations() {
                {
                    #[derive(Debug, Clone, Wire)]
                    pub struct Token(pub u64);
                    #[remote]
                    pub trait Public {
                        async fn a(&self) -> Result<Token, Error>;
                    }
                }
                {
                    #[derive(Debug, Clone, Wire)]
                    #[wire(secret)]
                    pub struct Token(pub u64);
                    #[remote]
                    pub trait Leaky {
                        async fn b(&self) -> Result<Token, Error>;
                    }
                }
            }
        };
    }

    two_tokens!();
}

/// A hand-written `Wire` under the key of a derived one.
pub mod by_hand {
    use super::*;
    use remote_core::schema::{SchemaBuilder, Ty, TypeDef, TypeKind};

    pub fn declarations() {
        {
            #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
            pub struct Token(pub u64);
            impl Wire for Token {
                fn describe(b: &mut SchemaBuilder) -> Ty {
                    let path = std::any::type_name::<Self>().to_owned();
                    b.define_type(path.clone(), |_| TypeDef {
                        path,
                        name: "Token".into(),
                        kind: TypeKind::Struct { fields: vec![] },
                        secret: false,
                        location: Default::default(),
                        serde: Vec::new(),
                    })
                }
            }
            #[remote]
            pub trait Public {
                async fn a(&self) -> Result<Token, Error>;
            }
        }
        {
            #[derive(Debug, Clone, Wire)]
            #[wire(secret)]
            pub struct Token(pub u64);
            #[remote]
            pub trait Leaky {
                async fn b(&self) -> Result<Token, Error>;
            }
        }
    }
}

#[test]
fn two_declarations_under_one_key_are_recorded() {
    let schema = remote_core::schema::collect();
    let keys: Vec<&str> = schema.conflicts.iter().map(|c| c.key.as_str()).collect();
    for key in [
        "conflicts::types::declarations::Token",
        "conflicts::traits::Api",
        "conflicts::generic::Gen<conflicts::generic::declarations::Token>",
        "conflicts::generic::Store<conflicts::generic::declarations::Token>",
        "conflicts::by_macro::declarations::Token",
        "conflicts::by_hand::declarations::Token",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    for c in &schema.conflicts {
        assert!(
            c.first.file.ends_with("conflicts.rs") || c.other.file.ends_with("conflicts.rs"),
            "{c:?}"
        );
    }
}

#[test]
fn the_checker_refuses_a_schema_with_a_conflict() {
    let schema = remote_core::schema::collect();
    for root in ["conflicts::types::Leaky", "conflicts::traits::Api"] {
        let policy = Policy::from_toml(&format!("roots = [{root:?}]")).unwrap();
        match remote_policy::check(&schema, &policy) {
            Err(PolicyError::SchemaInvalid(why)) => {
                assert!(why.contains("share the key"), "{why}");
                assert!(why.contains("more"), "{why}");
            }
            Err(other) => panic!("{other}"),
            Ok(report) => panic!("checked: {:?}", report.findings),
        }
    }
}

#[test]
fn the_command_line_exits_2_on_it() {
    let schema = remote_core::schema::collect();
    let code = remote_policy::run_cli_with(["remote-policy", "check"], Some(schema));
    assert_eq!(code, std::process::ExitCode::from(2));
}

#[test]
fn one_declaration_described_many_times_is_no_conflict() {
    // `ApiKey` is described from every method returning it.
    let schema = remote_core::schema::collect();
    assert!(schema.types.contains_key("conflicts::ApiKey"));
    assert!(schema
        .conflicts
        .iter()
        .all(|c| c.key != "conflicts::ApiKey"));
}
