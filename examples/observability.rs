//! Tracing and counters: a `tracing-subscriber` with an `EnvFilter` shows
//! the connection and call spans and the warnings (a refused
//! authentication, a limit hit); the server's counters are printed at the
//! end.
//!
//! ```text
//! cargo run --example observability                       # remote_core=debug
//! RUST_LOG=remote_core=info cargo run --example observability
//! ```

use std::time::Duration;

use remote_core::auth::Key;
use remote_core::collections::{RemoteList, SharedVec};
use remote_core::{ConnectionBuilder, Limits, Server};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> remote_core::Result<()> {
    // RUST_LOG wins; without it, the per-call spans (DEBUG) are shown too,
    // each as one line when it closes (with its duration).
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("remote_core=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .init();

    let key = Key::random()?;
    let list = SharedVec::<String>::new();
    let server = Server::builder()
        .limits(Limits {
            max_frame_len: 4096,
            ..Limits::default()
        })
        .shared_secret(key.clone())
        .bind("tcp://127.0.0.1:0")
        .await?
        .serve(move |_| list.remote());
    let addr = server.local_addr().to_owned();

    // Served: INFO connection opened, a DEBUG span per call.
    let alice = ConnectionBuilder::new()
        .credentials("alice", key.clone())
        .connect(&addr)
        .await?;
    let notes = alice.root::<dyn RemoteList<String>>();
    notes.push("first".into()).await?;
    notes.push("second".into()).await?;
    println!("alice sees {} notes", notes.len().await?);

    // WARN handshake_failed: a client with the wrong key.
    let wrong = ConnectionBuilder::new()
        .credentials("mallory", Key::random()?)
        .connect(&addr)
        .await;
    println!(
        "mallory: {}",
        wrong.err().map(|e| e.to_string()).unwrap_or_default()
    );

    // WARN limit_exceeded: a frame over the server's max_frame_len; the
    // server closes that connection (INFO connection closed, with why).
    let bob = ConnectionBuilder::new()
        .credentials("bob", key)
        .connect(&addr)
        .await?;
    let big = bob
        .root::<dyn RemoteList<String>>()
        .push("x".repeat(10_000))
        .await;
    println!(
        "bob's big note: {}",
        big.err().map(|e| e.to_string()).unwrap_or_default()
    );

    let stats = server.stats();
    println!(
        "server: {} connections ({} open, {} refused), {} calls, {} errors, {} bytes in, {} out",
        stats.connections_total,
        stats.connections_open,
        stats.connections_refused,
        stats.calls.calls_finished,
        stats.calls.errors_total(),
        stats.calls.bytes_in,
        stats.calls.bytes_out,
    );
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
