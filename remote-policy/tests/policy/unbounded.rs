//! Unbounded input before authentication, and the ways to declare bounds.

use remote_core::schema::Ty;
use remote_policy::testing::*;

use crate::fixtures::*;

const RULE: &str = "unbounded-input";

fn bounded_seq(elem: Ty, max: u64) -> Ty {
    Ty::Seq {
        elem: Box::new(elem),
        max_len: Some(max),
    }
}

fn input_schema() -> remote_core::schema::Schema {
    let msg = located(
        strukt(
            "app::Msg",
            vec![
                field("body", string()),
                field("tags", bounded_seq(bounded_string(16), 8)),
            ],
        ),
        300,
    );
    let tree = located(
        enumeration(
            "app::Tree",
            vec![
                ("Leaf", vec![field("0", u64_ty())]),
                ("Node", vec![field("0", bounded_seq(named("app::Tree"), 4))]),
            ],
        ),
        310,
    );
    let map = Ty::Map {
        key: Box::new(bounded_string(8)),
        value: Box::new(u64_ty()),
        max_len: None,
    };
    schema(
        vec![
            iface(
                "app::Api",
                vec![
                    method("post", vec![("text", string())], Ty::Unit),
                    method("send", vec![("msg", named("app::Msg"))], Ty::Unit),
                    method("plant", vec![("tree", named("app::Tree"))], Ty::Unit),
                    method("tally", vec![("counts", map)], Ty::Unit),
                    method(
                        "fine",
                        vec![("name", bounded_string(32)), ("n", u64_ty())],
                        Ty::Unit,
                    ),
                    method("subscribe", vec![("l", cap("app::Listener"))], Ty::Unit),
                    auth(method(
                        "login",
                        vec![("token", u64_ty())],
                        cap("app::Session"),
                    )),
                ],
            ),
            iface(
                "app::Listener",
                vec![method("ask", vec![], Ty::Bytes { max_len: None })],
            ),
            iface(
                "app::Session",
                vec![method("upload", vec![("data", seq(u64_ty()))], Ty::Unit)],
            ),
        ],
        vec![msg, tree],
    )
}

/// A peer's remote error (a callback's `Err`) is not reported: the runtime
/// bounds the remote-error text it accepts (`remote_core::Limits`).
#[test]
fn pre_auth_input_without_bounds() {
    let report = run(&input_schema(), "");
    assert_eq!(
        rows(&report),
        [
            row(
                RULE,
                "app::Api.post(text)",
                "root Api → Api.post() → arg text",
                "fixtures.rs:2"
            ),
            row(
                RULE,
                "app::Api.tally(counts)",
                "root Api → Api.tally() → arg counts",
                "fixtures.rs:2"
            ),
            row(
                RULE,
                "app::Listener.ask->returns",
                "root Api → Api.subscribe() → arg l → callback Remote<dyn Listener> → \
                 Listener.ask() [we call the peer] → returns",
                "fixtures.rs:2"
            ),
            row(
                RULE,
                "app::Msg.body",
                "root Api → Api.send() → arg msg → Msg → .body",
                "app.rs:300"
            ),
            row(
                RULE,
                "app::Tree",
                "root Api → Api.plant() → arg tree → Tree → ::Node → .0 → [_] → Tree",
                "app.rs:310"
            ),
        ]
    );
    let msgs: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        msgs[0],
        "string without a length bound, in argument `text` of `Api.post`, before authentication"
    );
    assert_eq!(
        msgs[1],
        "map without a size bound, in argument `counts` of `Api.tally`, before authentication"
    );
    assert_eq!(
        msgs[2],
        "byte buffer without a length bound, returned by the peer's callback `Listener.ask`, before authentication"
    );
    assert_eq!(
        msgs[3],
        "string without a length bound in field `app::Msg.body`, in argument `msg` of `Api.send`, before authentication"
    );
    assert!(
        msgs[4].starts_with("recursive type `app::Tree` nests without a depth bound"),
        "{}",
        msgs[4]
    );
}

#[test]
fn the_callback_site_key_is_its_return() {
    // The `at` of a callback's return names the callback's method part, so
    // an allow or a bound can target it.
    let report = run(&input_schema(), "");
    let f = &report.findings[2];
    assert_eq!(f.at, "app::Listener.ask->returns");
    assert_eq!(f.site.as_deref(), Some("app::Listener.ask->returns"));
}

#[test]
fn scope_all_also_checks_input_after_authentication() {
    let report = run(&input_schema(), "[unbounded]\nscope = \"all\"");
    let upload: Vec<_> = rows(&report)
        .into_iter()
        .filter(|r| r.1.contains("upload"))
        .collect();
    assert_eq!(
        upload,
        [row(
            RULE,
            "app::Session.upload(data)",
            "root Api → Api.login() → returns → Remote<dyn Session> → Session.upload() → arg data",
            "fixtures.rs:2"
        )]
    );
    assert!(
        !report
            .findings
            .iter()
            .find(|f| f.at == "app::Session.upload(data)")
            .unwrap()
            .pre_auth
    );
    assert_eq!(report.findings.len(), 6);
}

#[test]
fn bounds_declared_in_the_policy_silence_exactly_their_spot() {
    let policy = r#"
[[bound]]
at = "app::Api.post(text)"
max_bytes = 4096
[[bound]]
at = "Msg.body"
max_bytes = 1024
[[bound]]
at = "app::Tree"
max_bytes = 65536
[[bound]]
at = "app::Listener.ask->returns"
max_bytes = 100
"#;
    let report = run(&input_schema(), policy);
    assert_eq!(
        rows(&report),
        [row(
            RULE,
            "app::Api.tally(counts)",
            "root Api → Api.tally() → arg counts",
            "fixtures.rs:2"
        ),]
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn a_bound_matching_nothing_is_a_warning() {
    let report = run(
        &input_schema(),
        "[[bound]]\nat = \"app::Api.psot(text)\"\nmax_bytes = 1",
    );
    assert_eq!(
        report.warnings,
        ["[[bound]] `app::Api.psot(text)` matches no argument, field or type of the schema"]
    );
}

#[test]
fn nested_unbounded_collections_are_each_reported() {
    let s = schema(
        vec![iface(
            "app::Api",
            vec![method("bulk", vec![("lines", seq(string()))], Ty::Unit)],
        )],
        vec![],
    );
    let report = run(&s, "");
    let msgs: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "sequence without a length bound, in argument `lines` of `Api.bulk`, before authentication",
            "string without a length bound at app::Api.bulk(lines) → [_], in argument `lines` of `Api.bulk`, before authentication",
        ]
    );
}

#[test]
fn a_field_is_reported_once_with_its_shortest_chain() {
    // Msg.body is reachable from two methods, one through a capability: the
    // field is the thing to fix, so it is reported once, via the shorter chain.
    let msg = located(strukt("app::Msg", vec![field("body", string())]), 300);
    let s = schema(
        vec![
            iface(
                "app::Api",
                vec![
                    method("open", vec![], cap("app::Room")),
                    method("send", vec![("m", named("app::Msg"))], Ty::Unit),
                ],
            ),
            iface(
                "app::Room",
                vec![method(
                    "send",
                    vec![("m", option(named("app::Msg")))],
                    Ty::Unit,
                )],
            ),
        ],
        vec![msg],
    );
    assert_eq!(
        rows(&run(&s, "")),
        [row(
            RULE,
            "app::Msg.body",
            "root Api → Api.send() → arg m → Msg → .body",
            "app.rs:300"
        )]
    );
}
