//! `remote-policy diff`: one fixture pair per change kind, with the exact
//! changes and verdicts it must produce.

use remote_core::schema::{MethodDef, Schema, Ty, TypeDef};
use remote_policy::diff::{diff, ChangeKind, ChangeKind as K, Verdict, Verdict as V};
use remote_policy::testing::*;
use remote_policy::Policy;

/// `app::Api` with `methods`, and `types`.
fn api(methods: Vec<MethodDef>, types: Vec<TypeDef>) -> Schema {
    schema_with(vec![iface("app::Api", methods)], types)
}

fn changes(old: &Schema, new: &Schema) -> Vec<(ChangeKind, String, Verdict)> {
    diff(old, new, &Policy::default())
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.kind, c.at, c.verdict))
        .collect()
}

fn one(kind: ChangeKind, at: &str, verdict: Verdict) -> Vec<(ChangeKind, String, Verdict)> {
    vec![(kind, at.to_owned(), verdict)]
}

fn u32_ty() -> Ty {
    Ty::Int {
        bits: 32,
        signed: false,
    }
}

fn get(arg: Ty, returns: Ty) -> MethodDef {
    method("get", vec![("id", arg)], returns)
}

#[test]
fn identical_schemas_have_no_changes() {
    let s = api(
        vec![get(u32_ty(), named("app::Msg"))],
        vec![strukt("app::Msg", vec![field("a", string())])],
    );
    assert_eq!(changes(&s, &s), vec![]);
}

#[test]
fn method_removed_breaks_old_clients() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(vec![], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::MethodRemoved, "app::Api.get", V::BreaksOldClients)
    );
}

#[test]
fn method_added_is_safe() {
    let old = api(vec![], vec![]);
    let new = api(vec![get(u32_ty(), u32_ty())], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::MethodAdded, "app::Api.get", V::Safe)
    );
}

#[test]
fn method_renamed_on_the_wire_breaks_both() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let mut m = get(u32_ty(), u32_ty());
    m.wire_name = "fetch".into();
    let new = api(vec![m], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::MethodRenamed, "app::Api.get", V::BreaksBoth)
    );
    // A new Rust name with the same signature is taken as a rename too.
    let new = api(
        vec![method("fetch", vec![("id", u32_ty())], u32_ty())],
        vec![],
    );
    assert_eq!(
        changes(&old, &new),
        one(K::MethodRenamed, "app::Api.get", V::BreaksBoth)
    );
}

#[test]
fn rust_rename_keeping_the_wire_name_is_safe() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let mut m = method("fetch", vec![("id", u32_ty())], u32_ty());
    m.wire_name = "get".into();
    let new = api(vec![m], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::RustNameChanged, "app::Api.fetch", V::Safe)
    );
}

#[test]
fn argument_added_or_removed_breaks_both_even_as_option() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(
        vec![method(
            "get",
            vec![("id", u32_ty()), ("exact", option(Ty::Bool))],
            u32_ty(),
        )],
        vec![],
    );
    assert_eq!(
        changes(&old, &new),
        one(K::ArgumentAdded, "app::Api.get(exact)", V::BreaksBoth)
    );
    assert_eq!(
        changes(&new, &old),
        one(K::ArgumentRemoved, "app::Api.get(exact)", V::BreaksBoth)
    );
}

#[test]
fn arguments_reordered_break_both() {
    let m = |a: &str, b: &str| method("move", vec![(a, u32_ty()), (b, u32_ty())], Ty::Unit);
    let old = api(vec![m("from", "to")], vec![]);
    let new = api(vec![m("to", "from")], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::ArgumentsReordered, "app::Api.move", V::BreaksBoth)
    );
}

#[test]
fn argument_renamed_is_safe() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(
        vec![method("get", vec![("key", u32_ty())], u32_ty())],
        vec![],
    );
    assert_eq!(
        changes(&old, &new),
        one(K::ArgumentRenamed, "app::Api.get(key)", V::Safe)
    );
}

#[test]
fn argument_retyped_by_what_each_side_decodes() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    // Widened: old clients still fit; a new client's big id is refused by an old server.
    let new = api(vec![get(u64_ty(), u32_ty())], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksOldServers)
    );
    // Narrowed: the reverse.
    assert_eq!(
        changes(&new, &old),
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksOldClients)
    );
    // T → Option<T>: the new server reads a plain value as Some.
    let new = api(vec![get(option(u32_ty()), u32_ty())], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksOldServers)
    );
    // Another kind of value altogether.
    let new = api(vec![get(string(), u32_ty())], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksBoth)
    );
}

#[test]
fn return_changed_by_what_each_side_decodes() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    // Widened return: an old client refuses a large value from the new server.
    let new = api(vec![get(u32_ty(), u64_ty())], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(
            K::ReturnChanged,
            "app::Api.get->returns",
            V::BreaksOldClients
        )
    );
    // Option<T>: an old client refuses None.
    let new = api(vec![get(u32_ty(), option(u32_ty()))], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(
            K::ReturnChanged,
            "app::Api.get->returns",
            V::BreaksOldClients
        )
    );
    assert_eq!(
        changes(&new, &old),
        one(
            K::ReturnChanged,
            "app::Api.get->returns",
            V::BreaksOldServers
        )
    );
}

#[test]
fn error_changed() {
    let old = api(
        vec![get(u32_ty(), u32_ty())],
        vec![enumeration("app::E", vec![("No", vec![])])],
    );
    let new = api(
        vec![with_error(get(u32_ty(), u32_ty()), named("app::E"))],
        vec![enumeration("app::E", vec![("No", vec![])])],
    );
    assert_eq!(
        changes(&old, &new),
        one(K::ErrorChanged, "app::Api.get->error", V::BreaksBoth)
    );
}

#[test]
fn requires_auth_added_breaks_old_clients_removed_is_safe() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(vec![auth(get(u32_ty(), u32_ty()))], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::RequiresAuthAdded, "app::Api.get", V::BreaksOldClients)
    );
    assert_eq!(
        changes(&new, &old),
        one(K::RequiresAuthRemoved, "app::Api.get", V::Safe)
    );
}

#[test]
fn blocking_changed_is_safe() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let mut m = get(u32_ty(), u32_ty());
    m.is_async = false;
    let new = api(vec![m], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::BlockingChanged, "app::Api.get", V::Safe)
    );
}

#[test]
fn bound_changed_counts_at_the_receiver() {
    let old = api(vec![get(bounded_string(64), bounded_string(64))], vec![]);
    let new = api(vec![get(bounded_string(32), bounded_string(64))], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::BoundChanged, "app::Api.get(id)", V::BreaksOldClients)
    );
    let new = api(vec![get(bounded_string(128), bounded_string(64))], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(K::BoundChanged, "app::Api.get(id)", V::BreaksOldServers)
    );
    let new = api(vec![get(bounded_string(64), bounded_string(128))], vec![]);
    assert_eq!(
        changes(&old, &new),
        one(
            K::BoundChanged,
            "app::Api.get->returns",
            V::BreaksOldClients
        )
    );
}

/// `app::Api.put(m: Msg)` (clients send Msg) and `app::Api.read() -> Out` (servers send Out).
fn msgs(
    msg: Vec<remote_core::schema::FieldDef>,
    out: Vec<remote_core::schema::FieldDef>,
) -> Schema {
    api(
        vec![
            method("put", vec![("m", named("app::Msg"))], Ty::Unit),
            method("read", vec![], named("app::Out")),
        ],
        vec![strukt("app::Msg", msg), strukt("app::Out", out)],
    )
}

#[test]
fn optional_field_added_is_safe_both_ways() {
    let old = msgs(vec![field("a", u32_ty())], vec![field("a", u32_ty())]);
    let new = msgs(
        vec![field("a", u32_ty()), field("b", option(string()))],
        vec![field("a", u32_ty()), field("b", option(string()))],
    );
    assert_eq!(
        changes(&old, &new),
        vec![
            (K::FieldAddedOptional, "app::Msg.b".into(), V::Safe),
            (K::FieldAddedOptional, "app::Out.b".into(), V::Safe),
        ]
    );
}

#[test]
fn defaulted_field_added_or_removed_is_safe() {
    let old = msgs(vec![field("a", u32_ty())], vec![field("a", u32_ty())]);
    let new = msgs(
        vec![field("a", u32_ty()), defaulted(field("b", u32_ty()))],
        vec![field("a", u32_ty()), defaulted(field("b", u32_ty()))],
    );
    assert_eq!(
        changes(&old, &new),
        vec![
            (K::FieldAddedOptional, "app::Msg.b".into(), V::Safe),
            (K::FieldAddedOptional, "app::Out.b".into(), V::Safe),
        ]
    );
    assert_eq!(
        changes(&new, &old),
        vec![
            (K::FieldRemoved, "app::Msg.b".into(), V::Safe),
            (K::FieldRemoved, "app::Out.b".into(), V::Safe),
        ]
    );
}

#[test]
fn required_field_added_breaks_whoever_receives_it_new() {
    let old = msgs(vec![field("a", u32_ty())], vec![field("a", u32_ty())]);
    let new = msgs(
        vec![field("a", u32_ty()), field("b", u32_ty())],
        vec![field("a", u32_ty()), field("b", u32_ty())],
    );
    assert_eq!(
        changes(&old, &new),
        vec![
            // The new server needs `b` from old clients.
            (
                K::FieldAddedRequired,
                "app::Msg.b".into(),
                V::BreaksOldClients
            ),
            // A new client needs `b` from old servers.
            (
                K::FieldAddedRequired,
                "app::Out.b".into(),
                V::BreaksOldServers
            ),
        ]
    );
}

#[test]
fn field_removed() {
    let old = msgs(
        vec![
            field("a", u32_ty()),
            field("b", u32_ty()),
            field("c", option(u32_ty())),
        ],
        vec![field("a", u32_ty()), field("b", u32_ty())],
    );
    let new = msgs(vec![field("a", u32_ty())], vec![field("a", u32_ty())]);
    assert_eq!(
        changes(&old, &new),
        vec![
            // Old servers need `b` from new clients.
            (K::FieldRemoved, "app::Msg.b".into(), V::BreaksOldServers),
            (K::FieldRemoved, "app::Msg.c".into(), V::Safe),
            // Old clients need `b` from the new server.
            (K::FieldRemoved, "app::Out.b".into(), V::BreaksOldClients),
        ]
    );
}

#[test]
fn field_retyped_and_reordered() {
    let old = msgs(
        vec![field("a", u32_ty()), field("b", u32_ty())],
        vec![field("a", u32_ty())],
    );
    let new = msgs(
        vec![field("b", u32_ty()), field("a", u64_ty())],
        vec![field("a", u32_ty())],
    );
    assert_eq!(
        changes(&old, &new),
        vec![
            (K::FieldsReordered, "app::Msg".into(), V::Safe),
            (K::FieldRetyped, "app::Msg.a".into(), V::BreaksOldServers),
        ]
    );
}

#[test]
fn secret_mark_changed_is_safe_on_the_wire() {
    let old = msgs(vec![field("a", u32_ty())], vec![field("a", u32_ty())]);
    let new = msgs(
        vec![secret_field("a", u32_ty())],
        vec![field("a", u32_ty())],
    );
    assert_eq!(
        changes(&old, &new),
        one(K::SecretChanged, "app::Msg.a", V::Safe)
    );
}

fn events(
    variants: Vec<(&str, Vec<remote_core::schema::FieldDef>)>,
    sent_by_server: bool,
) -> Schema {
    let m = if sent_by_server {
        method("next", vec![], named("app::Event"))
    } else {
        method("send", vec![("e", named("app::Event"))], Ty::Unit)
    };
    api(vec![m], vec![enumeration("app::Event", variants)])
}

#[test]
fn variant_added_breaks_old_receivers() {
    let old = events(vec![("A", vec![])], true);
    let new = events(vec![("A", vec![]), ("B", vec![])], true);
    assert_eq!(
        changes(&old, &new),
        one(K::VariantAdded, "app::Event.B", V::BreaksOldClients)
    );
    let old = events(vec![("A", vec![])], false);
    let new = events(vec![("A", vec![]), ("B", vec![])], false);
    assert_eq!(
        changes(&old, &new),
        one(K::VariantAdded, "app::Event.B", V::BreaksOldServers)
    );
}

#[test]
fn variant_removed_breaks_new_receivers_of_old_senders() {
    let old = events(vec![("A", vec![]), ("B", vec![])], false);
    let new = events(vec![("A", vec![])], false);
    assert_eq!(
        changes(&old, &new),
        one(K::VariantRemoved, "app::Event.B", V::BreaksOldClients)
    );
}

#[test]
fn shape_changed_breaks_both() {
    let old = events(vec![("A", vec![])], true);
    let new = events(vec![("A", vec![field("0", u32_ty())])], true);
    assert_eq!(
        changes(&old, &new),
        one(K::ShapeChanged, "app::Event.A", V::BreaksBoth)
    );
    let old = msgs(vec![field("0", u32_ty())], vec![field("a", u32_ty())]);
    let new = msgs(
        vec![field("0", u32_ty()), field("1", u32_ty())],
        vec![field("a", u32_ty())],
    );
    assert_eq!(
        changes(&old, &new),
        one(K::ShapeChanged, "app::Msg", V::BreaksBoth)
    );
    let mut new = old.clone();
    new.types.insert(
        "app::Out".into(),
        enumeration("app::Out", vec![("a", vec![])]),
    );
    assert_eq!(
        changes(&old, &new),
        one(K::ShapeChanged, "app::Out", V::BreaksBoth)
    );
}

#[test]
fn interfaces_added_removed_and_moved() {
    let old = schema_with(
        vec![
            iface(
                "app::Api",
                vec![
                    method("room", vec![], cap("app::Room")),
                    method("admin", vec![], cap("app::Admin")),
                ],
            ),
            iface("app::Room", vec![method("say", vec![], Ty::Unit)]),
            iface("app::Admin", vec![]),
        ],
        vec![],
    );
    let new = schema_with(
        vec![
            iface(
                "app::Api",
                vec![
                    method("room", vec![], cap("app::rooms::Room")),
                    method("admin", vec![], cap("app::Audit")),
                ],
            ),
            iface("app::rooms::Room", vec![method("say", vec![], Ty::Unit)]),
            iface("app::Audit", vec![]),
        ],
        vec![],
    );
    let policy = Policy::from_toml("roots = [\"app::Api\"]").unwrap();
    let got: Vec<_> = diff(&old, &new, &policy)
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.kind, c.at, c.verdict))
        .collect();
    assert_eq!(
        got,
        vec![
            // Compared where it is handed out: Audit has every method of Admin.
            (K::InterfaceRemoved, "app::Admin".into(), V::Safe),
            (K::ReturnChanged, "app::Api.admin->returns".into(), V::Safe),
            (K::ReturnChanged, "app::Api.room->returns".into(), V::Safe),
            (K::InterfaceAdded, "app::Audit".into(), V::Safe),
            (K::InterfaceMoved, "app::rooms::Room".into(), V::Safe),
        ]
    );
}

#[test]
fn root_removed_breaks_old_clients() {
    let old = schema_with(
        vec![iface("app::Api", vec![]), iface("app::Other", vec![])],
        vec![],
    );
    let new = schema_with(vec![iface("app::Other", vec![])], vec![]);
    let policy = Policy::from_toml("roots = [\"app::Api\", \"app::Other\"]").unwrap();
    let got: Vec<_> = diff(&old, &new, &policy)
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.kind, c.at, c.verdict))
        .collect();
    assert_eq!(
        got,
        one(K::InterfaceRemoved, "app::Api", V::BreaksOldClients)
    );
}

#[test]
fn capability_interface_swapped_is_compared_by_its_methods() {
    let s = |target: &str, extra: bool| {
        let mut methods = vec![method("say", vec![], Ty::Unit)];
        if extra {
            methods.push(method("shout", vec![], Ty::Unit));
        }
        schema_with(
            vec![
                iface("app::Api", vec![method("room", vec![], cap(target))]),
                iface(target, methods),
            ],
            vec![],
        )
    };
    // Room → Hall with the same methods and more: old clients only call `say`.
    let got = changes(&s("app::Room", false), &s("app::Hall", true));
    assert!(
        got.contains(&(
            K::ReturnChanged,
            "app::Api.room->returns".into(),
            V::BreaksOldServers
        )),
        "{got:?}"
    );
    // Fewer methods: an old client's `shout` fails.
    let got = changes(&s("app::Room", true), &s("app::Hall", false));
    assert!(
        got.contains(&(
            K::ReturnChanged,
            "app::Api.room->returns".into(),
            V::BreaksOldClients
        )),
        "{got:?}"
    );
}

#[test]
fn callbacks_swap_clients_and_servers() {
    // The client implements Listener; the server calls it.
    let s = |listener: Vec<MethodDef>| {
        schema_with(
            vec![
                iface(
                    "app::Api",
                    vec![method(
                        "subscribe",
                        vec![("l", cap("app::Listener"))],
                        Ty::Unit,
                    )],
                ),
                iface("app::Listener", listener),
            ],
            vec![],
        )
    };
    let old = s(vec![method("on", vec![("n", u32_ty())], Ty::Unit)]);
    let new = s(vec![]);
    let policy = Policy::from_toml("roots = [\"app::Api\"]").unwrap();
    let got: Vec<_> = diff(&old, &new, &policy)
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.kind, c.at, c.verdict))
        .collect();
    // An old server still calls `on` on new clients' listeners.
    assert_eq!(
        got,
        one(K::MethodRemoved, "app::Listener.on", V::BreaksOldServers)
    );
    let got: Vec<_> = diff(&new, &old, &policy)
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.kind, c.at, c.verdict))
        .collect();
    assert_eq!(got, one(K::MethodAdded, "app::Listener.on", V::Safe));
}

#[test]
fn only_what_the_roots_reach_is_compared() {
    let old = schema_with(
        vec![
            iface("app::Api", vec![]),
            iface("app::Other", vec![get(u32_ty(), u32_ty())]),
        ],
        vec![],
    );
    let new = schema_with(
        vec![iface("app::Api", vec![]), iface("app::Other", vec![])],
        vec![],
    );
    let policy = Policy::from_toml("roots = [\"app::Api\"]").unwrap();
    assert!(diff(&old, &new, &policy).unwrap().changes.is_empty());
}

#[test]
fn allow_entries_accept_changes_with_their_reason() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(vec![], vec![]);
    let policy = Policy::from_toml(
        "[[allow]]\nrule = \"method-removed\"\nat = \"Api.get\"\nreason = \"no client calls it since 1.2\"\n\
         [[allow]]\nrule = \"field-removed\"\nat = \"app::Nope.*\"\nreason = \"r\"",
    )
    .unwrap();
    let report = diff(&old, &new, &policy).unwrap();
    assert!(!report.failed());
    assert_eq!(
        report.changes[0].allowed.as_deref(),
        Some("no client calls it since 1.2")
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("entry 2"),
        "{:?}",
        report.warnings
    );
    // A check of the same policy does not warn about the diff entries.
    let checked = remote_policy::check(&new, &policy).unwrap();
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
}

#[test]
fn reports_render_in_three_formats() {
    let old = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let new = api(vec![], vec![]);
    let report = diff(&old, &new, &Policy::default()).unwrap();
    let text = remote_policy::diff::render::text(&report);
    assert_eq!(
        text,
        "error[method-removed]: `app::Api.get`: get(id: u32) -> Result<u32, remote_core::Error> → -
  --> fixtures.rs:2:1
   = verdict: breaks-old-clients
   = why: old callers of `get` get unknown_method

remote-policy diff: 1 breaking, 0 allowed, 0 safe
"
    );
    let v: serde_json::Value =
        serde_json::from_str(&remote_policy::diff::render::json(&report)).unwrap();
    assert_eq!(v["failed"], true);
    assert_eq!(v["changes"][0]["kind"], "method-removed");
    assert_eq!(v["changes"][0]["verdict"], "breaks-old-clients");
    let log: serde_json::Value =
        serde_json::from_str(&remote_policy::diff::render::sarif(&report)).unwrap();
    let r = &log["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "method-removed");
    assert_eq!(r["level"], "error");
    assert_eq!(
        r["partialFingerprints"]["remotePolicyDiff/v1"],
        "method-removed|app::Api.get|get(id: u32) -> Result<u32, remote_core::Error>|-"
    );
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), ChangeKind::ALL.len());
    assert!(rules
        .iter()
        .all(|r| r["helpUri"].is_string() && r["fullDescription"]["text"].is_string()));
}

/// The standalone binary: `diff OLD NEW` and `diff --against OLD --schema NEW`.
#[test]
fn cli_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let old = api(
        vec![get(u32_ty(), u32_ty()), method("ping", vec![], Ty::Unit)],
        vec![],
    );
    let same = dir.path().join("same.json");
    let old_path = dir.path().join("old.json");
    let new_path = dir.path().join("new.json");
    let safe_path = dir.path().join("safe.json");
    std::fs::write(&old_path, remote_policy::export::to_json(&old)).unwrap();
    std::fs::write(&same, remote_policy::export::to_json(&old)).unwrap();
    let new = api(vec![get(u32_ty(), u32_ty())], vec![]);
    std::fs::write(&new_path, remote_policy::export::to_json(&new)).unwrap();
    let mut safe = old.clone();
    safe.interfaces
        .get_mut("app::Api")
        .unwrap()
        .methods
        .push(method("pong", vec![], Ty::Unit));
    std::fs::write(&safe_path, remote_policy::export::to_json(&safe)).unwrap();
    let run = |args: &[&std::path::Path]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_remote-policy"))
            .arg("diff")
            .args(args)
            .current_dir(dir.path())
            .env_remove("CARGO_MANIFEST_DIR")
            .output()
            .unwrap()
    };
    let out = run(&[&old_path, &same]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&[&old_path, &safe_path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("safe[method-added]"));
    let out = run(&[&old_path, &new_path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[method-removed]: `app::Api.ping`"));
    let out = run(&[
        "--against".as_ref(),
        &old_path,
        "--schema".as_ref(),
        &new_path,
        "--sarif".as_ref(),
        "d.sarif".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("d.sarif")).unwrap())
            .unwrap();
    assert_eq!(log["runs"][0]["results"][0]["ruleId"], "method-removed");
    let out = run(&[&old_path, &dir.path().join("missing.json")]);
    assert_eq!(out.status.code(), Some(2));
}
