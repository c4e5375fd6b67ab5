//! Authentication without replay (PROTOCOL.md §7.1): the exchange is
//! re-implemented here from the document with `hmac` + `sha2`, and driven
//! over raw sockets to replay, relay and reflect proofs.

#[path = "support/raw.rs"]
mod raw;
mod support;

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hmac::{Hmac, Mac};
use raw::frame;
use remote_core::auth::Key;
use remote_core::proto::{encode, CallId, Hello, ObjectId, Reader};
use remote_core::{Connection, ConnectionBuilder, Server, ServerHandle};
use sha2::Sha256;
use support::{Calc, Counter, Stats};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &[u8; 32] = b"k3y of alice: 32 random bytes!!!";
const REFUSED: &str = "authentication failed: unknown user or wrong key";

/// A server where only `alice` holds `KEY`; its identity is her user id.
async fn server(stats: Arc<Stats>) -> ServerHandle {
    Server::builder()
        .authenticate(|user: &str| (user == "alice").then(|| (Key::new(KEY), 42u32)))
        .bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| Counter::remote(0, stats.clone()))
}

fn hello(auth: Option<&[u8]>) -> Vec<u8> {
    encode::hello(&Hello {
        min_version: 1,
        max_version: 1,
        features: vec![],
        auth,
    })
}

/// The `auth` slot offering credentials: `0x02 || nonce || user`.
fn credentials(nonce: &[u8; 32], user: &str) -> Vec<u8> {
    [&[2u8][..], nonce, user.as_bytes()].concat()
}

/// A proof as PROTOCOL.md §7.1 defines it.
fn proof(key: &[u8], role: &str, user: &str, cn: &[u8; 32], sn: &[u8; 32]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(b"remote auth v1\0");
    m.update(role.as_bytes());
    m.update(&[0, user.len() as u8]);
    m.update(user.as_bytes());
    m.update(cn);
    m.update(sn);
    m.update(&[0, 0]);
    m.finalize().into_bytes().into()
}

/// A proof frame: `[9, bin(32)]`.
fn proof_frame(p: &[u8; 32]) -> Vec<u8> {
    [&[0, 0, 0, 36, 0x92, 9, 0xc4, 32][..], p].concat()
}

/// The `auth` slot of a hello payload.
fn hello_slot(f: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new(f);
    assert_eq!(r.array_len().unwrap(), 6);
    assert_eq!(r.uint().unwrap(), 0, "not a hello");
    r.str().unwrap();
    r.uint().unwrap();
    r.uint().unwrap();
    for _ in 0..r.array_len().unwrap() {
        r.str().unwrap();
    }
    if r.nil().unwrap() {
        None
    } else {
        Some(r.bin().unwrap().to_vec())
    }
}

/// Reads until a goodbye (its reason) or the end of the stream.
async fn goodbye<R: AsyncRead + Unpin>(s: &mut R) -> Option<String> {
    while let Some(f) = frame(s).await {
        if f[1] == 6 {
            return Some(Reader::new(&f[2..]).str().unwrap().to_owned());
        }
    }
    None
}

/// A raw client that sent `hello(credentials)` and read the server's
/// nonce and proof.
struct Raw {
    s: TcpStream,
    server_nonce: [u8; 32],
    server_proof: [u8; 32],
}

async fn raw(server: &ServerHandle, user: &str, nonce: &[u8; 32]) -> Raw {
    let addr = server.local_addr().strip_prefix("tcp://").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello(Some(&credentials(nonce, user))))
        .await
        .unwrap();
    let slot = hello_slot(&frame(&mut s).await.unwrap()).expect("a challenge");
    assert_eq!((slot.len(), slot[0]), (33, 1), "challenge = 0x01 || nonce");
    let p = frame(&mut s).await.unwrap();
    assert_eq!(&p[..4], &[0x92, 9, 0xc4, 32], "a proof frame");
    Raw {
        s,
        server_nonce: slot[1..].try_into().unwrap(),
        server_proof: p[4..].try_into().unwrap(),
    }
}

/// A call to the root's `add(1, 2)`.
fn add_call() -> Vec<u8> {
    let mut f = encode::begin(32);
    encode::call_head(&mut f, CallId(0), ObjectId(0), "add", 10_000);
    f.extend_from_slice(&[0x92, 0x01, 0x02]);
    encode::finish(&mut f);
    f
}

#[tokio::test]
async fn the_documented_exchange_is_accepted_and_serves_calls() {
    // The control for the refusals below: the same raw client, with the
    // right proof, is served.
    let stats = Arc::new(Stats::default());
    let server = server(stats.clone()).await;
    let cn = [5u8; 32];
    let mut c = raw(&server, "alice", &cn).await;
    let sn = c.server_nonce;
    assert_eq!(c.server_proof, proof(KEY, "server", "alice", &cn, &sn));
    c.s.write_all(&proof_frame(&proof(KEY, "client", "alice", &cn, &sn)))
        .await
        .unwrap();
    c.s.write_all(&add_call()).await.unwrap();
    let reply = frame(&mut c.s).await.unwrap();
    assert_eq!(&reply[..3], &[0x93, 2, 0], "a return to call 0: {reply:?}");
    assert_eq!(reply[3], 3, "1 + 2");
}

#[tokio::test]
async fn a_captured_handshake_replayed_on_a_new_connection_is_refused() {
    let stats = Arc::new(Stats::default());
    let server = server(stats.clone()).await;
    // A real client's bytes to the server, captured.
    let addr = server.local_addr().strip_prefix("tcp://").unwrap();
    let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let c = ConnectionBuilder::new()
        .credentials("alice", Key::new(KEY))
        .over(r, Tap(w, sent.clone()), "tapped")
        .await
        .unwrap();
    assert_eq!(c.root::<dyn Calc>().add(1, 2).await.unwrap(), 3);
    let captured = sent.lock().unwrap().clone();
    let calls = stats.calls.load(Ordering::SeqCst);
    // Replayed byte for byte on a new connection: the server's nonce is new,
    // so the recorded proof does not verify.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&captured).await.unwrap();
    assert_eq!(goodbye(&mut s).await.as_deref(), Some(REFUSED));
    assert_eq!(stats.calls.load(Ordering::SeqCst), calls, "nothing served");
}

#[tokio::test]
async fn a_proof_relayed_from_another_connection_or_reflected_is_refused() {
    let stats = Arc::new(Stats::default());
    let server = server(stats.clone()).await;
    let cn = [9u8; 32];
    // Two connections with the same client nonce: B's server proof relayed
    // to A as A's client proof.
    let mut a = raw(&server, "alice", &cn).await;
    let b = raw(&server, "alice", &cn).await;
    a.s.write_all(&proof_frame(&b.server_proof)).await.unwrap();
    assert_eq!(goodbye(&mut a.s).await.as_deref(), Some(REFUSED));
    // A challenge relayed: connection D's client nonce is C's server
    // nonce, so D's server proof covers C's challenge, under another role
    // label and the other nonce order.
    let mut c = raw(&server, "alice", &cn).await;
    let d = raw(&server, "alice", &c.server_nonce).await;
    c.s.write_all(&proof_frame(&d.server_proof)).await.unwrap();
    assert_eq!(goodbye(&mut c.s).await.as_deref(), Some(REFUSED));
    // The server's own proof reflected back to it.
    let mut e = raw(&server, "alice", &cn).await;
    let reflected = e.server_proof;
    e.s.write_all(&proof_frame(&reflected)).await.unwrap();
    assert_eq!(goodbye(&mut e.s).await.as_deref(), Some(REFUSED));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wrong_key_and_an_unknown_user_get_the_same_refusal() {
    let server = server(Arc::new(Stats::default())).await;
    let cn = [1u8; 32];
    let mut reasons = Vec::new();
    for (user, key) in [("alice", &b"wrong"[..]), ("nobody", &KEY[..])] {
        let mut c = raw(&server, user, &cn).await;
        // Both get a proof frame (the unknown user one under a random
        // key), and the same refusal for their own proof.
        let sn = c.server_nonce;
        let real = c.server_proof == proof(KEY, "server", user, &cn, &sn);
        assert_eq!(real, user == "alice", "a real proof only for a known user");
        c.s.write_all(&proof_frame(&proof(key, "client", user, &cn, &sn)))
            .await
            .unwrap();
        reasons.push(goodbye(&mut c.s).await);
    }
    assert_eq!(
        reasons,
        [Some(REFUSED.to_owned()), Some(REFUSED.to_owned())]
    );
    // A real client sees the same error either way: the server's proof
    // does not verify, so it never sends its own.
    let mut errors = Vec::new();
    for (user, key) in [("alice", Key::new(b"wrong")), ("nobody", Key::new(KEY))] {
        let err = ConnectionBuilder::new()
            .credentials(user, key)
            .connect(server.local_addr())
            .await
            .unwrap_err();
        errors.push(err.to_string());
    }
    assert_eq!(errors[0], errors[1]);
    assert!(
        errors[0].contains("did not prove it knows the key"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn no_call_is_served_before_authentication_completes() {
    let stats = Arc::new(Stats::default());
    let server = server(stats.clone()).await;
    let addr = server.local_addr().strip_prefix("tcp://").unwrap();
    // A call to object 0 instead of the proof.
    let mut c = raw(&server, "alice", &[3u8; 32]).await;
    c.s.write_all(&add_call()).await.unwrap();
    assert_eq!(goodbye(&mut c.s).await.as_deref(), Some(REFUSED));
    // A call right after a hello without credentials.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[hello(None), add_call()].concat())
        .await
        .unwrap();
    let reason = goodbye(&mut s).await.unwrap();
    assert!(reason.contains("credentials required"), "{reason}");
    // An old-style bearer token in the hello.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[hello(Some(KEY)), add_call()].concat())
        .await
        .unwrap();
    let reason = goodbye(&mut s).await.unwrap();
    assert!(
        reason.contains("bearer tokens are no longer accepted"),
        "{reason}"
    );
    // Credentials whose user name is not UTF-8: the refusal says what a
    // hello's credentials must be (red-team pass 24 found it spoke of
    // bearer tokens only).
    let mut slot = vec![0x02];
    slot.extend_from_slice(&[9u8; 32]);
    slot.extend_from_slice(&[0xff, 0xfe]);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[hello(Some(&slot)), add_call()].concat())
        .await
        .unwrap();
    let reason = goodbye(&mut s).await.unwrap();
    assert!(
        reason.contains("user name of at most 255 bytes of UTF-8"),
        "{reason}"
    );
    assert_eq!(stats.calls.load(Ordering::SeqCst), 0, "no call was served");
}

#[tokio::test]
async fn the_key_never_appears_on_the_wire() {
    let key = b"\x01\x02secret-key-that-must-not-leak\x03";
    let (a, b) = tokio::io::duplex(64 << 10);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let (to_server, to_client) = (Arc::default(), Arc::default());
    let client = ConnectionBuilder::new().credentials("alice", Key::new(key));
    let server = ConnectionBuilder::new()
        .shared_secret(Key::new(key))
        .serve(Counter::remote(0, Arc::new(Stats::default())));
    let (c, _s) = tokio::join!(
        client.over(ar, Tap(aw, Arc::clone(&to_server)), "client"),
        server.over(br, Tap(bw, Arc::clone(&to_client)), "server"),
    );
    let c = c.unwrap();
    assert_eq!(c.root::<dyn Calc>().add(2, 2).await.unwrap(), 4);
    for bytes in [to_server.lock().unwrap(), to_client.lock().unwrap()] {
        // Any 8 consecutive bytes of the key would be a leak.
        for w in key.windows(8) {
            assert!(!bytes.windows(8).any(|b| b == w), "key bytes on the wire");
        }
    }
    // The capture works: the user name is there.
    assert!(to_server.lock().unwrap().windows(5).any(|b| b == b"alice"));
}

#[tokio::test]
async fn a_client_never_proves_itself_to_an_impostor() {
    // An impostor asks for credentials and sends a proof it cannot make.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let impostor = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(&hello(Some(&[&[1u8][..], &[0u8; 32]].concat())))
            .await
            .unwrap();
        s.write_all(&proof_frame(&[0u8; 32])).await.unwrap();
        let mut kinds = Vec::new();
        while let Some(f) = frame(&mut s).await {
            kinds.push(f[1]);
        }
        kinds
    });
    let err = ConnectionBuilder::new()
        .credentials("alice", Key::new(KEY))
        .connect(&addr)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not prove"), "{err}");
    // The impostor got a hello and a goodbye, never a proof (kind 9).
    assert_eq!(impostor.await.unwrap(), vec![0, 6]);
}

#[tokio::test]
async fn a_client_with_credentials_refuses_a_server_that_does_not_ask() {
    let server = Server::bind("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())));
    let err = ConnectionBuilder::new()
        .credentials("alice", Key::new(KEY))
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("did not send a challenge"),
        "{err}"
    );
    // And a client without credentials is refused by one that asks.
    let server = server_with_stats().await;
    let err = Connection::connect(server.local_addr()).await;
    let err = match err {
        Err(e) => e,
        Ok(c) => c.closed().await,
    };
    assert!(err.to_string().contains("requires credentials"), "{err}");
}

async fn server_with_stats() -> ServerHandle {
    server(Arc::new(Stats::default())).await
}

/// A writer that keeps a copy of everything written through it.
struct Tap<W>(W, Arc<Mutex<Vec<u8>>>);

impl<W: AsyncWrite + Unpin> AsyncWrite for Tap<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.1.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn the_exchange_runs_over_websocket_and_unix_sockets_too() {
    let dir = tempfile::tempdir().unwrap();
    let unix = format!("unix://{}", dir.path().join("auth.sock").display());
    for addr in ["ws://127.0.0.1:0/auth", unix.as_str()] {
        let server = Server::builder()
            .shared_secret(Key::new(KEY))
            .bind(addr)
            .await
            .unwrap()
            .serve(|_| Counter::remote(0, Arc::new(Stats::default())));
        let c = ConnectionBuilder::new()
            .credentials("anyone", Key::new(KEY))
            .connect(server.local_addr())
            .await
            .unwrap();
        assert_eq!(c.root::<dyn Calc>().add(2, 3).await.unwrap(), 5);
        let wrong = ConnectionBuilder::new()
            .credentials("anyone", Key::new(b"not the key"))
            .connect(server.local_addr())
            .await;
        assert!(wrong
            .unwrap_err()
            .to_string()
            .contains("authentication failed"));
    }
}
