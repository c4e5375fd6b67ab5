//! The poller that watches waiting readers' sockets for a close
//! (`driver/input/hang_up.rs`) is started as a server starts serving, and
//! a reader that could not have its socket watched tries again while it
//! waits.
//!
//! The attacks (red-team passes): a peer uses up the server's descriptors
//! (connections up to the limit) just as the first reader of the process
//! waits for room, so the poller cannot start. Its failure was kept for
//! the life of the process; then, retried by later waits, it still left
//! unwatched every reader that had begun waiting while it was down. Those
//! readers' peers fill the budget with calls whose handlers call them
//! back, and reset: the budget stayed held until the calls' deadlines.
//!
//! This test starves its own process of descriptors (its soft limit
//! lowered first) as its server starts serving and again as the readers
//! begin to wait, frees them, resets those readers' connections, and
//! checks that the server notices. Alone in its binary: it starves the
//! whole process for a moment.
#![cfg(target_os = "linux")]

#[path = "support/asks_back.rs"]
mod asks_back;
#[path = "support/raw.rs"]
mod raw;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asks_back::{asks, limits, Impl, Svc, BUDGET, CALLS};
use raw::{bounded, eventually, kind, CALL};
use remote_core::{Remote, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The messages of the events the hang-up watch traces.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn any(&self, part: &str) -> bool {
        self.count(part) > 0
    }

    fn count(&self, part: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(part))
            .count()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Seen {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target().contains("hang_up") {
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }
}

/// Lowers this process's soft limit on descriptors to `limit`.
fn lower_fd_limit(limit: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut r = getrlimit(Resource::Nofile);
    r.current = Some(r.current.map_or(limit, |c| c.min(limit)));
    setrlimit(Resource::Nofile, r).unwrap();
}

/// Opens `/dev/null` until the process is out of descriptors.
fn every_descriptor() -> Vec<std::fs::File> {
    let mut hog = vec![];
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                let emfile = rustix::io::Errno::MFILE.raw_os_error();
                assert_eq!(e.raw_os_error(), Some(emfile), "{e}");
                return hog;
            }
        }
    }
}

/// Waits for `cond` as `eventually` does, but for 20 s: within the
/// test's own bound, so that a failure says which step failed.
async fn soon(cond: impl FnMut() -> bool) -> bool {
    tokio::time::timeout(Duration::from_secs(20), eventually(cond))
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_begun_while_the_poller_could_not_start_are_watched_once_it_can() {
    let seen = Seen::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(seen.clone()))
        .unwrap();
    lower_fd_limit(512);
    bounded(async {
        // Out of descriptors but the listener's, the server starts
        // serving: it tries to start the poller, and cannot.
        let mut hog = every_descriptor();
        hog.pop();
        let serving = std::time::Instant::now();
        let server = Server::builder()
            .limits(limits())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Svc>));
        assert!(seen.any("cannot start the poller"), "no start tried");
        drop(hog);

        // More connections than fill the budget (`closed_while_waiting`
        // needs a few less), opened while there are descriptors.
        let mut conns = vec![];
        for _ in 0..24 {
            let s = raw::opened(&server).await;
            // Closed, it sends a reset whatever it has not read.
            s.set_zero_linger().unwrap();
            conns.push(s);
        }
        assert!(soon(|| server.connections() == conns.len()).await);

        // Out of descriptors again, readers begin to wait for room: the
        // poller still cannot start.
        let hog = every_descriptor();
        let mut used = 0;
        while server.buffered_bytes() < BUDGET {
            let s = conns.get_mut(used).expect("the budget never filled");
            s.write_all(&asks(1 + used as u32 * CALLS)).await.unwrap();
            assert_eq!(kind(&raw::frame(s).await.expect("a callback")), CALL);
            used += 1;
        }
        assert!(!seen.any("started the poller"), "started with no descriptor free");
        // Each waiting reader tries again every second, but a start is
        // tried at most once a second in all (each failure warns).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tries = seen.count("cannot start the poller");
        let most = serving.elapsed().as_secs() as usize + 2;
        assert!(tries <= most, "{tries} tries to start in {:?}", serving.elapsed());
        drop(hog);

        // Descriptors free, the waiting readers' connections reset: each
        // reader tries again, the poller starts, and the resets are seen.
        let waiting: Vec<TcpStream> = conns.drain(..used).collect();
        drop(waiting);
        let closed = soon(|| server.connections() == conns.len()).await;
        let (c, b) = (server.connections(), server.buffered_bytes());
        assert!(
            closed,
            "{} of {used} connections reset while their readers waited still open, {b} B of the budget held",
            c - conns.len()
        );
        assert!(seen.any("started the poller"));
        // (The idle connections' read buffers count too.)
        drop(conns);
        let freed = soon(|| server.buffered_bytes() == 0).await;
        assert!(freed, "{} B of the budget held", server.buffered_bytes());
    })
    .await;
}
