//! Secrets that reached a peer while the check passed (a review of the
//! lint, pass 46): each fixture is real `#[remote]` / `#[derive(Wire)]`
//! code collected from `inventory`, and each test failed on the lint as it
//! was. (A `Result` alias that wraps the value, the review's first finding,
//! no longer compiles: `tests/ui/result_alias_wrapping.rs`.)

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
    let vault = "roots = [\"leaks::nested::Keys\"]\n\
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
    let both = format!("{key_via_issue}").replace("via = \"*::Keys.issue\"", "via = \"*::Keys.*\"");
    let report = check(&schema, &Policy::from_toml(&both).unwrap()).unwrap();
    assert!(!report.failed(), "{:#?}", rows(&report));
}
