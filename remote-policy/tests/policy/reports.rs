//! The three renderings of a report.

use remote_core::schema::Ty;
use remote_policy::report::{json, sarif, text};
use remote_policy::testing::*;
use serde_json::Value;

use crate::fixtures::*;

fn report_and_schema() -> (remote_policy::Report, remote_core::schema::Schema) {
    let s = schema(
        vec![
            iface("app::Api", vec![method("open", vec![], cap("app::Room"))]),
            iface(
                "app::Room",
                vec![
                    method("key", vec![], secret_ty()),
                    method("say", vec![("text", string())], Ty::Unit),
                ],
            ),
        ],
        vec![],
    );
    let policy = "[[allow]]\nrule = \"unbounded-input\"\nat = \"app::Room.say(text)\"\nreason = \"chat lines are cut at 1 KiB\"";
    (run(&s, policy), s)
}

#[test]
fn text_report() {
    let (report, _) = report_and_schema();
    assert_eq!(
        text::render(&report),
        "error[secret-flows-out]: secret type `app::Secret` (marked #[wire(secret)]) flows out to the peer: returned by `Room.key`
  --> fixtures.rs:2:1
  --> app.rs:100:1
   = chain: root Api → Api.open() → returns → Remote<dyn Room> → Room.key() → returns → Secret
   = at: app::Secret
   = reachable before authentication

allowed[unbounded-input]: string without a length bound, in argument `text` of `Room.say`, before authentication
  --> fixtures.rs:2:1
   = chain: root Api → Api.open() → returns → Remote<dyn Room> → Room.say() → arg text
   = at: app::Room.say(text)
   = reachable before authentication
   = allowed: chat lines are cut at 1 KiB

remote-policy: 1 error, 0 warnings, 1 allowed (1 root, 2 interfaces, 3 methods)
"
    );
    assert_eq!(
        text::render_surface(&report),
        "root app::Api
  app::Api (served, the peer calls; before auth): open
  app::Room (served, the peer calls; before auth): key, say
types out: app::Secret
types in: -
"
    );
}

#[test]
fn json_report() {
    let (report, _) = report_and_schema();
    let v: Value = serde_json::from_str(&json::render(&report)).unwrap();
    assert_eq!(v["format"], "remote-policy-report");
    assert_eq!(v["version"], 1);
    assert_eq!(v["failed"], true);
    assert_eq!(
        v["counts"],
        serde_json::json!({ "errors": 1, "warnings": 0, "allowed": 1 })
    );
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "secret-flows-out");
    assert_eq!(f["level"], "error");
    assert_eq!(f["at"], "app::Secret");
    assert_eq!(f["site"], "app::Room.key->returns");
    // Where the value crosses (the method), and where the type is declared.
    assert_eq!(
        f["location"],
        serde_json::json!({ "file": "fixtures.rs", "line": 2, "column": 1 })
    );
    assert_eq!(
        f["definition"],
        serde_json::json!({ "file": "app.rs", "line": 100, "column": 1 })
    );
    assert_eq!(
        f["chain_text"],
        "root Api → Api.open() → returns → Remote<dyn Room> → Room.key() → returns → Secret"
    );
    assert_eq!(
        f["chain"][0],
        serde_json::json!({ "kind": "root", "interface": "app::Api" })
    );
    assert_eq!(
        f["chain"][3],
        serde_json::json!({ "kind": "capability", "interface": "app::Room", "exposure": "served" })
    );
    assert_eq!(
        f["chain"][4],
        serde_json::json!({ "kind": "method", "interface": "app::Room", "method": "key", "exposure": "served" })
    );
    assert_eq!(
        f["chain"][5],
        serde_json::json!({ "kind": "position", "position": { "kind": "returns" } })
    );
    assert_eq!(v["findings"][1]["allowed"], "chat lines are cut at 1 KiB");
    assert_eq!(
        v["surface"]["types_out"],
        serde_json::json!(["app::Secret"])
    );
}

#[test]
fn sarif_report() {
    let (report, s) = report_and_schema();
    let v: Value = serde_json::from_str(&sarif::render(&report, &s)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "remote-policy");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "secret-flows-out",
            "forbidden-capability",
            "unauthenticated-capability",
            "unbounded-input",
            "unchecked-type"
        ]
    );
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let r = &results[0];
    assert_eq!(r["ruleId"], "secret-flows-out");
    assert_eq!(r["ruleIndex"], 0);
    assert_eq!(r["level"], "error");
    // The method where the value crosses, then the secret type's declaration.
    let loc = &r["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "fixtures.rs");
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(loc["region"]["startLine"], 2);
    let related = &r["relatedLocations"][0]["physicalLocation"];
    assert_eq!(related["artifactLocation"]["uri"], "app.rs");
    assert_eq!(related["region"]["startLine"], 100);
    // For code-scanning services.
    assert_eq!(run["automationDetails"]["id"], "remote-policy/check/");
    assert!(run["tool"]["driver"]["fullName"]
        .as_str()
        .unwrap()
        .starts_with("remote-policy"));
    for rule in rules {
        assert!(
            rule["helpUri"]
                .as_str()
                .unwrap()
                .contains("README.md#rules"),
            "{rule}"
        );
        assert!(
            rule["fullDescription"]["text"].as_str().unwrap().len() > 40,
            "{rule}"
        );
    }
    // Stable across commits: rule and subject, no line numbers or wording.
    assert_eq!(
        r["partialFingerprints"]["remotePolicy/v2"],
        "secret-flows-out|app::Secret|"
    );
    let steps = r["codeFlows"][0]["threadFlows"][0]["locations"]
        .as_array()
        .unwrap();
    assert_eq!(steps.len(), 7);
    assert_eq!(steps[0]["location"]["message"]["text"], "root Api");
    assert_eq!(
        steps[0]["location"]["physicalLocation"]["artifactLocation"]["uri"],
        "fixtures.rs"
    );
    assert!(r.get("suppressions").is_none());
    assert_eq!(
        results[1]["suppressions"],
        serde_json::json!([{ "kind": "external", "status": "accepted", "justification": "chat lines are cut at 1 KiB" }])
    );
    assert_ne!(
        r["partialFingerprints"]["remotePolicy/v2"],
        results[1]["partialFingerprints"]["remotePolicy/v2"]
    );
}

#[test]
fn chains_name_traits_of_one_name_unambiguously() {
    let s = schema(
        vec![
            iface(
                "app::Api",
                vec![
                    method("v1", vec![], cap("app::v1::Room")),
                    method("v2", vec![], cap("app::v2::Room")),
                ],
            ),
            iface("app::v1::Room", vec![method("key", vec![], secret_ty())]),
            iface("app::v2::Room", vec![method("key", vec![], public_ty())]),
        ],
        vec![],
    );
    let report = run(&s, "");
    assert_eq!(
        report.findings[0].chain_text(),
        "root Api → Api.v1() → returns → Remote<dyn v1::Room> → v1::Room.key() → returns → Secret"
    );
}

#[test]
fn streamed_values_are_worded_by_direction() {
    let s = schema(
        vec![iface(
            "app::Api",
            vec![
                method("tail", vec![], stream(secret_ty())),
                method("upload", vec![("s", stream(string()))], Ty::Unit),
            ],
        )],
        vec![],
    );
    let report = run(&s, "");
    let messages: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        messages[0].ends_with("streamed returned by `Api.tail`"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("streamed passed as `s` to `Api.upload`"),
        "{messages:?}"
    );
}

/// SARIF locations are URIs: a relative path percent-encoded under the
/// source root, an absolute one (a dependency's `file!()`) a `file:` URI
/// without it (they were the `file!()` text verbatim: a review).
#[test]
fn sarif_locations_are_uris() {
    use remote_policy::check;
    let mut m = method("me", vec![], named("app::User"));
    m.location = at("src/api v2/#gen.rs", 3);
    let mut user = strukt("app::User", vec![secret_field("token", string())]);
    user.location = at("/home/u/.cargo/registry/src/dep-0.1.0/src/lib é.rs", 9);
    let s = schema_with(vec![iface("app::Api", vec![m])], vec![user]);
    let report = check(&s, &remote_policy::Policy::default()).unwrap();
    let v: Value = serde_json::from_str(&sarif::render(&report, &s)).unwrap();
    let r = &v["runs"][0]["results"][0];
    let at = &r["locations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(at["uri"], "src/api%20v2/%23gen.rs");
    assert_eq!(at["uriBaseId"], "%SRCROOT%");
    let related = &r["relatedLocations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(
        related["uri"],
        "file:///home/u/.cargo/registry/src/dep-0.1.0/src/lib%20%C3%A9.rs"
    );
    assert!(related.get("uriBaseId").is_none(), "{related}");
}
