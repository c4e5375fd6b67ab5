//! The documented `tracing` spans and events (see
//! `remote_core::observability`), seen by a subscriber that records them:
//! their names, levels, fields, and parents.

mod support;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use remote_core::auth::Key;
use remote_core::proto::{encode, Hello};
use remote_core::{Connection, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle};
use support::{eventually, Calc, Counter, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One line per span created, span field recorded, or event:
/// `span NAME fields`, `record NAME fields`, `LEVEL NAME [in SPAN] fields`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut f = Fields(String::new());
        attrs.record(&mut f);
        let line = format!("span {}{}", attrs.metadata().name(), f.0);
        self.0.lock().unwrap().push(line);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut f = Fields(String::new());
        values.record(&mut f);
        let name = ctx.span(id).map_or("?", |s| s.name());
        self.0.lock().unwrap().push(format!("record {name}{}", f.0));
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        let parent = ctx.event_span(event).map_or("-", |s| s.name());
        let m = event.metadata();
        let line = format!("{} {} [in {parent}]{}", m.level(), m.name(), f.0);
        self.0.lock().unwrap().push(line);
    }
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn has(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines().iter().any(|l| pred(l))
    }
    fn dump(&self) -> String {
        self.lines().join("\n")
    }
}

/// Records everything traced on this thread (each test's runtime runs
/// every task on it) until the guard is dropped.
fn capture() -> (Capture, DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

fn key() -> Key {
    Key::new(*b"32 bytes of shared secret here!!")
}

async fn serve(limits: Limits) -> ServerHandle {
    Server::builder()
        .limits(limits)
        .shared_secret(key())
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())))
}

/// A server with one call slot (`max_calls_in_flight = 1`), and the root of
/// a client of it signed in as `ops`.
async fn one_slot() -> (ServerHandle, Connection, Remote<dyn Calc>) {
    let limits = Limits {
        max_calls_in_flight: 1,
        ..Limits::default()
    };
    let server = serve(limits).await;
    let client = ConnectionBuilder::new()
        .credentials("ops", key())
        .connect(server.local_addr())
        .await
        .unwrap();
    let root = client.root::<dyn Calc>();
    (server, client, root)
}

/// A call that holds a slot (for two minutes) until aborted.
fn hold_a_slot(root: &Remote<dyn Calc>) -> tokio::task::JoinHandle<Result<(), Error>> {
    let root = root.clone();
    tokio::spawn(async move { root.sleep(120_000).await })
}

#[tokio::test]
async fn connections_calls_limits_and_failures_are_traced() {
    let (capture, _default) = capture();
    let (server, _client, root) = one_slot().await;
    assert_eq!(root.add(2, 3).await.unwrap(), 5);

    // The connection span on each side; the server's records the user.
    assert!(
        capture.has(
            |l| l.starts_with("span remote.connection peer=tcp://127.0.0.1:")
                && l.contains("transport=tcp side=server")
        ),
        "{}",
        capture.dump()
    );
    assert!(capture.has(|l| l.contains("transport=tcp side=client")));
    assert!(capture.has(|l| l == "record remote.connection user=ops"));
    assert!(capture.has(|l| l.starts_with("INFO remote.connection.opened [in remote.connection]")));
    // The call's span, with its object, interface, method, id and deadline.
    assert!(
        capture.has(|l| l.starts_with("span remote.call object=0 interface=")
            && l.contains("method=\"add\" call_id=")
            && l.contains("timeout_ms=")),
        "{}",
        capture.dump()
    );

    // A limit hit: a second call while the only slot is taken.
    let slow = hold_a_slot(&root);
    assert!(eventually(60, || server.stats().calls.calls_started == 2).await);
    assert!(root.add(1, 1).await.is_err());
    assert!(
        capture.has(
            |l| l.starts_with("WARN remote.limit_exceeded [in remote.connection]")
                && l.contains("limit=max_calls_in_flight")
        ),
        "{}",
        capture.dump()
    );
    slow.abort();

    // A failed authentication.
    let err = Connection::connect(server.local_addr()).await.unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert!(
        capture.has(
            |l| l.starts_with("WARN remote.handshake_failed [in remote.connection]")
                && l.contains("authentication failed")
        ),
        "{}",
        capture.dump()
    );
}

#[tokio::test]
async fn a_protocol_violation_and_the_close_are_traced() {
    let (capture, _default) = capture();
    // A protocol violation from a peer on an open server, and the close.
    let open = Server::bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())));
    let addr = open.local_addr().trim_start_matches("tcp://").to_owned();
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let hello = encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features: vec![],
        auth: None,
    });
    raw.write_all(&hello).await.unwrap();
    // `[99]`: a message of an unknown kind.
    raw.write_all(&[0, 0, 0, 2, 0x91, 99]).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        raw.read_to_end(&mut sink),
    )
    .await;
    assert!(
        eventually(60, || capture.has(|l| l.starts_with(
            "WARN remote.protocol_violation [in remote.connection]"
        )))
        .await,
        "{}",
        capture.dump()
    );
    assert!(
        eventually(60, || capture
            .has(|l| l.starts_with(
                "INFO remote.connection.closed [in remote.connection]"
            ) && l.contains("reason=protocol violation")))
        .await,
        "{}",
        capture.dump()
    );
}

#[tokio::test]
async fn a_flood_of_refused_calls_logs_a_bounded_number_of_warnings() {
    let (capture, _default) = capture();
    let (server, _client, root) = one_slot().await;
    let slow = hold_a_slot(&root);
    assert!(eventually(60, || server.stats().calls.calls_started == 1).await);
    // Each refused call is a few bytes from the peer.
    const FLOOD: usize = 200;
    for _ in 0..FLOOD {
        let e = root.add(1, 1).await.unwrap_err();
        assert!(e.to_string().contains("max_calls_in_flight"), "{e}");
    }
    slow.abort();
    let limit_lines = |level: &str| {
        capture
            .lines()
            .iter()
            .filter(|l| {
                l.starts_with(&format!("{level} remote.limit_exceeded"))
                    && l.contains("limit=max_calls_in_flight")
            })
            .count()
    };
    // At most 16 at WARN per connection, the last saying so; the rest
    // are DEBUG, and every refusal is still counted.
    assert_eq!(limit_lines("WARN"), 16, "{}", capture.dump());
    assert!(capture.has(|l| l.contains("later ones are DEBUG")));
    assert_eq!(limit_lines("DEBUG"), FLOOD - 16);
    assert_eq!(server.stats().calls.calls_started, 1 + FLOOD as u64);
}
