//! The Python stubs import, and every annotation in them resolves.

use std::process::Command;

use remote_core::schema::Ty;
use remote_policy::stubs::python;
use remote_policy::testing::*;

fn rich_schema() -> remote_core::schema::Schema {
    let mut chat = iface(
        "app::Chat",
        vec![
            method(
                "post",
                vec![("msg", named("app::Msg")), ("from", Ty::Char)],
                u64_ty(),
            ),
            method(
                "tail",
                vec![("since", option(u64_ty()))],
                stream(named("app::Event")),
            ),
            method("open", vec![], cap("app::Room")),
            with_error(
                method("import", vec![("lines", seq(string()))], Ty::Unit),
                named("app::ChatError"),
            ),
            auth(method(
                "stats",
                vec![],
                Ty::Map {
                    key: Box::new(string()),
                    value: Box::new(Ty::Float { bits: 64 }),
                    max_len: None,
                },
            )),
            method(
                "odd",
                vec![(
                    "x",
                    Ty::Tuple(vec![
                        Ty::Result {
                            ok: Box::new(Ty::Unit),
                            err: Box::new(string()),
                        },
                        Ty::Array {
                            elem: Box::new(Ty::Bool),
                            len: 4,
                        },
                        Ty::Opaque {
                            name: "vendor::Blob".into(),
                            declared: None,
                        },
                        Ty::Tuple(vec![]),
                    ]),
                )],
                Ty::Bytes { max_len: None },
            ),
        ],
    );
    chat.doc = "A chat \"server\" with \\ backslashes and \"\"\" quotes.".into();
    chat.methods[0].wire_name = "chat.post".into();
    chat.methods[3].is_async = false;
    let room = iface(
        "app::Room",
        vec![
            method("back", vec![], cap("app::Chat")),
            method("page", vec![], named("app::Page<app::Msg>")),
        ],
    );
    schema_with(
        vec![chat, room],
        vec![
            strukt(
                "app::Msg",
                vec![
                    field("class", string()),
                    field("self", string()),
                    secret_field("token", u64_ty()),
                ],
            ),
            strukt(
                "other::Msg",
                vec![field("0", u64_ty()), field("1", string())],
            ),
            strukt(
                "app::Page<app::Msg>",
                vec![
                    field("items", seq(named("app::Msg"))),
                    field("next", option(named("app::Page<app::Msg>"))),
                ],
            ),
            strukt("app::Unit", vec![]),
            enumeration(
                "app::Event",
                vec![
                    ("Joined", vec![field("0", named("app::Msg"))]),
                    (
                        "Renamed",
                        vec![field("old", string()), field("new", string())],
                    ),
                    ("Tick", vec![]),
                ],
            ),
            enumeration(
                "app::ChatError",
                vec![
                    ("Full", vec![]),
                    ("Ok", vec![field("0", named("other::Msg"))]),
                ],
            ),
            enumeration("app::Never", vec![]),
        ],
    )
}

const PROBE: &str = r#"
import dataclasses, importlib, inspect, sys, typing
sys.path.insert(0, sys.argv[1])
m = importlib.import_module("app_stubs")
assert m.SCHEMA_FORMAT == "remote-schema" and m.SCHEMA_VERSION == 2
names = {id(v): k for k, v in vars(m).items()}
resolved = 0
for key, obj in m.TYPES.items():
    probe = lambda: None
    probe.__annotations__ = {"x": names[id(obj)]}
    typing.get_type_hints(probe, globalns=vars(m))
    for arg in typing.get_args(obj):
        cls = arg if isinstance(arg, type) else getattr(m, arg.__forward_arg__)
        typing.get_type_hints(cls)
        assert len(dataclasses.fields(cls)) == len(cls.__wire_fields__), cls
        cls(*[None] * len(dataclasses.fields(cls)))
        resolved += 1
    if isinstance(obj, type):
        typing.get_type_hints(obj)
        obj(*[None] * len(dataclasses.fields(obj)))
        resolved += 1
for key, proto in m.INTERFACES.items():
    assert proto.__rust_path__ == key
    for py, wire in proto.__wire_names__.items():
        fn = getattr(proto, py)
        assert inspect.iscoroutinefunction(fn), py
        typing.get_type_hints(fn)
        resolved += 1
chat = m.INTERFACES["app::Chat"]
assert chat.__wire_names__["post"] == "chat.post", chat.__wire_names__
assert chat.__wire_names__["import_"] == "import"
assert chat.__requires_auth__ == frozenset({"stats"})
assert list(inspect.signature(chat.post).parameters) == ["self", "msg", "from_"]
assert m.Msg.__wire_fields__ == ("class", "self", "token")
assert [f.name for f in dataclasses.fields(m.Msg)] == ["class_", "self_", "token"]
assert m.Msg_2.__rust_path__ == "other::Msg" and m.Msg_2.__wire_shape__ == "tuple"
assert m.Event_Renamed.__wire_variant__ == "Renamed"
assert m.ChatError_Ok.__wire_shape__ == "newtype"
hints = typing.get_type_hints(m.Page_Msg)
assert hints["next"] == typing.Optional[m.Page_Msg], hints
assert typing.get_type_hints(chat.tail)["return"] == typing.AsyncIterator[typing.Union[m.Event_Joined, m.Event_Renamed, m.Event_Tick]]
assert typing.get_type_hints(m.Room.back)["return"] is chat
assert "backslashes" in chat.__doc__
print("OK", resolved)
"#;

#[test]
fn generated_python_imports_and_every_annotation_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let py = python::generate(&rich_schema());
    std::fs::write(dir.path().join("app_stubs.py"), &py).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(PROBE)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is required to test the generated Python stubs (CI has it); could not run it: {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 failed:\n{stderr}\n--- generated module ---\n{py}"
    );
    assert!(stdout.starts_with("OK "), "{stdout}");
    let resolved: usize = stdout.trim()["OK ".len()..].parse().unwrap();
    // 4 structs + 3 Event variants + 2 ChatError variants + 8 methods.
    assert_eq!(resolved, 17, "{stdout}");
}

#[test]
fn stubs_are_deterministic_and_mark_secrets() {
    let a = python::generate(&rich_schema());
    let b = python::generate(&rich_schema());
    assert_eq!(a, b);
    assert!(
        a.contains("    token: int  # secret: never sent by a compliant server\n"),
        "{a}"
    );
    assert!(a.contains("Never = typing.NoReturn\n"), "{a}");
}

/// Names that start with two underscores are not mangled by Python inside
/// the generated classes: an interface `__Hidden` made the module fail to
/// import (`NameError: _HiddenClient__Hidden`, a review).
#[test]
fn names_with_two_leading_underscores_import() {
    let schema = schema_with(
        vec![iface(
            "app::__Hidden",
            vec![method(
                "get",
                vec![("__arg", u64_ty())],
                named("app::__Inner"),
            )],
        )],
        vec![strukt("app::__Inner", vec![field("__x", u64_ty())])],
    );
    let dir = tempfile::tempdir().unwrap();
    let py = python::generate(&schema);
    std::fs::write(dir.path().join("hidden_stubs.py"), &py).unwrap();
    let probe = r#"
import sys, typing
sys.path.insert(0, sys.argv[1])
import hidden_stubs as m
hidden = m.INTERFACES["app::__Hidden"]
typing.get_type_hints(hidden.get)
inner = m.TYPES["app::__Inner"]
assert inner.__wire_fields__ == ("__x",), inner.__wire_fields__
print("OK")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(probe)
        .arg(dir.path())
        .output()
        .expect("python3 (CI has it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\n--- generated module ---\n{py}"
    );
}
