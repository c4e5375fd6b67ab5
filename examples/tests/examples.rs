//! Runs every example's code (the example files themselves, included as
//! modules) and checks its transcript. All on loopback, each bounded by a
//! timeout.

use std::future::Future;
use std::time::Duration;

use remote_core::Connection;
use remote_examples::chat::Chat;
use remote_examples::Transcript;

#[allow(dead_code)]
#[path = "../callbacks.rs"]
pub mod callbacks;
#[allow(dead_code)]
#[path = "../chat.rs"]
pub mod chat;
#[allow(dead_code)]
#[path = "../collections.rs"]
pub mod collections;
#[allow(dead_code)]
#[path = "../inherent.rs"]
pub mod inherent;
#[allow(dead_code)]
#[path = "../readme.rs"]
pub mod readme;
#[allow(dead_code)]
#[path = "../worker.rs"]
pub mod worker;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `fut`, failing the test if it takes longer than [`LIMIT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// Waits until `cond` holds, polling; fails the test after [`LIMIT`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The lines of `lines` that start with `prefix`, in order.
fn starting_with(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

/// Asserts that `expected` occur in `lines` in this order (others may be
/// interleaved).
fn assert_in_order(lines: &[String], expected: &[&str]) {
    let mut rest = lines.iter();
    for want in expected {
        assert!(
            rest.any(|l| l == want),
            "missing or out of order: {want:?}\ntranscript:\n{}",
            lines.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_demo_both_clients_see_every_message() {
    let out = Transcript::capture();
    within("chat demo", chat::demo(&out))
        .await
        .expect("chat demo failed");
    let lines = out.lines();
    assert!(lines[0].starts_with("server listening on tcp://127.0.0.1:"));
    // bob saw every message (both clients' posts) through his
    // subscription, in order...
    assert_eq!(
        starting_with(&lines, "bob    <- "),
        [
            "bob    <- #0 [alice] hi bob!",
            "bob    <- #1 [bob] hey alice",
            "bob    <- #2 [alice] it's just a Vec",
        ]
    );
    // ... and alice read them all back, last.
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "alice  reads [alice] hi bob!",
            "alice  reads [bob] hey alice",
            "alice  reads [alice] it's just a Vec",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_interactive_clients_talk_through_the_server() {
    let server = chat::serve("tcp://127.0.0.1:0").await.expect("chat server");
    let addr = server.local_addr().to_owned();
    let list = Connection::connect(&addr)
        .await
        .expect("connect")
        .root::<Chat>();

    // bob's "terminal": he types one line, then stays connected.
    let (mut bob_keys, bob_stdin) = tokio::io::duplex(1024);
    let bob_screen = Transcript::capture();
    let bob = tokio::spawn({
        let (addr, screen) = (addr.clone(), bob_screen.clone());
        async move { chat::client(&addr, "bob", tokio::io::BufReader::new(bob_stdin), &screen).await }
    });
    tokio::io::AsyncWriteExt::write_all(&mut bob_keys, b"bob here\n")
        .await
        .unwrap();
    // His line is in the list, so he has subscribed (that comes first).
    within("bob's post", async {
        while list.len().await.expect("len") < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // ann types two lines and leaves.
    let ann_screen = Transcript::capture();
    within(
        "ann's client",
        chat::client(&addr, "ann", &b"hello\nhow are you\n"[..], &ann_screen),
    )
    .await
    .expect("ann's client failed");
    assert_eq!(
        ann_screen.lines(),
        ["[bob] bob here"],
        "ann sees the history"
    );

    // bob saw ann's lines as they arrived, not his own.
    eventually("bob to see ann's messages", || {
        bob_screen.lines().len() >= 2
    })
    .await;
    assert_eq!(bob_screen.lines(), ["[ann] hello", "[ann] how are you"]);

    // A late joiner gets the whole history.
    let carl_screen = Transcript::capture();
    within(
        "carl's client",
        chat::client(&addr, "carl", &b""[..], &carl_screen),
    )
    .await
    .expect("carl's client failed");
    assert_eq!(
        carl_screen.lines(),
        ["[bob] bob here", "[ann] hello", "[ann] how are you"]
    );

    // bob presses Ctrl-D.
    drop(bob_keys);
    within("bob's client", bob)
        .await
        .expect("bob's task")
        .expect("bob's client failed");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_interleave_as_nested_calls() {
    let out = Transcript::capture();
    let summary = within("callbacks", callbacks::run(&out))
        .await
        .expect("callbacks failed");
    assert_eq!(summary, "backup: all 3 steps done");

    let mut expected = vec![
        "client: calling jobs.run(\"backup\", 3, progress)".to_owned(),
        "  server: run(\"backup\", 3) starts".to_owned(),
    ];
    for i in 1..=3 {
        expected.extend([
            format!("  server: step {i} done, calling progress.step({i}, 3)"),
            format!("    client: progress.step({i}, 3) -> calling server.status()"),
            format!("      server: status() = \"backup: {i}/3 done\""),
            format!("    client: server.status() returned \"backup: {i}/3 done\""),
            format!("  server: progress.step({i}, 3) returned"),
        ]);
    }
    expected.extend([
        "  server: run(\"backup\") returns".to_owned(),
        "client: jobs.run returned \"backup: all 3 steps done\"".to_owned(),
    ]);
    assert_eq!(out.lines(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_child_process_serves_and_exits() {
    let out = Transcript::capture();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker-child"));
    within("worker", worker::run(&out, child))
        .await
        .expect("worker failed");
    let lines = out.lines();
    let text = lines.join("\n");

    // (The child's relayed stderr lines interleave with the parent's.)
    let spawned: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("parent: spawned child process "))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no child pid in:\n{text}"));
    assert_ne!(spawned, std::process::id());
    assert_in_order(
        &lines,
        &[
            &format!("parent: worker.pid() = {spawned}"),
            "parent: worker.word_count(\"the quick brown fox jumps over the lazy dog\") = 9",
            "parent: counter \"visits\" total = 42",
            "parent: holding 1 object(s) of the child",
            "parent: pipelined counter(\"hits\").add(5) = 5",
            "parent: from spawn_blocking, count_primes(100000) = 9592",
            "parent: child exited with exit status: 0",
        ],
    );
    assert!(
        text.contains(
            "count_primes says: blocking remote call made on a thread inside a tokio runtime"
        ),
        "{text}"
    );
    // The child's stderr was relayed; its stdout carried only the protocol.
    assert_in_order(
        &lines,
        &[
            &format!("    (child stderr) worker: serving on stdio (pid {spawned})"),
            "    (child stderr) worker: new counter \"visits\"",
            "    (child stderr) worker: new counter \"hits\"",
            "    (child stderr) worker: counting primes below 100000 on a blocking thread",
        ],
    );
    assert!(
        text.contains("(child stderr) worker: parent hung up"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_subscribers_see_every_change_and_streams_are_lazy() {
    let out = Transcript::capture();
    within("collections", collections::run(&out))
        .await
        .expect("collections failed");
    let lines = out.lines();

    let changes = [
        "scores[\"alice\"] = 10",
        "scores[\"bob\"] = 7",
        "log[0] = \"bob joined\"",
        "scores[\"alice\"] = 12",
        "scores[\"bob\"] removed",
    ];
    for who in ["alice", "bob  "] {
        let prefix = format!("    {who} sees ");
        let seen: Vec<String> = starting_with(&lines, &prefix)
            .iter()
            .map(|l| l[prefix.len()..].to_owned())
            .collect();
        assert_eq!(seen, changes, "{who}'s subscriptions");
    }
    assert_in_order(
        &lines,
        &[
            "alice: scores.insert(\"alice\", 12) replaced Some(10)",
            "alice: scores.entries() = [(\"alice\", 12)]",
            "bob: log.range(0, 10) = [\"bob joined\"]",
            "server: its own copy of the scores = {\"alice\": 12}",
        ],
    );

    // The stream: the server computes a batch of 4 only after bob consumed
    // the previous one.
    let start = lines
        .iter()
        .position(|l| l == "bob: pulling board.squares(10), 4 per round trip")
        .expect("stream part");
    let mut expected = Vec::new();
    for batch in [0..4u64, 4..8, 8..10] {
        expected.extend(batch.clone().map(|i| format!("  server: computing {i}^2")));
        expected.extend(batch.map(|i| format!("    bob got {}", i * i)));
    }
    expected.push("bob: stream ended".to_owned());
    assert_eq!(lines[start + 1..], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherent_impl_is_served_without_a_trait() {
    let out = Transcript::capture();
    within("inherent", inherent::run(&out))
        .await
        .expect("inherent failed");
    let lines = out.lines();
    let transport = if cfg!(unix) { "unix://" } else { "tcp://" };
    assert!(
        lines[0].starts_with(&format!("server: serving a Notebook on {transport}")),
        "{lines:?}"
    );
    assert_eq!(
        lines[1..],
        [
            "client: second write of \"todo\" replaced a note: true",
            "client: titles() = [\"ideas\", \"todo\"]",
            "client: read(\"todo\") = Some(\"ship the examples\")",
            "client: words() from a plain thread = 10",
            "server: locally, titles() = [\"ideas\", \"todo\"]",
            "server: after the local-only clear(), the client sees titles() = []",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_listeners_hear_every_post_before_it_returns() {
    let out = Transcript::capture();
    within("readme", readme::run(&out))
        .await
        .expect("readme failed");
    assert_eq!(
        out.lines(),
        [
            "alice hears [alice] hi",
            "bob hears [alice] hi",
            "alice posted message 1",
            "alice hears [bob] hello alice",
            "bob hears [bob] hello alice",
            "bob posted message 2",
        ]
    );
}

#[test]
fn shared_interfaces_are_in_the_schema_the_policy_checker_reads() {
    let schema = remote_core::schema::collect();
    let names: Vec<&str> = schema
        .interfaces
        .values()
        .map(|i| i.name.as_str())
        .collect();
    for name in [
        "Jobs",
        "Progress",
        "Worker",
        "Counter",
        "Board",
        "NotebookRemote",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // `Board` reaches the shared collections' generic interfaces.
    for name in ["RemoteMap", "RemoteList"] {
        assert!(
            names.iter().any(|n| n.starts_with(name)),
            "{name} missing from {names:?}"
        );
    }
}
