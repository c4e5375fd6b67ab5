//! Schemas that leak in each way, and clean ones that look similar.

use remote_core::schema::{Schema, Ty, TypeDef};
use remote_policy::testing::*;
use remote_policy::{check, Policy, Report};

/// (rule, at, chain, declaration "file:line") of every finding, allowed
/// ones marked. The declaration is the offending field's or type's (the
/// interface's, for capability rules); a finding without one (an argument)
/// gives the method's. The `-->` location, where the value crosses, is
/// checked in `reports.rs`.
pub(crate) type Row = (String, String, String, String);

pub(crate) fn rows(report: &Report) -> Vec<Row> {
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
            let rule = match &f.allowed {
                Some(_) => format!("allowed {}", f.rule),
                None => f.rule.to_string(),
            };
            (rule, f.at.clone(), f.chain_text(), loc)
        })
        .collect()
}

pub(crate) fn row(rule: &str, at: &str, chain: &str, loc: &str) -> Row {
    (
        rule.to_owned(),
        at.to_owned(),
        chain.to_owned(),
        loc.to_owned(),
    )
}

/// Checks with `roots = ["app::Api"]` plus `extra` policy text.
pub(crate) fn run(schema: &Schema, extra: &str) -> Report {
    let policy = Policy::from_toml(&format!("roots = [\"app::Api\"]\n{extra}")).unwrap();
    check(schema, &policy).unwrap()
}

pub(crate) fn located(mut t: TypeDef, line: u32) -> TypeDef {
    t.location = at("app.rs", line);
    t
}

/// `app::Secret` (marked secret, app.rs:100) and `app::Public` (app.rs:110).
pub(crate) fn base_types() -> Vec<TypeDef> {
    vec![
        located(
            secret(strukt("app::Secret", vec![field("key", u64_ty())])),
            100,
        ),
        located(strukt("app::Public", vec![field("id", u64_ty())]), 110),
    ]
}

/// A schema of `interfaces` plus [`base_types`] and `types`.
pub(crate) fn schema(
    interfaces: Vec<remote_core::schema::InterfaceDef>,
    types: Vec<TypeDef>,
) -> Schema {
    let mut all = base_types();
    all.extend(types);
    schema_with(interfaces, all)
}

pub(crate) fn secret_ty() -> Ty {
    named("app::Secret")
}

pub(crate) fn public_ty() -> Ty {
    named("app::Public")
}
