//! A worker process: the parent spawns a child (this same program, run
//! with `--child`), which serves a `Worker` on its stdin/stdout; the parent
//! calls it, gets a capability from it, runs a blocking method from a
//! blocking thread, then hangs up and the child exits.
//!
//! The child's stdout is the protocol stream, so the child logs to stderr
//! only; the parent relays those lines into its transcript.

use std::process::Stdio;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_core::{ConnectionBuilder, Error, Remote};
use remote_examples::worker::{Counter, Worker};
use remote_examples::{say, Transcript};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// What the child serves.
struct Child;

#[remote_core::remote]
impl Worker for Child {
    async fn pid(&self) -> Result<u32, Error> {
        Ok(std::process::id())
    }

    async fn word_count(&self, text: String) -> Result<u64, Error> {
        Ok(text.split_whitespace().count() as u64)
    }

    async fn counter(&self, name: String) -> Result<Remote<dyn Counter>, Error> {
        eprintln!("worker: new counter {name:?}");
        Ok(Remote::new(Arc::new(NamedCounter {
            name,
            total: AtomicI64::new(0),
        })))
    }

    fn count_primes(&self, below: u64) -> Result<u64, Error> {
        eprintln!("worker: counting primes below {below} on a blocking thread");
        let is_prime = |n: u64| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
        Ok((0..below).filter(|&n| is_prime(n)).count() as u64)
    }
}

struct NamedCounter {
    name: String,
    total: AtomicI64,
}

#[remote_core::remote]
impl Counter for NamedCounter {
    async fn add(&self, n: i64) -> Result<i64, Error> {
        Ok(self.total.fetch_add(n, Ordering::SeqCst) + n)
    }

    async fn name(&self) -> Result<String, Error> {
        Ok(self.name.clone())
    }
}

/// The child: serves a `Worker` on stdin/stdout until the parent hangs up.
pub async fn child() -> remote_core::Result<()> {
    let worker: Remote<dyn Worker> = Remote::new(Arc::new(Child));
    let conn = ConnectionBuilder::new().serve(worker).stdio().await?;
    eprintln!("worker: serving on stdio (pid {})", std::process::id());
    let why = conn.closed().await;
    eprintln!("worker: parent hung up ({why}), exiting");
    Ok(())
}

/// The parent: spawns `cmd` (a program that runs [`child`]) and uses it.
pub async fn run(out: &Transcript, mut cmd: Command) -> remote_core::Result<()> {
    cmd.stderr(Stdio::piped());
    let (conn, mut process) = ConnectionBuilder::new().spawn_child(cmd).await?;
    let stderr = process.stderr.take().expect("stderr is piped");
    let relay_out = out.clone();
    let relay = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            say!(relay_out, "    (child stderr) {line}");
        }
    });
    say!(out, "parent: spawned {}", conn.peer());

    let worker = conn.root::<dyn Worker>();
    say!(out, "parent: worker.pid() = {}", worker.pid().await?);
    let text = "the quick brown fox jumps over the lazy dog";
    say!(
        out,
        "parent: worker.word_count({text:?}) = {}",
        worker.word_count(text.into()).await?
    );

    // A capability: an object living in the child, held and called by us.
    let visits = worker.counter("visits".into()).await?;
    visits.add(40).await?;
    let total = visits.add(2).await?;
    say!(
        out,
        "parent: counter {:?} total = {total}",
        visits.name().await?
    );
    say!(
        out,
        "parent: holding {} object(s) of the child",
        conn.imported_objects()
    );
    drop(visits);

    // A blocking method blocks its caller: call it from a blocking thread.
    // Here, on the async runtime, it refuses instead of deadlocking:
    if let Err(e) = worker.count_primes(10) {
        say!(out, "parent: on an async thread count_primes says: {e}");
    }
    let w = worker.clone();
    // (`remote_core::blocking::spawn_blocking` is tokio's, with blocking
    // remote calls allowed in the closure.)
    let primes = remote_core::blocking::spawn_blocking(move || w.count_primes(100_000))
        .await
        .map_err(|e| Error::Io(e.to_string()))??;
    say!(
        out,
        "parent: from spawn_blocking, count_primes(100000) = {primes}"
    );

    // Hang up; the child sees its connection close and exits.
    conn.close();
    let status = tokio::time::timeout(Duration::from_secs(30), process.wait())
        .await
        .map_err(|_| Error::Io("the child did not exit within 30 s".into()))??;
    let _ = tokio::time::timeout(Duration::from_secs(1), relay).await;
    say!(out, "parent: child exited with {status}");
    Ok(())
}

#[tokio::main]
async fn main() -> remote_core::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--child") {
        return child().await;
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--child");
    run(&Transcript::stdout(), cmd).await
}
