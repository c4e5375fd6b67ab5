//! Shared pieces of the runnable examples: the interfaces they serve and
//! call (one module per example, so the tests and the policy checker see
//! them), and [`Transcript`], the line log every example prints through.
//!
//! The examples themselves are the files next to this one (`chat.rs`,
//! `callbacks.rs`, `worker.rs`, `collections.rs`, `inherent.rs`); run one
//! with `cargo run --example NAME`. See `README.md` here for the list.

#![warn(missing_docs)]

use std::fmt::Display;
use std::sync::{Arc, Mutex};

/// The lines an example prints, in order.
///
/// Clones share the same log, so callbacks running on other tasks can add
/// to it. [`Transcript::stdout`] also prints every line as it is added (what
/// the examples' `main` uses); [`Transcript::capture`] only records (what
/// the tests use, to assert on [`lines`](Transcript::lines)).
#[derive(Debug, Clone)]
pub struct Transcript {
    lines: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl Transcript {
    /// A transcript that prints each line to standard output.
    pub fn stdout() -> Self {
        Transcript {
            lines: Arc::default(),
            echo: true,
        }
    }

    /// A transcript that only records.
    pub fn capture() -> Self {
        Transcript {
            lines: Arc::default(),
            echo: false,
        }
    }

    /// Adds a line (printing it for a [`stdout`](Transcript::stdout) one).
    pub fn line(&self, line: impl Display) {
        let line = line.to_string();
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if self.echo {
            println!("{line}");
        }
        lines.push(line);
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `say!(transcript, "format {args}")`: adds a formatted line to a
/// [`Transcript`].
#[macro_export]
macro_rules! say {
    ($out:expr, $($fmt:tt)*) => {
        $out.line(::std::format!($($fmt)*))
    };
}

pub mod static_files;

// Its own file: the browser client (chat-web/) compiles the same source.
#[path = "chat_types.rs"]
pub mod chat;

pub mod callbacks {
    //! Interfaces of the `callbacks` example: a job server that reports
    //! progress to a callback object the caller passes in.

    use remote_core::{remote, Error, Remote};

    /// Runs jobs, reporting their progress.
    #[remote]
    pub trait Jobs {
        /// Runs job `name` of `steps` steps, calling `progress.step` after
        /// each one (while this call is still in flight); returns a summary.
        async fn run(
            &self,
            name: String,
            steps: u32,
            progress: Remote<dyn Progress>,
        ) -> Result<String, Error>;
        /// What the server is doing right now.
        async fn status(&self) -> Result<String, Error>;
    }

    /// Receives a job's progress (implemented by the caller of [`Jobs::run`]).
    #[remote]
    pub trait Progress {
        /// `done` of `total` steps are finished.
        async fn step(&self, done: u32, total: u32) -> Result<(), Error>;
    }
}

pub mod worker {
    //! Interfaces of the `worker` example: what a child process serves on
    //! its stdin/stdout.

    use remote_core::{remote, Error, Remote};

    /// A worker process.
    #[remote]
    pub trait Worker {
        /// The worker's process id.
        async fn pid(&self) -> Result<u32, Error>;
        /// Number of whitespace-separated words in `text`.
        async fn word_count(&self, text: String) -> Result<u64, Error>;
        /// A new counter living in the worker: a capability the caller
        /// holds and calls, kept alive in the worker while it does.
        async fn counter(&self, name: String) -> Result<Remote<dyn Counter>, Error>;
        /// CPU-bound work as a blocking method: the worker runs it on its
        /// blocking thread pool, and a caller's thread blocks until it is
        /// done. Returns how many primes are below `below`.
        fn count_primes(&self, below: u64) -> Result<u64, Error>;
    }

    /// A named counter.
    #[remote]
    pub trait Counter {
        /// Adds `n`; returns the new total.
        async fn add(&self, n: i64) -> Result<i64, Error>;
        /// The counter's name.
        async fn name(&self) -> Result<String, Error>;
    }
}

pub mod collections {
    //! Interface of the `collections` example: a scoreboard handing out a
    //! shared map, a shared list and a lazily produced stream.

    use remote_core::collections::{RemoteList, RemoteMap};
    use remote_core::stream::RemoteStream;
    use remote_core::{remote, Error, Remote};

    /// A game's shared state.
    #[remote]
    pub trait Board {
        /// Points per player, shared by every client.
        async fn scores(&self) -> Result<Remote<dyn RemoteMap<String, i64>>, Error>;
        /// The game's event log, shared by every client.
        async fn log(&self) -> Result<Remote<dyn RemoteList<String>>, Error>;
        /// The squares of `0..n`, produced only as the caller pulls them.
        async fn squares(&self, n: u64) -> Result<RemoteStream<u64>, Error>;
    }
}

pub mod inherent {
    //! The `inherent` example's server: a plain type whose `#[remote]`
    //! inherent impl becomes the interface `NotebookRemote` (proxy:
    //! `NotebookClient`), rpyc-style, without writing a trait.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use remote_core::{remote, Error};

    /// Notes by title.
    #[derive(Debug, Default)]
    pub struct Notebook {
        notes: Mutex<BTreeMap<String, String>>,
    }

    #[remote]
    impl Notebook {
        /// Writes a note; returns whether it replaced one.
        pub async fn write(&self, title: String, body: String) -> Result<bool, Error> {
            Ok(self.notes().insert(title, body).is_some())
        }

        /// The note called `title`.
        pub async fn read(&self, title: String) -> Result<Option<String>, Error> {
            Ok(self.notes().get(&title).cloned())
        }

        /// Every title, sorted.
        pub async fn titles(&self) -> Result<Vec<String>, Error> {
            Ok(self.notes().keys().cloned().collect())
        }

        /// Words in all notes (a blocking method: plain `fn`).
        pub fn words(&self) -> Result<u64, Error> {
            Ok(self
                .notes()
                .values()
                .map(|b| b.split_whitespace().count() as u64)
                .sum())
        }

        /// Local only: not part of the remote interface.
        #[remote(skip)]
        pub fn clear(&self) {
            self.notes().clear();
        }
    }

    // Helpers may live in a plain impl block too; in a `#[remote]` one, only
    // `pub` methods are exposed, so a private helper would stay local as well.
    impl Notebook {
        fn notes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
            self.notes.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

pub mod probe {
    //! Interfaces for testing peers written in other languages (the Python
    //! runtime in `python/`): `Probe` is served by the test-only
    //! `probe-server` binary (`bin/probe_server.rs`), `Greeter` by a Python
    //! peer that Rust calls.

    use remote_core::stream::RemoteStream;
    use remote_core::{remote, Error, Remote, Wire};

    /// A typed application error of [`Probe::check`].
    #[derive(Debug, Clone, PartialEq, Eq, Wire, thiserror::Error)]
    pub enum ProbeError {
        /// The input was negative.
        #[error("negative input: {0}")]
        Negative(i64),
        /// The input was over `limit`.
        #[error("at most {limit} is allowed")]
        TooBig {
            /// The largest input allowed.
            limit: i64,
        },
        /// The call itself failed.
        #[error("{0}")]
        Call(String),
    }

    impl From<Error> for ProbeError {
        fn from(e: Error) -> Self {
            ProbeError::Call(e.to_string())
        }
    }

    /// The test server's root.
    #[remote]
    pub trait Probe {
        /// A new tally living in the server: a capability.
        async fn tally(&self, name: String) -> Result<Remote<dyn Tally>, Error>;
        /// How many tallies are alive in the server (released ones are not).
        async fn live_tallies(&self) -> Result<u64, Error>;
        /// `n` back if it is in `0..=100`, else a typed error.
        async fn check(&self, n: i64) -> Result<i64, ProbeError>;
        /// Panics with `message` (an empty one returns): a remote `panic`
        /// error with its backtrace.
        async fn boom(&self, message: String) -> Result<(), Error>;
        /// The stream `0..n`.
        async fn count(&self, n: u32) -> Result<RemoteStream<u32>, Error>;
        /// Calls `greeter.greet(name)` back; returns its greeting, or
        /// `error: ` and the typed error it returned, as Rust sees it.
        async fn greet_via(
            &self,
            greeter: Remote<dyn Greeter>,
            name: String,
        ) -> Result<String, Error>;
    }

    /// A named counter living in the server.
    #[remote]
    pub trait Tally {
        /// Adds `n`; returns the new total.
        async fn add(&self, n: i64) -> Result<i64, Error>;
        /// The tally's name.
        async fn name(&self) -> Result<String, Error>;
    }

    /// A typed application error of [`Greeter::greet`], raised in Python.
    #[derive(Debug, Clone, PartialEq, Eq, Wire, thiserror::Error)]
    pub enum GreetError {
        /// The greeter will not greet this name.
        #[error("refusing to greet {name:?}")]
        Refused {
            /// The name refused.
            name: String,
        },
        /// The call itself failed.
        #[error("{0}")]
        Call(String),
    }

    impl From<Error> for GreetError {
        fn from(e: Error) -> Self {
            GreetError::Call(e.to_string())
        }
    }

    /// Served by a Python peer (`python/tests/greeter_child.py`), called
    /// from Rust.
    #[remote]
    pub trait Greeter {
        /// A greeting for `name`, or [`GreetError::Refused`].
        async fn greet(&self, name: String) -> Result<String, GreetError>;
        /// `a + b`.
        async fn add(&self, a: i64, b: i64) -> Result<i64, Error>;
        /// Calls `tally.add(n)` back (a Rust object called from Python) and
        /// returns its result; the tally is released when done.
        async fn use_tally(&self, tally: Remote<dyn Tally>, n: i64) -> Result<i64, Error>;
        /// A Python exception that is not a typed error: a `panic` error
        /// carrying the Python traceback.
        async fn fail(&self) -> Result<(), Error>;
    }
}
