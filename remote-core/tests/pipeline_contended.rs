//! A pipelined call's reply arrives while a caller holds its promise's lock
//! (it is encoding a call on the promise, and an argument's `Serialize`
//! waits): the reader, which settles the promise, is not held up, so the
//! connection's other replies go on being delivered, and the promise is
//! settled once the lock is free.

#[path = "support/raw.rs"]
mod raw;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use raw::{bounded, eventually};
use remote_core::{remote, Connection, ConnectionBuilder, Error, Promise, Remote, Wire};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::Notify;

#[remote]
pub trait Files: Send + Sync {
    /// Waits for the test's gate, then opens.
    async fn open(&self) -> Result<Remote<dyn File>, Error>;
    async fn ping(&self) -> Result<u32, Error>;
}

#[remote]
pub trait File: Send + Sync {
    async fn put(&self, v: Slow) -> Result<u64, Error>;
}

struct Disk(Arc<Notify>);

#[remote]
impl Files for Disk {
    async fn open(&self) -> Result<Remote<dyn File>, Error> {
        self.0.notified().await;
        Ok(Remote::new(Arc::new(Doc) as Arc<dyn File>))
    }
    async fn ping(&self) -> Result<u32, Error> {
        Ok(1)
    }
}

struct Doc;

#[remote]
impl File for Doc {
    async fn put(&self, v: Slow) -> Result<u64, Error> {
        Ok(v.n)
    }
}

/// Blocks a thread until opened; opened when dropped too, so a failing
/// test does not leave a thread (and the runtime's shutdown) waiting.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(bool, bool)>, // (entered, open)
    cv: Condvar,
}

impl Gate {
    fn enter_and_wait(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn entered(&self) -> bool {
        self.state.lock().unwrap().0
    }
    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A number whose serializing waits at its gate (a thread blocked in user
/// code while the caller holds the promise's lock).
#[derive(Debug)]
pub struct Slow {
    n: u64,
    gate: Option<Arc<Gate>>,
    /// Panics once through the gate (a `Serialize` that fails by panicking
    /// with the promise's lock held).
    panics: bool,
}

impl Serialize for Slow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(g) = &self.gate {
            g.enter_and_wait();
        }
        assert!(!self.panics, "Slow panics as told");
        s.serialize_u64(self.n)
    }
}

impl Wire for Slow {}

impl<'de> Deserialize<'de> for Slow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Slow::plain(u64::deserialize(d)?))
    }
}

impl Slow {
    /// A number serialized at once.
    fn plain(n: u64) -> Slow {
        Slow {
            n,
            gate: None,
            panics: false,
        }
    }
}

/// A client connected to a server of [`Disk`], whose `open` waits for the
/// returned gate, and the promise of a pipelined `open`.
async fn promised() -> (
    Connection,
    Connection,
    Remote<dyn Files>,
    Promise<dyn File>,
    Arc<Notify>,
) {
    let open_gate = Arc::new(Notify::new());
    let files: Remote<dyn Files> = Remote::new(Arc::new(Disk(open_gate.clone())));
    let (client, server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(files),
    )
    .await
    .unwrap();
    let api = client.root::<dyn Files>();
    let file: Promise<dyn File> = api.handle().unwrap().pipeline("open", ());
    (client, server, api, file, open_gate)
}

/// A caller on its own thread encodes `put(7)` on `file`, whose argument's
/// `Serialize` waits at the returned gate (then panics if `panics`), with
/// the promise's lock held; returned once it waits there.
async fn held_by_a_caller(
    file: &Promise<dyn File>,
    panics: bool,
) -> (
    Arc<Gate>,
    OpenOnDrop,
    std::thread::JoinHandle<Result<u64, Error>>,
) {
    let slow = Arc::new(Gate::default());
    let open_on_drop = OpenOnDrop(slow.clone());
    let caller = {
        let (file, slow) = (file.clone(), slow.clone());
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            rt.block_on(file.put(Slow {
                n: 7,
                gate: Some(slow),
                panics,
            }))
        })
    };
    assert!(eventually(|| slow.entered()).await);
    (slow, open_on_drop, caller)
}

/// What the caller of [`held_by_a_caller`] returned (or its panic), once
/// its thread ends.
async fn joined(
    caller: std::thread::JoinHandle<Result<u64, Error>>,
) -> std::thread::Result<Result<u64, Error>> {
    bounded(tokio::task::spawn_blocking(move || caller.join()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_promise_whose_lock_is_held_does_not_hold_up_the_reader() {
    let (_client, server, api, file, open_gate) = promised().await;
    // A caller on its own thread encodes a call on the pending promise; its
    // argument's `Serialize` waits, with the promise's lock held.
    let (slow, _open_on_drop, caller) = held_by_a_caller(&file, false).await;

    // `open` returns: its reply reaches our reader before `ping`'s (the
    // server queued it first), while the promise's lock is held.
    open_gate.notify_one();
    assert!(eventually(|| server.stats().calls_finished == 1).await);
    let pinged = tokio::time::timeout(Duration::from_secs(20), api.ping()).await;
    assert!(
        matches!(pinged, Ok(Ok(1))),
        "the reader was held up by the promise's lock: {pinged:?}"
    );

    // The lock is freed: the call on the promise goes out, then the promise
    // settles (and finish follows the call).
    slow.open();
    let put = joined(caller).await.unwrap();
    assert_eq!(put.unwrap(), 7);
    assert!(bounded(file.resolved()).await.is_ok());
    assert_eq!(bounded(file.put(Slow::plain(8))).await.unwrap(), 8);
}

/// The connection's runtime shuts down while a caller on another runtime
/// holds the promise's lock: the reader's close fails the kept call, and
/// the promise must still settle (with the connection's loss) once the
/// lock is free. A task spawned on the dying runtime to settle it would be
/// dropped unrun, leaving `resolved()` waiting forever.
#[test]
fn a_promise_settles_when_its_runtime_shuts_down_while_its_lock_is_held() {
    let conn_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Two workers: one blocks in `Serialize`, the other drives the timers.
    let caller_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (client, server, _api, file, _open_gate) = conn_rt.block_on(promised());

    // A caller on the other runtime encodes a call on the pending promise;
    // its argument's `Serialize` waits, with the promise's lock held.
    let slow = Arc::new(Gate::default());
    let _open_on_drop = OpenOnDrop(slow.clone());
    let caller = {
        let (file, slow) = (file.clone(), slow.clone());
        caller_rt.spawn(async move {
            file.put(Slow {
                n: 7,
                gate: Some(slow),
                panics: false,
            })
            .await
        })
    };
    assert!(caller_rt.block_on(eventually(|| slow.entered())));

    // The connection's runtime goes: its reader task is dropped, which
    // closes the connection and fails the kept call while the lock is held.
    drop(conn_rt);
    assert!(caller_rt.block_on(eventually(|| client.is_closed())));
    slow.open();
    let put = caller_rt.block_on(bounded(caller)).unwrap();
    assert!(put.is_err(), "{put:?}");
    let resolved = caller_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), file.resolved()).await });
    assert!(
        matches!(resolved, Ok(Err(_))),
        "the promise was left pending: {resolved:?}"
    );
    drop((client, server));
}

/// The caller holding the promise's lock when the outcome arrives panics
/// in its argument's `Serialize`: the outcome it was handed is still
/// applied as the lock is released (while unwinding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_handed_to_a_caller_that_panics_is_still_applied() {
    let (_client, server, api, file, open_gate) = promised().await;
    let (slow, _open_on_drop, caller) = held_by_a_caller(&file, true).await;

    // `open`'s reply reaches our reader (before `ping`'s) while the lock is
    // held: its outcome is handed to the lock's holder.
    open_gate.notify_one();
    assert!(eventually(|| server.stats().calls_finished == 1).await);
    assert_eq!(bounded(api.ping()).await.unwrap(), 1);

    // The holder panics with the lock held (or its panic is caught and
    // its call fails): either way the promise settles.
    slow.open();
    let put = joined(caller).await;
    assert!(!matches!(put, Ok(Ok(_))), "{put:?}");
    assert!(bounded(file.resolved()).await.is_ok());
    assert_eq!(bounded(file.put(Slow::plain(8))).await.unwrap(), 8);
}

/// Formatting a promise while a caller holds its lock (encoding a call on
/// it, in user code) neither waits for that caller nor deadlocks: it says
/// the promise is in use, and its state once the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promise_whose_lock_is_held_formats_without_waiting() {
    let (_client, _server, _api, file, open_gate) = promised().await;
    assert!(format!("{file:?}").ends_with("(pending)"), "{file:?}");
    let (slow, _open_on_drop, caller) = held_by_a_caller(&file, false).await;

    // On its own thread: a formatting that waited for the lock would block
    // it (until the gate opens as the test ends), not this test's workers.
    let formatter = {
        let file = file.clone();
        std::thread::spawn(move || format!("{file:?}"))
    };
    assert!(
        eventually(|| formatter.is_finished()).await,
        "formatting waited for the caller holding the promise's lock"
    );
    let shown = formatter.join().unwrap();
    assert!(shown.ends_with("(in use)"), "{shown}");

    slow.open();
    open_gate.notify_one();
    let put = joined(caller).await.unwrap();
    assert_eq!(put.unwrap(), 7);
    assert!(bounded(file.resolved()).await.is_ok());
    assert!(format!("{file:?}").ends_with("(resolved)"), "{file:?}");
}
