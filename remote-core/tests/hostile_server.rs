//! A hand-played server answering a `remote` client with replies no
//! conforming server sends: each closes the connection with a goodbye
//! naming the violation, and the client's call fails with it; nothing
//! hangs or panics.

#[path = "support/pipe.rs"]
mod pipe;

use std::sync::Arc;
use std::time::Duration;

use remote_core::{remote, Error, Limits, Remote};
use tokio::io::AsyncWriteExt;

#[remote]
pub trait Dir {
    /// Some object of the server's.
    async fn get(&self) -> Result<Remote<dyn Dir>, Error>;
}

/// What the client serves (nothing is called on it here).
struct Local;

#[remote]
impl Dir for Local {
    async fn get(&self) -> Result<Remote<dyn Dir>, Error> {
        Err(Error::Protocol("unused".into()))
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("within 30 s")
}

/// The server answers the client's `get` with `reply(call id)`: the
/// call fails with an error saying `why`, and the client closes the
/// connection with a goodbye saying it too.
async fn refused(reply: impl Fn(u8) -> Vec<u8>, why: &str) {
    let (conn, mut pr, mut pw) = pipe::raw_peer(
        Remote::new(Arc::new(Local) as Arc<dyn Dir>),
        Limits::default(),
        vec![],
    )
    .await;
    let _hello = pipe::frame(&mut pr).await.unwrap();
    let root = conn.root::<dyn Dir>();
    let got = tokio::spawn(async move { root.get().await });
    let call = bounded(pipe::frame(&mut pr)).await.unwrap();
    let id = pipe::head(&call).1.unwrap() as u8;
    pw.write_all(&frame(&reply(id))).await.unwrap();
    let e = bounded(got)
        .await
        .unwrap()
        .map(|_| ())
        .expect_err("the call fails");
    assert!(e.to_string().contains(why), "{e}");
    let mut goodbye = None;
    while let Some(f) = bounded(pipe::frame(&mut pr)).await {
        if pipe::kind(&f) == 6 {
            goodbye = Some(String::from_utf8_lossy(&f).into_owned());
        }
    }
    assert!(
        goodbye.as_ref().is_some_and(|g| g.contains(why)),
        "{goodbye:?}"
    );
    assert!(conn.is_closed());
}

#[tokio::test]
async fn replies_naming_what_the_client_never_sent_are_violations() {
    // A type-2 reference to an object the client never exported.
    refused(
        |id| vec![0x93, 0x02, id, 0xd6, 0x02, 0, 0, 0, 9],
        "protocol violation",
    )
    .await;
    // A reply to a call the client never made (besides the real one).
    refused(
        |id| vec![0x93, 0x02, id.wrapping_add(7), 0xc0],
        "neither waiting for a reply nor cancelled",
    )
    .await;
    // A type-1 reference to object 0.
    refused(
        |id| vec![0x93, 0x02, id, 0xd6, 0x01, 0, 0, 0, 0],
        "the root is never sent as a reference",
    )
    .await;
}

/// Object id `u32::MAX` names no object (PROTOCOL.md §4): the client uses
/// it for "a promise not yet resolved", so an object a server handed out
/// with that id could be called but never handed back (the client refused
/// to send it, saying it was a promise), and skipped the client's cache
/// (found by a red-team pass). A reference to it is a violation.
#[tokio::test]
async fn a_reference_to_the_reserved_object_id_is_a_violation() {
    refused(
        |id| vec![0x93, 0x02, id, 0xd6, 0x01, 0xff, 0xff, 0xff, 0xff],
        "a reference (ext type 1) to object 4294967295: that id names no object",
    )
    .await;
    // Beside a good reference, in a nested value.
    refused(
        |id| {
            let mut r = vec![0x93, 0x02, id, 0x92, 0xd6, 0x01, 0, 0, 0, 1];
            r.extend_from_slice(&[0x91, 0xd6, 0x01, 0xff, 0xff, 0xff, 0xff]);
            r
        },
        "to object 4294967295",
    )
    .await;
}
