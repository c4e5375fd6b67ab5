//! Re-entrant calls: a callback object passed as an argument.
//!
//! The client calls `jobs.run(.., progress)`, passing its own
//! `Remote<dyn Progress>`. While that call is in flight, the server calls
//! `progress.step(..)` back in the client after every step, and the
//! client's callback calls the server again (`jobs.status()`) before
//! returning: a call inside a call inside a call, on one connection, in
//! both directions. The indentation of the transcript is the call depth.

use std::sync::{Arc, Mutex};

use remote_core::{Connection, Error, Remote, Server};
use remote_examples::callbacks::{Jobs, Progress};
use remote_examples::{say, Transcript};

/// The server's job runner (one per connection).
struct JobServer {
    out: Transcript,
    current: Mutex<String>,
}

#[remote_core::remote]
impl Jobs for JobServer {
    async fn run(
        &self,
        name: String,
        steps: u32,
        progress: Remote<dyn Progress>,
    ) -> Result<String, Error> {
        say!(self.out, "  server: run({name:?}, {steps}) starts");
        for done in 1..=steps {
            *self.current.lock().unwrap() = format!("{name}: {done}/{steps} done");
            say!(
                self.out,
                "  server: step {done} done, calling progress.step({done}, {steps})"
            );
            progress.step(done, steps).await?;
            say!(
                self.out,
                "  server: progress.step({done}, {steps}) returned"
            );
        }
        say!(self.out, "  server: run({name:?}) returns");
        Ok(format!("{name}: all {steps} steps done"))
    }

    async fn status(&self) -> Result<String, Error> {
        let status = self.current.lock().unwrap().clone();
        say!(self.out, "      server: status() = {status:?}");
        Ok(status)
    }
}

/// The client's callback: holds a proxy of the server to call it back.
struct ProgressBar {
    out: Transcript,
    server: Remote<dyn Jobs>,
}

#[remote_core::remote]
impl Progress for ProgressBar {
    async fn step(&self, done: u32, total: u32) -> Result<(), Error> {
        say!(
            self.out,
            "    client: progress.step({done}, {total}) -> calling server.status()"
        );
        let status = self.server.status().await?;
        say!(self.out, "    client: server.status() returned {status:?}");
        Ok(())
    }
}

/// The demo: a server and a client over TCP.
pub async fn run(out: &Transcript) -> remote_core::Result<String> {
    let server_out = out.clone();
    let server = Server::bind("tcp://127.0.0.1:0")
        .await?
        .serve(move |_| -> Remote<dyn Jobs> {
            Remote::new(Arc::new(JobServer {
                out: server_out.clone(),
                current: Mutex::new("idle".into()),
            }))
        });

    let jobs = Connection::connect(server.local_addr())
        .await?
        .root::<dyn Jobs>();
    let progress: Remote<dyn Progress> = Remote::new(Arc::new(ProgressBar {
        out: out.clone(),
        server: jobs.clone(),
    }));

    say!(out, "client: calling jobs.run(\"backup\", 3, progress)");
    let summary = jobs.run("backup".into(), 3, progress).await?;
    say!(out, "client: jobs.run returned {summary:?}");
    Ok(summary)
}

#[tokio::main]
async fn main() -> remote_core::Result<()> {
    run(&Transcript::stdout()).await.map(drop)
}
