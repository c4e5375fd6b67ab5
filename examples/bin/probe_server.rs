//! `probe-server ADDR`: serves `remote_examples::probe::Probe` on `ADDR`
//! (`tcp://127.0.0.1:0` picks a port) until its stdin closes, for the tests
//! of peers in other languages (`python/tests`). Prints
//! `probe server on ADDR` to stderr once listening.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use remote_core::auth::Key;
use remote_core::stream::RemoteStream;
use remote_core::{Error, Remote, Server};
use remote_examples::probe::{GreetError, Greeter, Probe, ProbeError, Tally};
use tokio::io::AsyncReadExt;

/// The root: counts the tallies it made that are still alive.
struct Root {
    live: Arc<AtomicU64>,
}

struct Counter {
    name: String,
    total: AtomicU64,
    live: Arc<AtomicU64>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[remote_core::remote]
impl Tally for Counter {
    async fn add(&self, n: i64) -> Result<i64, Error> {
        let total = self
            .total
            .fetch_add(n as u64, Ordering::SeqCst)
            .wrapping_add(n as u64);
        Ok(total as i64)
    }
    async fn name(&self) -> Result<String, Error> {
        Ok(self.name.clone())
    }
}

#[remote_core::remote]
impl Probe for Root {
    async fn tally(&self, name: String) -> Result<Remote<dyn Tally>, Error> {
        self.live.fetch_add(1, Ordering::SeqCst);
        let counter = Counter {
            name,
            total: AtomicU64::new(0),
            live: self.live.clone(),
        };
        Ok(Remote::new(Arc::new(counter) as Arc<dyn Tally>))
    }
    async fn live_tallies(&self) -> Result<u64, Error> {
        Ok(self.live.load(Ordering::SeqCst))
    }
    async fn check(&self, n: i64) -> Result<i64, ProbeError> {
        match n {
            n if n < 0 => Err(ProbeError::Negative(n)),
            n if n > 100 => Err(ProbeError::TooBig { limit: 100 }),
            n => Ok(n),
        }
    }
    async fn boom(&self, message: String) -> Result<(), Error> {
        if !message.is_empty() {
            panic!("{message}");
        }
        Ok(())
    }
    async fn count(&self, n: u32) -> Result<RemoteStream<u32>, Error> {
        Ok(RemoteStream::from_items(0..n))
    }
    async fn greet_via(&self, greeter: Remote<dyn Greeter>, name: String) -> Result<String, Error> {
        match greeter.greet(name).await {
            Ok(greeting) => Ok(greeting),
            Err(e @ GreetError::Refused { .. }) => Ok(format!("error: {e:?}")),
            Err(GreetError::Call(e)) => Err(Error::Io(e)),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or("tcp://127.0.0.1:0".into());
    let live = Arc::new(AtomicU64::new(0));
    // With PROBE_SHARED_SECRET set, clients must prove they hold it
    // (PROTOCOL.md §7.1; the Python runtime's authentication tests).
    let builder = match std::env::var("PROBE_SHARED_SECRET") {
        Ok(secret) => Server::builder().shared_secret(Key::new(secret.as_bytes())),
        Err(_) => Server::builder(),
    };
    let server = builder
        .bind(&addr)
        .await?
        .serve(move |_| Remote::new(Arc::new(Root { live: live.clone() }) as Arc<dyn Probe>));
    eprintln!("probe server on {}", server.local_addr());
    // Runs until the parent closes our stdin (or kills us).
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    server.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}
