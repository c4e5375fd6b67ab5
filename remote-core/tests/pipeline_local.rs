//! Pipelined variants on a LOCAL object (PROTOCOL.md §3.10): code holding
//! a `Remote<dyn Files>` that may be local or a proxy calls
//! `open_pipelined` the same way. A local method that fails at once, or
//! that waits for something (a lock, I/O, a forwarded call), gives a usable
//! promise, never a panic: calls on it wait for the method's object and run
//! there, or fail with its error.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use remote_core::{remote, Connection, ConnectionBuilder, Error, Remote};
use tokio::sync::Notify;

use raw::{bounded, eventually};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum FsError {
    #[error("no file named {0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}
impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Other(e.to_string())
    }
}
impl remote_core::Wire for FsError {}

#[remote]
pub trait Files {
    /// A file, at once; `"missing"` fails at once.
    async fn open(&self, name: String) -> Result<Remote<dyn File>, FsError>;
    /// Waits for the test's gate, then opens (or fails for `"missing"`).
    async fn open_gated(&self, name: String) -> Result<Remote<dyn File>, FsError>;
}

#[remote]
pub trait File {
    async fn read(&self) -> Result<String, Error>;
    async fn child(&self, name: String) -> Result<Remote<dyn File>, Error>;
    /// A blocking method.
    fn size(&self) -> Result<u64, Error>;
}

/// Counts objects alive.
struct Live(Arc<AtomicIsize>);
impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

struct Disk {
    gate: Arc<Notify>,
    /// `open_gated` calls that started waiting for the gate.
    waiting: Arc<AtomicUsize>,
    live: Arc<AtomicIsize>,
    _me: Live,
}

struct Text {
    body: String,
    live: Live,
}

fn text(body: String, live: &Arc<AtomicIsize>) -> Remote<dyn File> {
    live.fetch_add(1, SeqCst);
    Remote::new(Arc::new(Text {
        body,
        live: Live(live.clone()),
    }))
}

#[remote]
impl Files for Disk {
    async fn open(&self, name: String) -> Result<Remote<dyn File>, FsError> {
        if name == "missing" {
            return Err(FsError::NotFound(name));
        }
        Ok(text(format!("contents of {name}"), &self.live))
    }
    async fn open_gated(&self, name: String) -> Result<Remote<dyn File>, FsError> {
        self.waiting.fetch_add(1, SeqCst);
        self.gate.notified().await;
        self.open(name).await
    }
}

#[remote]
impl File for Text {
    async fn read(&self) -> Result<String, Error> {
        Ok(self.body.clone())
    }
    async fn child(&self, name: String) -> Result<Remote<dyn File>, Error> {
        Ok(text(format!("{}/{name}", self.body), &self.live.0))
    }
    fn size(&self) -> Result<u64, Error> {
        Ok(self.body.len() as u64)
    }
}

/// Forwards `open` to another `Files` (a proxy, say): never done at once.
struct Forward(Remote<dyn Files>);

#[remote]
impl Files for Forward {
    async fn open(&self, name: String) -> Result<Remote<dyn File>, FsError> {
        self.0.open(name).await
    }
    async fn open_gated(&self, name: String) -> Result<Remote<dyn File>, FsError> {
        self.0.open_gated(name).await
    }
}

struct Local {
    files: Remote<dyn Files>,
    gate: Arc<Notify>,
    waiting: Arc<AtomicUsize>,
    /// Files and `Disk`s alive.
    live: Arc<AtomicIsize>,
}

fn local() -> Local {
    let (gate, waiting, live) = (
        Arc::default(),
        Arc::default(),
        Arc::new(AtomicIsize::new(1)),
    );
    let files: Remote<dyn Files> = Remote::new(Arc::new(Disk {
        gate: Arc::clone(&gate),
        waiting: Arc::clone(&waiting),
        live: Arc::clone(&live),
        _me: Live(Arc::clone(&live)),
    }));
    Local {
        files,
        gate,
        waiting,
        live,
    }
}

/// A local method that fails at once: the promise is failed with its
/// error (in each method's own error type), calls on it and pipelined
/// calls on those fail the same way.
#[tokio::test]
async fn a_local_call_that_fails_at_once_fails_every_call_on_its_promise() {
    let l = local();
    let file = l.files.open_pipelined("missing".into());
    assert!(!file.is_remote());
    assert_eq!(
        file.resolved().await.unwrap_err(),
        FsError::NotFound("missing".into())
    );
    let read = file.read().await.unwrap_err();
    assert!(read.to_string().contains("no file named missing"), "{read}");
    let size = file.size().unwrap_err();
    assert!(size.to_string().contains("no file named missing"), "{size}");
    let child = file.child_pipelined("a".into());
    let e = child.read().await.unwrap_err();
    assert!(e.to_string().contains("no file named missing"), "{e}");
    assert!(child.resolved().await.is_err());
    // Resolved at once, and again.
    assert_eq!(
        file.resolved().await.unwrap_err(),
        FsError::NotFound("missing".into())
    );
    assert!(format!("{file:?}").contains("failed"), "{file:?}");
}

/// A local method that waits (for a signal): calls on the promise made
/// before the signal complete after it, on the object it returned.
#[tokio::test]
async fn calls_on_a_waiting_local_call_run_once_it_returns() {
    let l = local();
    let file = l.files.open_gated_pipelined("x".into());
    let child = file.child_pipelined("y".into());
    let (f, c) = (file.clone(), child.clone());
    let reads = tokio::spawn(async move { (f.read().await, c.read().await) });
    // The method is waiting for the gate: nothing could have completed.
    assert!(eventually(|| l.waiting.load(SeqCst) == 1).await);
    assert!(!reads.is_finished());
    assert!(format!("{file:?}").contains("pending"), "{file:?}");
    l.gate.notify_one();
    let (read, child_read) = bounded(reads).await.unwrap();
    assert_eq!(read.unwrap(), "contents of x");
    assert_eq!(child_read.unwrap(), "contents of x/y");
    assert_eq!(
        file.resolved().await.unwrap().read().await.unwrap(),
        "contents of x"
    );
    assert_eq!(file.size().unwrap(), "contents of x".len() as u64);
    // The method ran once for all of them.
    assert_eq!(l.waiting.load(SeqCst), 1);
}

/// A local method that fails after waiting: calls on the promise fail
/// with its error, `resolved` gives it in its own type.
#[tokio::test]
async fn a_local_call_that_fails_after_waiting_fails_calls_on_its_promise() {
    let l = local();
    let file = l.files.open_gated_pipelined("missing".into());
    let f = file.clone();
    let read = tokio::spawn(async move { f.read().await });
    assert!(eventually(|| l.waiting.load(SeqCst) == 1).await);
    l.gate.notify_one();
    let e = bounded(read).await.unwrap().unwrap_err();
    assert!(e.to_string().contains("no file named missing"), "{e}");
    assert_eq!(
        bounded(file.resolved()).await.unwrap_err(),
        FsError::NotFound("missing".into())
    );
    assert!(file.size().is_err());
}

/// A blocking method on a promise still waiting: refused on a runtime
/// thread (it would block the runtime), waits on a plain thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_call_on_a_waiting_local_promise() {
    let l = local();
    let file = l.files.open_gated_pipelined("x".into());
    assert!(matches!(file.size(), Err(Error::BlockingInAsync)));
    let f = file.clone();
    let size = std::thread::spawn(move || f.size());
    assert!(eventually(|| l.waiting.load(SeqCst) == 1).await);
    l.gate.notify_one();
    let size = bounded(tokio::task::spawn_blocking(move || size.join())).await;
    assert_eq!(
        size.unwrap().unwrap().unwrap(),
        "contents of x".len() as u64
    );
}

/// Dropping the promises frees the objects: the file returned, the
/// source object, and a call never driven.
#[tokio::test]
async fn dropping_local_promises_frees_the_objects() {
    let l = local();
    let file = l.files.open_gated_pipelined("x".into());
    let child = file.child_pipelined("y".into());
    let c = child.clone();
    let read = tokio::spawn(async move { c.read().await });
    assert!(eventually(|| l.waiting.load(SeqCst) == 1).await);
    l.gate.notify_one();
    assert_eq!(bounded(read).await.unwrap().unwrap(), "contents of x/y");
    assert_eq!(l.live.load(SeqCst), 3, "the Disk, x and x/y");
    // Never awaited: the call is dropped with its promise.
    let pending = l.files.open_gated_pipelined("z".into());
    drop((file, child, pending));
    assert_eq!(l.live.load(SeqCst), 1, "only the Disk");
    assert_eq!(Arc::strong_count(l.files.as_arc()), 1);
    drop(l.files);
    assert_eq!(l.live.load(SeqCst), 0);
}

/// Generic code over a `Remote<dyn Files>` that is local but forwards to
/// a peer: the forwarded call is never done at once, and its error comes
/// from the peer.
#[tokio::test]
async fn a_local_object_forwarding_to_a_peer() {
    let l = local();
    let (client, _server) = Connection::pair(
        ConnectionBuilder::new(),
        ConnectionBuilder::new().serve(l.files.clone()),
    )
    .await
    .unwrap();
    let forward: Remote<dyn Files> = Remote::new(Arc::new(Forward(client.root::<dyn Files>())));
    let file = forward.open_pipelined("x".into());
    assert_eq!(bounded(file.read()).await.unwrap(), "contents of x");
    assert_eq!(
        bounded(file.child_pipelined("y".into()).read())
            .await
            .unwrap(),
        "contents of x/y"
    );
    let missing = forward.open_pipelined("missing".into());
    let e = bounded(missing.read()).await.unwrap_err();
    assert!(e.to_string().contains("no file named missing"), "{e}");
    assert_eq!(
        bounded(missing.resolved()).await.unwrap_err(),
        FsError::NotFound("missing".into())
    );
}

/// A promise made outside any runtime needs none: its call is driven by
/// whoever waits (a blocking method on this thread, an executor).
#[test]
fn a_local_promise_made_outside_a_runtime() {
    let l = local();
    let file = l.files.open_gated_pipelined("x".into());
    let gate = Arc::clone(&l.gate);
    let opener = std::thread::spawn(move || gate.notify_one());
    assert_eq!(file.size().unwrap(), "contents of x".len() as u64);
    opener.join().unwrap();
    let child = file.child_pipelined("y".into());
    assert_eq!(
        futures_executor::block_on(child.read()).unwrap(),
        "contents of x/y"
    );
}
