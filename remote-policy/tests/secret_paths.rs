//! Secrets that reached a peer while the check passed (a review of the
//! lint, pass 46): each fixture is real `#[remote]` / `#[derive(Wire)]`
//! code collected from `inventory`, and each test failed on the lint as it
//! was. (A `Result` alias that wraps the value, the review's first finding,
//! no longer compiles: `tests/ui/result_alias_wrapping.rs`.)

#![allow(unreachable_pub)] // types declared in function blocks (`twin`)

use remote_policy::{check, Policy, Report, Rule};

/// A `secret-flows-out` finding about `ty` that no `[[allow]]` covers.
fn secret_flows(report: &Report, ty: &str) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.rule == Rule::SecretFlowsOut && f.at.ends_with(ty) && f.allowed.is_none())
}

fn rows(report: &Report) -> Vec<String> {
    report
        .findings
        .iter()
        .map(|f| format!("{} {} {:?} | {}", f.rule, f.at, f.allowed, f.chain_text()))
        .collect()
}

/// A secret inside another secret.
pub mod nested {
    use remote_core::{remote, Error, Wire};

    #[derive(Debug, Clone, Wire)]
    #[wire(secret)]
    pub struct ApiKey(pub u64);

    #[derive(Debug, Clone, Wire)]
    #[wire(secret)]
    pub struct Vault {
        pub label: String,
        pub key: ApiKey,
    }

    #[remote]
    pub trait Keys {
        /// Hands out a key on purpose.
        async fn issue(&self) -> Result<ApiKey, Error>;
        /// The vault, key and all.
        async fn vault(&self) -> Result<Vault, Error>;
    }
}

/// Allowing a secret `via` one method does not cover it where it crosses
/// inside another secret, through another method: the search for the paths
/// an `[[allow]]` leaves uncovered stopped at the outer secret.
#[test]
fn an_allow_via_one_method_does_not_cover_a_secret_inside_another_secret() {
    let schema = remote_core::schema::collect();
    let vault = "roots = [\"secret_paths::nested::Keys\"]\n\
        [[allow]]\nrule = \"secret-flows-out\"\nat = \"*::Vault\"\n\
        reason = \"the vault may be shown\"\n";
    let report = check(&schema, &Policy::from_toml(vault).unwrap()).unwrap();
    assert!(secret_flows(&report, "::ApiKey"), "{:#?}", rows(&report));
    let key_via_issue = format!(
        "{vault}[[allow]]\nrule = \"secret-flows-out\"\nat = \"*::ApiKey\"\n\
         via = \"*::Keys.issue\"\nreason = \"issue hands out keys on purpose\"\n"
    );
    let report = check(&schema, &Policy::from_toml(&key_via_issue).unwrap()).unwrap();
    assert!(secret_flows(&report, "::ApiKey"), "{:#?}", rows(&report));
    assert!(report.failed());
    // Covered where it crosses both ways, it passes.
    let both = key_via_issue.replace("via = \"*::Keys.issue\"", "via = \"*::Keys.*\"");
    let report = check(&schema, &Policy::from_toml(&both).unwrap()).unwrap();
    assert!(!report.failed(), "{:#?}", rows(&report));
}

/// A field of a secret type that code of its own encodes.
pub mod with_field {
    use remote_core::{remote, Error, Wire};

    #[derive(Debug, Clone, Wire)]
    #[wire(secret)]
    pub struct ApiKey(pub u64);

    /// Holds a secret one level down.
    #[derive(Debug, Clone, Wire)]
    pub struct Keyring {
        pub keys: Vec<ApiKey>,
    }

    /// The usual "hex on the wire" module.
    pub mod hex_key {
        use super::ApiKey;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(k: &ApiKey, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&format!("{:016x}", k.0))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ApiKey, D::Error> {
            let s = String::deserialize(d)?;
            u64::from_str_radix(&s, 16)
                .map(ApiKey)
                .map_err(serde::de::Error::custom)
        }
    }

    pub mod keyring_count {
        use super::Keyring;
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(k: &Keyring, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(k.keys.first().map_or(0, |k| k.0))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(_: D) -> Result<Keyring, D::Error> {
            Ok(Keyring { keys: Vec::new() })
        }
    }

    #[derive(Debug, Clone, Wire)]
    pub struct Account {
        pub name: String,
        #[serde(with = "hex_key")]
        pub key: ApiKey,
    }

    #[derive(Debug, Clone, Wire)]
    pub struct Wallet {
        #[serde(with = "keyring_count")]
        pub ring: Keyring,
    }

    #[remote]
    pub trait Accounts {
        async fn me(&self) -> Result<Account, Error>;
        async fn wallet(&self) -> Result<Wallet, Error>;
    }
}

/// A field encoded by its own code (`#[serde(with)]`) is reported as
/// unchecked, and the README says to accept such a field with an
/// `[[allow]]` once its code is read: a secret its declared type holds
/// still fails the check (it was described by the field's name alone, and
/// passed).
#[test]
fn a_secret_in_a_field_encoded_by_its_own_code_still_fails_the_check() {
    let schema = remote_core::schema::collect();
    let allowed = "roots = [\"secret_paths::with_field::Accounts\"]\n\
        [[allow]]\nrule = \"unchecked-type\"\nat = \"*(#[serde(with)])\"\n\
        reason = \"the field's code is read\"\n";
    let report = check(&schema, &Policy::from_toml(allowed).unwrap()).unwrap();
    assert!(report.failed(), "{:#?}", rows(&report));
    let at: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.rule == Rule::SecretFlowsOut && f.allowed.is_none())
        .map(|f| f.at.as_str())
        .collect();
    assert_eq!(
        at,
        ["secret_paths::with_field::ApiKey"],
        "{:#?}",
        rows(&report)
    );
    // It crosses through both methods, the second through a field two
    // levels down.
    let key = report
        .findings
        .iter()
        .find(|f| f.at.ends_with("::ApiKey"))
        .unwrap();
    let places: Vec<String> = std::iter::once(key.chain_text())
        .chain(key.also_at.iter().cloned())
        .collect();
    assert!(places.iter().any(|p| p.contains("wallet")), "{places:#?}");
    assert!(places.iter().any(|p| p.contains("me")), "{places:#?}");
}

/// Two types under one key (two blocks of one function: `type_name` gives
/// them one path; two versions of one crate do in real life), one
/// registered by `#[remote]`, the other described by `collect_with`'s
/// closure.
pub mod twin {
    use remote_core::collections::RemoteList;
    use remote_core::schema::SchemaBuilder;
    use remote_core::{remote, Error, Remote, Wire};

    pub fn blocks(b: &mut SchemaBuilder) {
        {
            #[derive(Debug, Clone, Wire)]
            pub struct Token {
                pub id: u64,
            }
            #[remote]
            pub trait Public {
                async fn token(&self) -> Result<Token, Error>;
            }
        }
        {
            #[derive(Debug, Clone, Wire)]
            #[wire(secret)]
            pub struct Token {
                pub key: u64,
            }
            b.ty::<Remote<dyn RemoteList<Token>>>();
        }
    }
}

/// `collect_with` describes into the builder the program's registrations
/// went into, so the second `Token` is a conflict and the check refuses to
/// run (merged from two schemas, the first definition won: the secret one
/// passed as plain).
#[test]
fn collect_with_keeps_a_conflict_with_the_registered_types() {
    let merged = remote_policy::collect_with(twin::blocks);
    assert!(
        merged.conflicts.iter().any(|c| c.key.ends_with("Token")),
        "{:?}",
        merged.conflicts
    );
    let policy = Policy::from_toml("roots = [\"*RemoteList<*Token>\"]").unwrap();
    assert!(check(&merged, &policy).is_err());
}
