//! The fixture pairs of [`super::every_change_gets_its_kind_and_verdict`]:
//! every change kind, and the verdict rules behind it.

use remote_core::schema::{MethodDef, Schema, Ty};
use remote_policy::diff::{ChangeKind, ChangeKind as K, Verdict, Verdict as V};
use remote_policy::testing::*;

use super::{api, get, u32_ty};

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

/// `app::Api` sending (`sent_by_server`) or receiving `app::Event`.
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

/// `app::Api.room()` handing out `target` (with `shout` too if `extra`).
fn room_handed_out(target: &str, extra: bool) -> Schema {
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
}

/// The client implements `app::Listener` with `listener`; the server calls it.
fn listener(listener: Vec<MethodDef>) -> Schema {
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
}

/// What a case expects of `diff(old, new)`.
pub(crate) enum Want {
    /// Exactly these changes, in report order.
    Exactly(Vec<(ChangeKind, &'static str, Verdict)>),
    /// At least this change.
    Includes(ChangeKind, &'static str, Verdict),
}

/// One fixture pair and what its diff must say.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) old: Schema,
    pub(crate) new: Schema,
    /// The policy's `roots`; empty: the default policy.
    pub(crate) roots: &'static [&'static str],
    pub(crate) want: Want,
}

fn case(name: &'static str, old: &Schema, new: &Schema, want: Want) -> Case {
    Case {
        name,
        old: old.clone(),
        new: new.clone(),
        roots: &[],
        want,
    }
}

impl Case {
    /// The same case under a policy with these `roots`.
    fn roots(self, roots: &'static [&'static str]) -> Case {
        Case { roots, ..self }
    }
}

fn one(kind: ChangeKind, at: &'static str, verdict: Verdict) -> Want {
    Want::Exactly(vec![(kind, at, verdict)])
}

fn none() -> Want {
    Want::Exactly(Vec::new())
}

/// Every change kind (and the verdict rules behind it), one or more
/// fixture pairs each.
pub(crate) fn cases() -> Vec<Case> {
    let plain = api(vec![get(u32_ty(), u32_ty())], vec![]);
    let empty = api(vec![], vec![]);
    let mut cases = Vec::new();

    let s = api(
        vec![get(u32_ty(), named("app::Msg"))],
        vec![strukt("app::Msg", vec![field("a", string())])],
    );
    cases.push(case("identical schemas have no changes", &s, &s, none()));

    // Methods.
    cases.push(case(
        "method removed breaks old clients",
        &plain,
        &empty,
        one(K::MethodRemoved, "app::Api.get", V::BreaksOldClients),
    ));
    cases.push(case(
        "method added is safe",
        &empty,
        &plain,
        one(K::MethodAdded, "app::Api.get", V::Safe),
    ));
    let mut m = get(u32_ty(), u32_ty());
    m.wire_name = "fetch".into();
    cases.push(case(
        "method renamed on the wire breaks both",
        &plain,
        &api(vec![m], vec![]),
        one(K::MethodRenamed, "app::Api.get", V::BreaksBoth),
    ));
    cases.push(case(
        "a new Rust name with the same signature is taken as a rename too",
        &plain,
        &api(
            vec![method("fetch", vec![("id", u32_ty())], u32_ty())],
            vec![],
        ),
        one(K::MethodRenamed, "app::Api.get", V::BreaksBoth),
    ));
    let mut m = method("fetch", vec![("id", u32_ty())], u32_ty());
    m.wire_name = "get".into();
    cases.push(case(
        "Rust rename keeping the wire name is safe",
        &plain,
        &api(vec![m], vec![]),
        one(K::RustNameChanged, "app::Api.fetch", V::Safe),
    ));
    cases.push(case(
        "requires_auth added breaks old clients",
        &plain,
        &api(vec![auth(get(u32_ty(), u32_ty()))], vec![]),
        one(K::RequiresAuthAdded, "app::Api.get", V::BreaksOldClients),
    ));
    cases.push(case(
        "requires_auth removed is safe",
        &api(vec![auth(get(u32_ty(), u32_ty()))], vec![]),
        &plain,
        one(K::RequiresAuthRemoved, "app::Api.get", V::Safe),
    ));
    let mut m = get(u32_ty(), u32_ty());
    m.is_async = false;
    cases.push(case(
        "blocking changed is safe",
        &plain,
        &api(vec![m], vec![]),
        one(K::BlockingChanged, "app::Api.get", V::Safe),
    ));

    // Arguments.
    let with_exact = api(
        vec![method(
            "get",
            vec![("id", u32_ty()), ("exact", option(Ty::Bool))],
            u32_ty(),
        )],
        vec![],
    );
    cases.push(case(
        "argument added breaks both even as an Option",
        &plain,
        &with_exact,
        one(K::ArgumentAdded, "app::Api.get(exact)", V::BreaksBoth),
    ));
    cases.push(case(
        "argument removed breaks both even as an Option",
        &with_exact,
        &plain,
        one(K::ArgumentRemoved, "app::Api.get(exact)", V::BreaksBoth),
    ));
    let mv = |a: &str, b: &str| method("move", vec![(a, u32_ty()), (b, u32_ty())], Ty::Unit);
    cases.push(case(
        "arguments reordered break both",
        &api(vec![mv("from", "to")], vec![]),
        &api(vec![mv("to", "from")], vec![]),
        one(K::ArgumentsReordered, "app::Api.move", V::BreaksBoth),
    ));
    cases.push(case(
        "argument renamed is safe",
        &plain,
        &api(
            vec![method("get", vec![("key", u32_ty())], u32_ty())],
            vec![],
        ),
        one(K::ArgumentRenamed, "app::Api.get(key)", V::Safe),
    ));
    let wide_arg = api(vec![get(u64_ty(), u32_ty())], vec![]);
    // Widened: old clients still fit; a new client's big id is refused by an old server.
    cases.push(case(
        "argument widened breaks old servers",
        &plain,
        &wide_arg,
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksOldServers),
    ));
    // Narrowed: the reverse.
    cases.push(case(
        "argument narrowed breaks old clients",
        &wide_arg,
        &plain,
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksOldClients),
    ));
    // T → Option<T>: the new server reads a plain value as Some.
    cases.push(case(
        "argument made optional breaks old servers",
        &plain,
        &api(vec![get(option(u32_ty()), u32_ty())], vec![]),
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksOldServers),
    ));
    // Another kind of value altogether.
    cases.push(case(
        "argument of another kind breaks both",
        &plain,
        &api(vec![get(string(), u32_ty())], vec![]),
        one(K::ArgumentRetyped, "app::Api.get(id)", V::BreaksBoth),
    ));

    // Returns and errors.
    // Widened return: an old client refuses a large value from the new server.
    cases.push(case(
        "return widened breaks old clients",
        &plain,
        &api(vec![get(u32_ty(), u64_ty())], vec![]),
        one(
            K::ReturnChanged,
            "app::Api.get->returns",
            V::BreaksOldClients,
        ),
    ));
    // Option<T>: an old client refuses None.
    let optional_return = api(vec![get(u32_ty(), option(u32_ty()))], vec![]);
    cases.push(case(
        "return made optional breaks old clients",
        &plain,
        &optional_return,
        one(
            K::ReturnChanged,
            "app::Api.get->returns",
            V::BreaksOldClients,
        ),
    ));
    cases.push(case(
        "return made required breaks old servers",
        &optional_return,
        &plain,
        one(
            K::ReturnChanged,
            "app::Api.get->returns",
            V::BreaksOldServers,
        ),
    ));
    let e = || vec![enumeration("app::E", vec![("No", vec![])])];
    cases.push(case(
        "error changed breaks both",
        &api(vec![get(u32_ty(), u32_ty())], e()),
        &api(
            vec![with_error(get(u32_ty(), u32_ty()), named("app::E"))],
            e(),
        ),
        one(K::ErrorChanged, "app::Api.get->error", V::BreaksBoth),
    ));

    // Bounds count at the receiver.
    let b64 = api(vec![get(bounded_string(64), bounded_string(64))], vec![]);
    cases.push(case(
        "argument bound lowered breaks old clients",
        &b64,
        &api(vec![get(bounded_string(32), bounded_string(64))], vec![]),
        one(K::BoundChanged, "app::Api.get(id)", V::BreaksOldClients),
    ));
    cases.push(case(
        "argument bound raised breaks old servers",
        &b64,
        &api(vec![get(bounded_string(128), bounded_string(64))], vec![]),
        one(K::BoundChanged, "app::Api.get(id)", V::BreaksOldServers),
    ));
    cases.push(case(
        "return bound raised breaks old clients",
        &b64,
        &api(vec![get(bounded_string(64), bounded_string(128))], vec![]),
        one(
            K::BoundChanged,
            "app::Api.get->returns",
            V::BreaksOldClients,
        ),
    ));

    // Fields.
    let a = || vec![field("a", u32_ty())];
    let a_only = msgs(a(), a());
    let optional_b = vec![field("a", u32_ty()), field("b", option(string()))];
    cases.push(case(
        "optional field added is safe both ways",
        &a_only,
        &msgs(optional_b.clone(), optional_b),
        Want::Exactly(vec![
            (K::FieldAddedOptional, "app::Msg.b", V::Safe),
            (K::FieldAddedOptional, "app::Out.b", V::Safe),
        ]),
    ));
    let defaulted_b = vec![field("a", u32_ty()), defaulted(field("b", u32_ty()))];
    let with_defaulted = msgs(defaulted_b.clone(), defaulted_b);
    cases.push(case(
        "defaulted field added is safe",
        &a_only,
        &with_defaulted,
        Want::Exactly(vec![
            (K::FieldAddedOptional, "app::Msg.b", V::Safe),
            (K::FieldAddedOptional, "app::Out.b", V::Safe),
        ]),
    ));
    cases.push(case(
        "defaulted field removed is safe",
        &with_defaulted,
        &a_only,
        Want::Exactly(vec![
            (K::FieldRemoved, "app::Msg.b", V::Safe),
            (K::FieldRemoved, "app::Out.b", V::Safe),
        ]),
    ));
    let required_b = vec![field("a", u32_ty()), field("b", u32_ty())];
    cases.push(case(
        "required field added breaks whoever receives it new",
        &a_only,
        &msgs(required_b.clone(), required_b),
        Want::Exactly(vec![
            // The new server needs `b` from old clients.
            (K::FieldAddedRequired, "app::Msg.b", V::BreaksOldClients),
            // A new client needs `b` from old servers.
            (K::FieldAddedRequired, "app::Out.b", V::BreaksOldServers),
        ]),
    ));
    cases.push(case(
        "field removed",
        &msgs(
            vec![
                field("a", u32_ty()),
                field("b", u32_ty()),
                field("c", option(u32_ty())),
            ],
            vec![field("a", u32_ty()), field("b", u32_ty())],
        ),
        &a_only,
        Want::Exactly(vec![
            // Old servers need `b` from new clients.
            (K::FieldRemoved, "app::Msg.b", V::BreaksOldServers),
            (K::FieldRemoved, "app::Msg.c", V::Safe),
            // Old clients need `b` from the new server.
            (K::FieldRemoved, "app::Out.b", V::BreaksOldClients),
        ]),
    ));
    cases.push(case(
        "field retyped and reordered",
        &msgs(vec![field("a", u32_ty()), field("b", u32_ty())], a()),
        &msgs(vec![field("b", u32_ty()), field("a", u64_ty())], a()),
        Want::Exactly(vec![
            (K::FieldsReordered, "app::Msg", V::Safe),
            (K::FieldRetyped, "app::Msg.a", V::BreaksOldServers),
        ]),
    ));
    cases.push(case(
        "secret mark changed is safe on the wire",
        &a_only,
        &msgs(vec![secret_field("a", u32_ty())], a()),
        one(K::SecretChanged, "app::Msg.a", V::Safe),
    ));

    // Variants and shapes.
    let ab = || vec![("A", vec![]), ("B", vec![])];
    let only_a = || vec![("A", vec![])];
    cases.push(case(
        "variant added breaks old clients that receive it",
        &events(only_a(), true),
        &events(ab(), true),
        one(K::VariantAdded, "app::Event.B", V::BreaksOldClients),
    ));
    cases.push(case(
        "variant added breaks old servers that receive it",
        &events(only_a(), false),
        &events(ab(), false),
        one(K::VariantAdded, "app::Event.B", V::BreaksOldServers),
    ));
    cases.push(case(
        "variant removed breaks new receivers of old senders",
        &events(ab(), false),
        &events(only_a(), false),
        one(K::VariantRemoved, "app::Event.B", V::BreaksOldClients),
    ));
    cases.push(case(
        "variant shape changed breaks both",
        &events(only_a(), true),
        &events(vec![("A", vec![field("0", u32_ty())])], true),
        one(K::ShapeChanged, "app::Event.A", V::BreaksBoth),
    ));
    let tuple = msgs(vec![field("0", u32_ty())], a());
    cases.push(case(
        "tuple struct shape changed breaks both",
        &tuple,
        &msgs(vec![field("0", u32_ty()), field("1", u32_ty())], a()),
        one(K::ShapeChanged, "app::Msg", V::BreaksBoth),
    ));
    let mut struct_to_enum = tuple.clone();
    struct_to_enum.types.insert(
        "app::Out".into(),
        enumeration("app::Out", vec![("a", vec![])]),
    );
    cases.push(case(
        "struct turned enum breaks both",
        &tuple,
        &struct_to_enum,
        one(K::ShapeChanged, "app::Out", V::BreaksBoth),
    ));

    // Interfaces, from the roots.
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
    cases.push(
        case(
            "interfaces added, removed and moved",
            &old,
            &new,
            Want::Exactly(vec![
                // Compared where it is handed out: Audit has every method of Admin.
                (K::InterfaceRemoved, "app::Admin", V::Safe),
                (K::ReturnChanged, "app::Api.admin->returns", V::Safe),
                (K::ReturnChanged, "app::Api.room->returns", V::Safe),
                (K::InterfaceAdded, "app::Audit", V::Safe),
                (K::InterfaceMoved, "app::rooms::Room", V::Safe),
            ]),
        )
        .roots(&["app::Api"]),
    );
    let other = || iface("app::Other", vec![]);
    cases.push(
        case(
            "root removed breaks old clients",
            &schema_with(vec![iface("app::Api", vec![]), other()], vec![]),
            &schema_with(vec![other()], vec![]),
            one(K::InterfaceRemoved, "app::Api", V::BreaksOldClients),
        )
        .roots(&["app::Api", "app::Other"]),
    );
    // Room → Hall with the same methods and more: old clients only call `say`.
    cases.push(case(
        "capability swapped for one with more methods breaks old servers",
        &room_handed_out("app::Room", false),
        &room_handed_out("app::Hall", true),
        Want::Includes(
            K::ReturnChanged,
            "app::Api.room->returns",
            V::BreaksOldServers,
        ),
    ));
    // Fewer methods: an old client's `shout` fails.
    cases.push(case(
        "capability swapped for one with fewer methods breaks old clients",
        &room_handed_out("app::Room", true),
        &room_handed_out("app::Hall", false),
        Want::Includes(
            K::ReturnChanged,
            "app::Api.room->returns",
            V::BreaksOldClients,
        ),
    ));
    let with_on = listener(vec![method("on", vec![("n", u32_ty())], Ty::Unit)]);
    // An old server still calls `on` on new clients' listeners.
    cases.push(
        case(
            "callback method removed breaks old servers",
            &with_on,
            &listener(vec![]),
            one(K::MethodRemoved, "app::Listener.on", V::BreaksOldServers),
        )
        .roots(&["app::Api"]),
    );
    cases.push(
        case(
            "callback method added is safe",
            &listener(vec![]),
            &with_on,
            one(K::MethodAdded, "app::Listener.on", V::Safe),
        )
        .roots(&["app::Api"]),
    );
    cases.push(
        case(
            "only what the roots reach is compared",
            &schema_with(
                vec![
                    iface("app::Api", vec![]),
                    iface("app::Other", vec![get(u32_ty(), u32_ty())]),
                ],
                vec![],
            ),
            &schema_with(vec![iface("app::Api", vec![]), other()], vec![]),
            none(),
        )
        .roots(&["app::Api"]),
    );
    cases
}
