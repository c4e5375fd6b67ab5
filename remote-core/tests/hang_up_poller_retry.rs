//! The poller that watches waiting readers' sockets for a close
//! (`driver/input/hang_up.rs`) starts again after it could not start.
//!
//! The attack (a red-team pass): a peer uses up the server's descriptors
//! (connections up to the limit) just as the first reader of the process
//! waits for room, so the poller cannot start. Its failure was kept for
//! the life of the process: from then on no waiting reader was watched,
//! and every connection closed while its reader waited held its share of
//! the budget until its calls' deadlines. Now a failed start is tried
//! again at a later wait (at most once a second).
//!
//! This test uses up its own process's descriptors (its soft limit
//! lowered first) while the first readers wait, checks that the start
//! failed, frees them, and checks that a connection closed while its
//! reader waits is noticed. Alone in its binary: it starves the whole
//! process of descriptors for a moment.
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
        self.0.lock().unwrap().iter().any(|m| m.contains(part))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_starts_after_it_could_not() {
    let seen = Seen::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(seen.clone()))
        .unwrap();
    lower_fd_limit(512);
    bounded(async {
        let server = Server::builder()
            .limits(limits())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .serve(|_| Remote::new(Arc::new(Impl) as Arc<dyn Svc>));
        // More connections than fill the budget (`closed_while_waiting`
        // needs a few less), opened while there are descriptors.
        let mut conns = vec![];
        for _ in 0..24 {
            conns.push(raw::opened(&server).await);
        }
        let mut late = conns.pop().unwrap();
        assert!(eventually(|| server.connections() == conns.len() + 1).await);

        // Out of descriptors, the first readers of the process wait for
        // room: the poller cannot start.
        let hog = every_descriptor();
        let mut used = 0;
        while server.buffered_bytes() < BUDGET {
            let s = conns.get_mut(used).expect("the budget never filled");
            s.write_all(&asks(1 + used as u32 * CALLS)).await.unwrap();
            assert_eq!(kind(&raw::frame(s).await.expect("a callback")), CALL);
            used += 1;
        }
        let failed = eventually(|| seen.any("cannot start the poller")).await;
        assert!(failed, "the poller started with no descriptor free");
        drop(hog);

        // Past the time a failed start waits before it is tried again, a
        // reader that waits for room starts the poller.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        late.set_zero_linger().unwrap();
        late.write_all(&asks(1000)).await.unwrap();
        let started = eventually(|| seen.any("started the poller")).await;
        assert!(started, "the poller was not tried again");
        // Closed while its reader waits: noticed.
        drop::<TcpStream>(late);
        let closed = eventually(|| server.connections() == conns.len()).await;
        assert!(
            closed,
            "a connection closed while its reader waited is still open"
        );
    })
    .await;
}
