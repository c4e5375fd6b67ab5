//! `[[capability]]` rules: never reachable, or only after authentication.

use remote_core::schema::Ty;
use remote_policy::graph::{Exposure, Graph};
use remote_policy::testing::*;

use crate::fixtures::*;

fn admin_schema() -> remote_core::schema::Schema {
    let mut admin = iface("app::Admin", vec![method("shutdown", vec![], Ty::Unit)]);
    admin.location = at("admin.rs", 5);
    schema(
        vec![
            iface(
                "app::Api",
                vec![
                    auth(method(
                        "login",
                        vec![("token", u64_ty())],
                        cap("app::Session"),
                    )),
                    method("debug", vec![], option(cap("app::Admin"))),
                    method("register", vec![("admin", cap("app::Admin"))], Ty::Unit),
                ],
            ),
            iface(
                "app::Session",
                vec![method("admin", vec![], cap("app::Admin"))],
            ),
            admin,
            iface(
                "app::Other",
                vec![method("admin", vec![], cap("app::Admin"))],
            ),
        ],
        vec![],
    )
}

/// A bound on the peer's `Admin` error site (passed to `register`): a
/// remote error is bounded anyway, so it only has to match something.
const CALLBACK_ERROR: &str =
    "[[bound]]\nat = \"app::Admin.shutdown->error\"\nmax_bytes = 4096\nreason = \"test\"";

#[test]
fn auth_rule_flags_only_the_path_that_skips_authentication() {
    let report = run(
        &admin_schema(),
        &format!(
            "[[capability]]\ninterface = \"app::Admin\"\nreachable = \"auth\"\n{CALLBACK_ERROR}"
        ),
    );
    assert_eq!(
        rows(&report),
        [row(
            "unauthenticated-capability",
            "app::Admin",
            "root Api → Api.debug() → returns → Some → Remote<dyn Admin>",
            "admin.rs:5"
        )]
    );
    assert!(report.findings[0].pre_auth);
}

#[test]
fn auth_rule_passes_once_the_shortcut_requires_auth() {
    let mut s = admin_schema();
    let api = s.interfaces.get_mut("app::Api").unwrap();
    api.methods[1].requires_auth = true;
    let report = run(
        &s,
        &format!(
            "[[capability]]\ninterface = \"app::Admin\"\nreachable = \"auth\"\n{CALLBACK_ERROR}"
        ),
    );
    assert_eq!(rows(&report), Vec::<Row>::new());
}

#[test]
fn never_rule_reports_the_shortest_chain_even_after_auth() {
    let report = run(
        &admin_schema(),
        &format!("[[capability]]\ninterface = \"*::Admin\"\nreachable = \"never\"\nreason = \"operators use the unix socket\"\n{CALLBACK_ERROR}"),
    );
    assert_eq!(
        rows(&report),
        [row(
            "forbidden-capability",
            "app::Admin",
            "root Api → Api.debug() → returns → Some → Remote<dyn Admin>",
            "admin.rs:5"
        )]
    );
    assert!(report.findings[0]
        .message
        .contains("(policy: operators use the unix socket)"));
}

#[test]
fn a_capability_the_peer_passes_in_is_not_reachable_by_it() {
    // `register(admin)` receives the peer's own Admin: we call it, the peer
    // cannot reach ours. Only the graph's served nodes count.
    let mut s = admin_schema();
    let api = s.interfaces.get_mut("app::Api").unwrap();
    api.methods.retain(|m| m.name == "register");
    let report = run(
        &s,
        &format!(
            "[[capability]]\ninterface = \"app::Admin\"\nreachable = \"never\"\n{CALLBACK_ERROR}"
        ),
    );
    assert_eq!(rows(&report), Vec::<Row>::new());
    let graph = Graph::build(&s, &["app::Api".to_owned()]).unwrap();
    let admin = &graph.roots[0].nodes[1];
    assert_eq!(
        (admin.interface.as_str(), admin.exposure),
        ("app::Admin", Exposure::Held)
    );
}

#[test]
fn rule_roots_limit_where_it_applies() {
    let policy = format!("[[capability]]\ninterface = \"app::Admin\"\nreachable = \"never\"\nroots = [\"app::Other\"]\n{CALLBACK_ERROR}");
    let report = run(&admin_schema(), &policy);
    assert_eq!(rows(&report), Vec::<Row>::new());
    let all = remote_policy::Policy::from_toml(&format!(
        "roots = [\"app::Api\", \"app::Other\"]\n{policy}"
    ))
    .unwrap();
    let report = remote_policy::check(&admin_schema(), &all).unwrap();
    assert_eq!(
        rows(&report),
        [row(
            "forbidden-capability",
            "app::Admin",
            "root Other → Other.admin() → returns → Remote<dyn Admin>",
            "admin.rs:5"
        )]
    );
}

#[test]
fn graph_marks_what_lies_behind_an_auth_gate() {
    let s = admin_schema();
    let graph = Graph::build(&s, &["app::Api".to_owned()]).unwrap();
    let nodes: Vec<(&str, Exposure, bool)> = graph.roots[0]
        .nodes
        .iter()
        .map(|n| (n.interface.as_str(), n.exposure, n.pre_auth))
        .collect();
    assert_eq!(
        nodes,
        [
            ("app::Api", Exposure::Served, true),
            ("app::Admin", Exposure::Served, true),
            ("app::Admin", Exposure::Held, true),
            ("app::Session", Exposure::Served, false),
        ]
    );
}

#[test]
fn roots_default_to_served_impls_and_unknown_roots_fail() {
    let mut s = admin_schema();
    s.impls.push(remote_core::schema::ImplDef {
        type_name: "app::Server".into(),
        interface: "app::Other".into(),
        location: at("server.rs", 1),
    });
    let policy = remote_policy::Policy::default();
    assert_eq!(
        remote_policy::roots(&s, &policy, &mut Vec::new()).unwrap(),
        ["app::Other"]
    );
    let bad = remote_policy::Policy::from_toml("roots = [\"app::Nope\"]").unwrap();
    let err = remote_policy::check(&s, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "root `app::Nope` matches no interface of the schema (if it is a generic interface, \
         `#[remote]` cannot register it alone: name a concrete instance with \
         `remote_core::register_interface!(dyn Nope<YourType>);` in the crate, or \
         `remote_policy::collect_with` in the policy binary)"
    );
    let generic = remote_policy::Policy::from_toml("roots = [\"*RemoteList<*Message>\"]").unwrap();
    let err = remote_policy::check(&s, &generic).unwrap_err().to_string();
    assert!(
        err.contains("register_interface!(dyn RemoteList<*Message>);"),
        "{err}"
    );
}

#[test]
fn a_capability_missing_from_the_schema_is_unchecked() {
    let s = schema(
        vec![iface(
            "app::Api",
            vec![method("ghost", vec![], cap("app::Ghost"))],
        )],
        vec![],
    );
    assert_eq!(
        rows(&run(&s, "")),
        [row(
            "unchecked-type",
            "app::Ghost",
            "root Api → Api.ghost() → returns → Remote<dyn Ghost>",
            ""
        )]
    );
}
