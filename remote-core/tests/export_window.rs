//! An object is the peer's to use once the message carrying its reference
//! is queued, not while that message is encoded: a reply that exports an
//! object and is then refused (too large, too deep, a later reference over
//! a limit, a `Serialize` error) hands the peer nothing. A red-team pass
//! called such an object by guessing its id (ids are given lowest free
//! first) while the reply was encoded: 109 calls reached it in one run.
//!
//! Here the reply's encode stops right after the reference is written,
//! until the peer has tried the id: deterministic, not a race.

#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use raw::{bounded, call, error_of, frame, id_of, kind, raw_with, HELLO, RETURN};
use remote_core::{remote, Error, Limits, Remote, Server, ServerHandle, Wire};
use serde::ser::{Error as _, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[remote]
pub trait Svc {
    /// A reply holding a fresh object, whose encode waits at `gate` after
    /// the reference and then fails.
    async fn gated(&self) -> Result<Gated, Error>;
    /// A fresh object, sent.
    async fn fresh(&self) -> Result<Remote<dyn Svc>, Error>;
    /// Cached: so a peer holding the object is pushed its invalidations.
    #[remote(cache(ttl = "1h"))]
    async fn whoami(&self) -> Result<String, Error>;
    /// A reply holding a fresh object, whose `Serialize` panics after the
    /// reference.
    async fn boom(&self) -> Result<Boom, Error>;
}

/// A value whose `Serialize` panics after writing a reference.
#[allow(missing_debug_implementations)]
pub struct Boom(Remote<dyn Svc>);

impl Serialize for Boom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0)?;
        panic!("Boom's Serialize panicked after writing a reference");
    }
}

impl<'de> Deserialize<'de> for Boom {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never sent"))
    }
}

impl Wire for Boom {}

/// The two ends the test holds of a gated encode: told when the reference
/// is written, and lets the encode go on.
struct Gate {
    written: mpsc::Sender<()>,
    go: mpsc::Receiver<()>,
}

/// A value whose encode writes a reference to `obj`, waits at its gate,
/// then fails (as a `Serialize` impl may).
#[allow(missing_debug_implementations)]
pub struct Gated {
    obj: Remote<dyn Svc>,
    gate: Mutex<Option<Gate>>,
}

impl Serialize for Gated {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.obj)?;
        if let Some(gate) = self.gate.lock().unwrap().take() {
            gate.written.send(()).unwrap();
            // Waits off the runtime: a worker blocked in place could hold
            // up the I/O and timer driver (another worker parked while this
            // one had it for a moment, and nothing drove it again: the
            // test hung, its own timeout never firing).
            tokio::task::block_in_place(|| {
                let _ = gate.go.recv();
            });
        }
        Err(S::Error::custom("refused after its reference was written"))
    }
}

impl<'de> Deserialize<'de> for Gated {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never sent"))
    }
}

impl Wire for Gated {}

struct Root {
    gates: Mutex<Option<Gate>>,
    made: Arc<AtomicUsize>,
    /// The last object made (not kept alive by this).
    last: Mutex<std::sync::Weak<dyn Svc>>,
}

/// Counts itself in `live` while it exists.
struct Secret(Arc<AtomicUsize>);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Root {
    fn secret(&self) -> Remote<dyn Svc> {
        self.made.fetch_add(1, SeqCst);
        let obj = Arc::new(Secret(self.made.clone())) as Arc<dyn Svc>;
        *self.last.lock().unwrap() = Arc::downgrade(&obj);
        Remote::new(obj)
    }
}

#[remote]
impl Svc for Root {
    async fn gated(&self) -> Result<Gated, Error> {
        // Runs on as a task (not in the reader), so the reader reads the
        // peer's calls while the reply is encoded.
        tokio::task::yield_now().await;
        Ok(Gated {
            obj: self.secret(),
            gate: Mutex::new(self.gates.lock().unwrap().take()),
        })
    }
    async fn fresh(&self) -> Result<Remote<dyn Svc>, Error> {
        Ok(self.secret())
    }
    async fn whoami(&self) -> Result<String, Error> {
        Ok("root".into())
    }
    async fn boom(&self) -> Result<Boom, Error> {
        Ok(Boom(self.secret()))
    }
}

#[remote]
impl Svc for Secret {
    async fn gated(&self) -> Result<Gated, Error> {
        Err(Error::Io("not here".into()))
    }
    async fn fresh(&self) -> Result<Remote<dyn Svc>, Error> {
        Err(Error::Io("not here".into()))
    }
    async fn whoami(&self) -> Result<String, Error> {
        Ok("secret".into())
    }
    async fn boom(&self) -> Result<Boom, Error> {
        Err(Error::Io("not here".into()))
    }
}

/// A server of `Root` (its `gated` reply waiting at `gate`) under
/// `limits`, the root, and a raw connection to it (that offered
/// invalidation).
async fn serve(
    gate: Option<Gate>,
    limits: Limits,
) -> (ServerHandle, Arc<Root>, (OwnedReadHalf, OwnedWriteHalf)) {
    let root = Arc::new(Root {
        gates: Mutex::new(gate),
        made: Arc::new(AtomicUsize::new(0)),
        last: Mutex::new(std::sync::Weak::<Secret>::new()),
    });
    let served = root.clone();
    let server = Server::builder()
        .limits(limits)
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Remote::new(served.clone() as Arc<dyn Svc>));
    // Offers invalidation, so the server pushes it (the last test).
    let mut raw = raw_with(&server, vec!["invalidate"]).await;
    assert_eq!(kind(&frame(&mut raw).await.unwrap()), HELLO);
    (server, root, raw.into_split())
}

/// A server of `Root` under `limits` (with a turn to run handlers besides
/// the one whose encode waits: the default on 2 cores is 1, and a call that
/// did reach the object would wait for the gate instead of being
/// answered), a raw connection to it, and call `id` of `gated` made: returns
/// once its reply's encode waits at the gate, with the sender that lets it
/// go on.
async fn serve_gated(
    limits: Limits,
    id: u32,
) -> (
    ServerHandle,
    Arc<Root>,
    (OwnedReadHalf, OwnedWriteHalf),
    mpsc::Sender<()>,
) {
    let (written, wait_written) = mpsc::channel();
    let (go, wait_go) = mpsc::channel();
    let gate = Gate {
        written,
        go: wait_go,
    };
    let limits = Limits {
        max_running_handlers: 4,
        ..limits
    };
    let (server, root, (r, mut w)) = serve(Some(gate), limits).await;
    w.write_all(&call(id, 0, "gated", 60_000, &[0x90]))
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || wait_written.recv().unwrap())
        .await
        .unwrap();
    (server, root, (r, w), go)
}

/// The reply to call `id`: `Ok(payload)` for a return, `Err(kind)` for an
/// error.
async fn reply_to(r: &mut OwnedReadHalf, id: u64) -> Result<Vec<u8>, String> {
    loop {
        let f = frame(r).await.expect("connection closed");
        match error_of(&f) {
            Some((got, kind, _)) if got == id => return Err(kind),
            None if kind(&f) == RETURN && id_of(&f) == id => return Ok(f),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_of_a_reply_refused_after_its_encode_began_is_never_the_peers() {
    bounded(async {
        let (server, root, (mut r, mut w), go) = serve_gated(Limits::default(), 10).await;
        let made = &root.made;
        assert_eq!(
            made.load(SeqCst),
            1,
            "the object exists, its reference written"
        );
        // Object 1 is exported (the first id), its message not yet queued:
        // neither callable nor releasable by the peer.
        w.write_all(&call(11, 1, "whoami", 60_000, &[0x90]))
            .await
            .unwrap();
        assert_eq!(
            reply_to(&mut r, 11).await.unwrap_err(),
            "unknown_object",
            "a call reached an object whose reply was not sent"
        );

        // The encode fails: the reply is an error, and the object is gone.
        go.send(()).unwrap();
        assert_eq!(reply_to(&mut r, 10).await.unwrap_err(), "encode");
        assert!(
            raw::eventually(|| made.load(SeqCst) == 0).await,
            "the object was dropped"
        );
        w.write_all(&call(12, 1, "whoami", 60_000, &[0x90]))
            .await
            .unwrap();
        assert_eq!(reply_to(&mut r, 12).await.unwrap_err(), "unknown_object");

        // An object of a reply that is sent is the peer's as the reply
        // arrives: a call made at once reaches it (id 1 again).
        w.write_all(&call(13, 0, "fresh", 60_000, &[0x90]))
            .await
            .unwrap();
        let sent = reply_to(&mut r, 13).await.unwrap();
        assert!(sent.ends_with(&[0xd6, 1, 0, 0, 0, 1]), "{sent:?}");
        w.write_all(&call(14, 1, "whoami", 60_000, &[0x90]))
            .await
            .unwrap();
        let who = reply_to(&mut r, 14).await.unwrap();
        assert!(who.ends_with(b"secret"), "{who:?}");
        // The raw peer goes first: the server's close then finds it gone
        // at once instead of waiting out the grace for its goodbye.
        drop((r, w));
        server.shutdown(std::time::Duration::from_secs(5)).await;
    })
    .await;
}

/// A reply whose `Serialize` panics after writing a reference gets an
/// error reply (it got none: the caller waited until its deadline), and
/// its object is dropped at once, its export slot free again (it was kept
/// until the connection closed, neither callable nor releasable: a peer
/// triggering such panics used up `max_exports`; found by a red-team pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_serialize_panics_is_answered_and_gives_its_objects_back() {
    bounded(async {
        let limits = Limits {
            max_exports: 2,
            ..Limits::default()
        };
        let (server, root, (mut r, mut w)) = serve(None, limits).await;
        let made = &root.made;
        // More panicking replies than `max_exports`: none keeps a slot.
        for id in 20..25 {
            w.write_all(&call(id, 0, "boom", 60_000, &[0x90]))
                .await
                .unwrap();
            assert_eq!(reply_to(&mut r, u64::from(id)).await.unwrap_err(), "encode");
            assert!(
                raw::eventually(|| made.load(SeqCst) == 0).await,
                "the object of panicking reply {id} was dropped"
            );
        }
        w.write_all(&call(30, 0, "fresh", 60_000, &[0x90]))
            .await
            .unwrap();
        let sent = reply_to(&mut r, 30).await.unwrap();
        assert!(sent.ends_with(&[0xd6, 1, 0, 0, 0, 1]), "{sent:?}");
        // The raw peer goes first: the server's close then finds it gone
        // at once instead of waiting out the grace for its goodbye.
        drop((r, w));
        server.shutdown(std::time::Duration::from_secs(5)).await;
    })
    .await;
}

/// An invalidation of an object whose reference is written but whose
/// message is not yet queued does not name it to the peer (its id, its
/// methods): the peer was not sent it, and may never be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_does_not_name_an_object_whose_message_is_not_queued() {
    bounded(async {
        let limits = Limits {
            // The raw peer acknowledges nothing: a push is waited for this
            // long.
            invalidation_ack_timeout: std::time::Duration::from_millis(50),
            ..Limits::default()
        };
        let (server, root, (mut r, mut w), go) = serve_gated(limits, 40).await;
        let unsent = root.last.lock().unwrap().upgrade().expect("made");
        let report = remote_core::cache::invalidate(&unsent, &["whoami"]).await;
        assert_eq!(report.notified, 0, "{report:?}");
        drop(unsent);
        go.send(()).unwrap();
        assert_eq!(reply_to(&mut r, 40).await.unwrap_err(), "encode");

        // An object that was sent is named.
        w.write_all(&call(41, 0, "fresh", 60_000, &[0x90]))
            .await
            .unwrap();
        reply_to(&mut r, 41).await.unwrap();
        let sent = root.last.lock().unwrap().upgrade().expect("sent");
        let report = remote_core::cache::invalidate(&sent, &["whoami"]).await;
        assert_eq!(report.notified, 1, "{report:?}");
        // The raw peer goes first: the server's close then finds it gone
        // at once instead of waiting out the grace for its goodbye.
        drop((r, w));
        server.shutdown(std::time::Duration::from_secs(5)).await;
    })
    .await;
}
