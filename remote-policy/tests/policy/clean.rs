//! Schemas that look like the leaking ones but do not leak: every check
//! must come back empty.

use remote_core::schema::Ty;
use remote_policy::testing::*;

use crate::fixtures::*;

fn assert_clean(s: &remote_core::schema::Schema) {
    // A callback's remote error is bounded by the runtime, so it is not
    // unbounded input either.
    let report = run(s, "");
    assert_eq!(rows(&report), Vec::<Row>::new());
    assert!(!report.failed());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn secret_as_an_argument_flows_in() {
    let s = schema(
        vec![iface(
            "app::Api",
            vec![method("store", vec![("key", secret_ty())], Ty::Unit)],
        )],
        vec![],
    );
    assert_clean(&s);
}

#[test]
fn secret_returned_by_a_callback_flows_in() {
    let s = schema(
        vec![
            iface(
                "app::Api",
                vec![method(
                    "subscribe",
                    vec![("l", cap("app::Listener"))],
                    Ty::Unit,
                )],
            ),
            iface(
                "app::Listener",
                vec![with_error(
                    method("ask", vec![("q", u64_ty())], secret_ty()),
                    secret_ty(),
                )],
            ),
        ],
        vec![],
    );
    assert_clean(&s);
}

#[test]
fn stream_of_secrets_sent_to_us() {
    let s = schema(
        vec![iface(
            "app::Api",
            vec![method("upload", vec![("s", stream(secret_ty()))], Ty::Unit)],
        )],
        vec![],
    );
    assert_clean(&s);
}

#[test]
fn capability_we_pass_to_a_callback_that_takes_secrets() {
    let s = schema(
        vec![
            iface(
                "app::Api",
                vec![method(
                    "subscribe",
                    vec![("l", cap("app::Listener"))],
                    Ty::Unit,
                )],
            ),
            iface(
                "app::Listener",
                vec![method(
                    "on_join",
                    vec![("room", cap("app::Room"))],
                    Ty::Unit,
                )],
            ),
            iface(
                "app::Room",
                vec![method("put", vec![("key", secret_ty())], Ty::Unit)],
            ),
        ],
        vec![],
    );
    assert_clean(&s);
}

#[test]
fn callback_handing_us_a_capability_that_returns_secrets() {
    // The peer gives us its Vault (held); calling it brings secrets *in*.
    let s = schema(
        vec![
            iface(
                "app::Api",
                vec![method(
                    "subscribe",
                    vec![("l", cap("app::Listener"))],
                    Ty::Unit,
                )],
            ),
            iface(
                "app::Listener",
                vec![method("vault", vec![], cap("app::Vault"))],
            ),
            iface(
                "app::Vault",
                vec![method(
                    "read",
                    vec![],
                    option(Ty::Seq {
                        elem: Box::new(secret_ty()),
                        max_len: Some(8),
                    }),
                )],
            ),
        ],
        vec![],
    );
    assert_clean(&s);
}

#[test]
fn similar_names_and_shapes_without_a_secret() {
    let hint = located(strukt("app::SecretHint", vec![field("len", u64_ty())]), 200);
    let event = located(
        enumeration(
            "app::Event",
            vec![("Joined", vec![field("0", public_ty())]), ("Left", vec![])],
        ),
        210,
    );
    let s = schema(
        vec![iface(
            "app::Api",
            vec![
                method("hint", vec![], named("app::SecretHint")),
                method("list", vec![], option(seq(public_ty()))),
                method("next", vec![], named("app::Event")),
                method("tail", vec![], stream(public_ty())),
            ],
        )],
        vec![hint, event],
    );
    assert_clean(&s);
}

#[test]
fn unreachable_interface_returning_a_secret() {
    let s = schema(
        vec![
            iface("app::Api", vec![method("ping", vec![], Ty::Unit)]),
            iface("app::Internal", vec![method("dump", vec![], secret_ty())]),
        ],
        vec![],
    );
    assert_clean(&s);
}
