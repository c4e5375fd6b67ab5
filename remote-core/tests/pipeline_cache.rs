//! Cached and invalidating methods (`#[remote(cache(..))]`,
//! `#[remote(invalidates(..))]`) called on a promise (PROTOCOL.md §3.10)
//! whose object is not known yet, against a hand-played server: without
//! the `pipeline` feature the call waits for the object like any other, and
//! with it, a write's reply arriving before the promise's own still drops
//! the object's cached results.

#[path = "support/raw.rs"]
mod raw;

use remote_core::proto::{encode, Reader, FEATURE_PIPELINE};
use remote_core::{remote, Connection, Error, Remote};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use raw::bounded;

#[remote]
pub trait Store {
    /// The value under `key`.
    #[remote(cache(ttl = "1h"))]
    async fn get(&self, key: String) -> Result<Option<String>, Error>;
    /// Writes `key`.
    #[remote(invalidates(get))]
    async fn put(&self, key: String, value: String) -> Result<(), Error>;
    /// The store of `user` (always object 1 here).
    async fn session(&self, user: String) -> Result<Remote<dyn Store>, Error>;
}

/// A call (kind 1 or 12) as `(kind, call id, target, method)`; the target
/// is `Err(call_id)` for a promise target `[call_id]`.
fn parse_call(f: &[u8]) -> (u64, u8, Result<u64, u64>, String) {
    let mut r = Reader::new(f);
    r.array_len().unwrap();
    let kind = r.uint().unwrap();
    let id = r.uint().unwrap();
    let mut peek = r.clone();
    let target = if matches!(peek.array_len(), Ok(1)) {
        r = peek;
        Err(r.uint().unwrap())
    } else {
        Ok(r.uint().unwrap())
    };
    let method = r.str().unwrap().to_owned();
    (kind, u8::try_from(id).unwrap(), target, method)
}

/// The next call (kind 1 or 12), skipping finishes and releases.
async fn next_call(s: &mut TcpStream) -> (u64, u8, Result<u64, u64>, String) {
    loop {
        let f = raw::frame(s).await.expect("a call");
        match raw::kind(&f) {
            1 | 12 => return parse_call(&f),
            4 | 13 => continue,
            other => panic!("unexpected message kind {other}"),
        }
    }
}

/// `[2, id, value]` with `value` raw msgpack.
fn reply(id: u8, value: &[u8]) -> Vec<u8> {
    assert!(id < 0x80);
    let mut f = encode::begin(16);
    f.extend_from_slice(&[0x93, 0x02, id]);
    f.extend_from_slice(value);
    encode::finish(&mut f);
    f
}

const OBJECT_1: [u8; 6] = [0xd6, 0x01, 0, 0, 0, 1];

fn text(s: &str) -> Vec<u8> {
    let mut v = vec![0xa0 | u8::try_from(s.len()).unwrap()];
    v.extend_from_slice(s.as_bytes());
    v
}

/// A server listing `features`, its hello exchanged.
async fn accept(listener: &TcpListener, features: Vec<&str>) -> TcpStream {
    let (mut s, _) = bounded(listener.accept()).await.unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
    s.write_all(&raw::hello(features)).await.unwrap();
    s
}

/// Without pipelining, a cached method called on a promise waits for the
/// object and then goes to its id, as an uncached one does (it used to
/// fail at once: "a call on a promise was made before its object was
/// known").
#[tokio::test]
async fn a_cached_method_on_a_promise_waits_for_the_object_without_pipelining() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let client = tokio::spawn(async move {
        let conn = Connection::connect(&addr).await.unwrap();
        let api = conn.root::<dyn Store>();
        let session = api.session_pipelined("u".into());
        let got = session.get("k".into()).await;
        drop((session, api));
        (conn, got)
    });
    let mut s = accept(&listener, vec![]).await;
    let (kind, id, target, method) = next_call(&mut s).await;
    assert_eq!((kind, target, method.as_str()), (1, Ok(0), "session"));
    s.write_all(&reply(id, &OBJECT_1)).await.unwrap();
    // The cached call, only now, to the object.
    let f = raw::frame(&mut s).await.expect("the get call");
    assert!(
        matches!(raw::kind(&f), 1 | 12),
        "a call, got kind {} (the client gave up on its call)",
        raw::kind(&f)
    );
    let (kind, id, target, method) = parse_call(&f);
    assert_eq!((kind, target, method.as_str()), (1, Ok(1), "get"));
    s.write_all(&reply(id, &text("v1"))).await.unwrap();
    let (_conn, got) = bounded(client).await.unwrap();
    assert_eq!(got.unwrap().as_deref(), Some("v1"));
}

/// A write pipelined on a promise whose reply arrives before the promise's
/// own (the serving side runs it as soon as the answer is set, possibly on
/// another thread than the one queuing the first reply) still drops the
/// object's cached results: a later read goes to the server.
#[tokio::test]
async fn a_pipelined_write_answered_before_its_promise_drops_the_cache() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let client = tokio::spawn(async move {
        let conn = Connection::connect(&addr).await.unwrap();
        let api = conn.root::<dyn Store>();
        let first = api.session("u".into()).await.unwrap();
        let before = first.get("k".into()).await.unwrap();
        let again = api.session_pipelined("u".into());
        again.put("k".into(), "v2".into()).await.unwrap();
        let after = first.get("k".into()).await.unwrap();
        drop((again, first, api));
        (conn, before, after)
    });
    let mut s = accept(&listener, vec![FEATURE_PIPELINE]).await;
    let (_, id, target, method) = next_call(&mut s).await;
    assert_eq!((target, method.as_str()), (Ok(0), "session"));
    s.write_all(&reply(id, &OBJECT_1)).await.unwrap();
    let (_, id, target, method) = next_call(&mut s).await;
    assert_eq!((target, method.as_str()), (Ok(1), "get"));
    s.write_all(&reply(id, &text("v1"))).await.unwrap();
    // The kept call, then the write addressed to its answer.
    let (kind, kept, target, method) = next_call(&mut s).await;
    assert_eq!((kind, target, method.as_str()), (12, Ok(0), "session"));
    let (kind, put, target, method) = next_call(&mut s).await;
    assert_eq!(
        (kind, target, method.as_str()),
        (1, Err(u64::from(kept)), "put")
    );
    // The write's reply first, then the promise's (object 1 again).
    let mut both = reply(put, &[0xc0]);
    both.extend(reply(kept, &OBJECT_1));
    s.write_all(&both).await.unwrap();
    // The read after the write is not served from the cache (the next
    // frame past the finish is the read, not the client's releases).
    let f = loop {
        let f = raw::frame(&mut s).await.expect("a frame after the write");
        if raw::kind(&f) != 13 {
            break f;
        }
    };
    assert!(
        matches!(raw::kind(&f), 1 | 12),
        "the read went to the server, got kind {} instead",
        raw::kind(&f)
    );
    let (_, id, target, method) = parse_call(&f);
    assert_eq!((target, method.as_str()), (Ok(1), "get"));
    s.write_all(&reply(id, &text("v2"))).await.unwrap();
    let (_conn, before, after) = bounded(client).await.unwrap();
    assert_eq!(before.as_deref(), Some("v1"));
    assert_eq!(after.as_deref(), Some("v2"), "not the stale cached read");
}
