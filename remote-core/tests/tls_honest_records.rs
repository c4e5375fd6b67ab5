//! Honest TLS clients whose records are shaped unlike this crate's client
//! are served whole: what rustls holds of a `tls://` peer's input counts
//! in the memory budget, and a bound once put on it cut such clients off
//! (a red-team pass: a tokio-rustls client writing a record a frame, 300
//! small calls and a 16 KB one in one burst, was cut off in 3 runs of 3;
//! so was a padded record). Our own client merges frames into few records
//! and never showed it.
#![cfg(feature = "tls")]

#[path = "support/noted.rs"]
mod noted;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/sealed.rs"]
mod sealed;

use std::sync::Arc;

use pki::Ca;
use remote_core::collections::SharedMap;
use remote_core::{Limits, Server, ServerEvent, ServerHandle, TlsServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// A server of an empty map at `at` (`tls://` or `wss://`), noting why
/// each connection closed.
async fn server(ca: &Ca, at: &str) -> (ServerHandle, noted::Reasons, Arc<SharedMap<u32, String>>) {
    let issued = ca.server();
    let tls =
        TlsServerConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    let (map, reasons) = (SharedMap::new(), noted::Reasons::default());
    let (served, r) = (map.clone(), reasons.clone());
    let server = Server::builder()
        .limits(Limits {
            max_connections_per_peer: 64,
            ..Limits::default()
        })
        .on_event(move |e| {
            if let ServerEvent::Closed { reason, .. } = e {
                r.lock().unwrap().push(reason);
            }
        })
        .tls(tls)
        .bind(at)
        .await
        .unwrap()
        .serve(move |_| served.remote());
    (server, reasons, map)
}

/// `get(1)` as call `id`.
fn get(id: u32) -> Vec<u8> {
    raw::call(id, 0, "get", 60_000, &[0x91, 0x01])
}

/// `insert(key, "x" × len)` as call `id`.
fn insert(id: u32, key: u8, len: usize) -> Vec<u8> {
    assert!(key < 0x80);
    let mut args = vec![0x92, key, 0xdb];
    args.extend((len as u32).to_be_bytes());
    args.resize(args.len() + len, b'x');
    raw::call(id, 0, "insert", 60_000, &args)
}

/// Rounds of a 16 KB insert and `small` gets, `rounds` times, each call
/// its own frame.
fn rounds(rounds: u32, small: u32) -> Vec<Vec<u8>> {
    let mut frames = vec![];
    for round in 0..rounds {
        let base = round * (small + 1) + 1;
        frames.push(insert(base, 2, 16_000));
        frames.extend((1..=small).map(|i| get(base + i)));
    }
    frames
}

/// Asserts `server` still has its one connection and closed none.
fn none_closed(server: &ServerHandle, reasons: &noted::Reasons) {
    let reasons: Vec<String> = reasons
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        reasons.is_empty(),
        "an honest client was closed: {reasons:?}"
    );
    assert_eq!(server.connections(), 1);
}

/// A tokio-rustls client of `server` past its hello: `wss` upgrades first
/// (and offers no ALPN, as a browser's library may not).
async fn rustls_client(server: &ServerHandle, ca: &Ca, wss: bool) -> Box<dyn Stream> {
    let authority = server.local_addr().split("://").nth(1).unwrap();
    let tcp = TcpStream::connect(authority.trim_end_matches('/'))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    if wss {
        let tls = ca.raw_client(&[]).connect(name, tcp).await.unwrap();
        let mut s = raw::ws_upgrade(tls, "localhost").await;
        s.write_all(&raw::ws_binary(&raw::hello(vec![])))
            .await
            .unwrap();
        s.flush().await.unwrap();
        let (_, hello) = raw::ws_frame(&mut s).await.unwrap();
        assert_eq!(raw::kind(&hello[4..]), raw::HELLO);
        Box::new(s)
    } else {
        let mut tls = ca
            .raw_client(&[b"remote/1"])
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(&raw::hello(vec![])).await.unwrap();
        tls.flush().await.unwrap();
        assert_eq!(raw::kind(&raw::frame(&mut tls).await.unwrap()), raw::HELLO);
        Box::new(tls)
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// Writes each of `frames` in pieces of `piece` bytes, each piece its own
/// write and flush (so its own TLS record), never waiting for a reply;
/// asserts every call is answered with a value and nothing is closed.
async fn served_whole(wss: bool, frames: Vec<Vec<u8>>, piece: usize) {
    let ca = Ca::new("test ca");
    let at = if wss {
        "wss://127.0.0.1:0/"
    } else {
        "tls://127.0.0.1:0"
    };
    let (server, reasons, map) = server(&ca, at).await;
    let (mut rd, mut wr) = tokio::io::split(rustls_client(&server, &ca, wss).await);
    let calls = frames.len();
    let answers = tokio::spawn(async move {
        let mut returned = 0;
        while returned < calls {
            let frame = if wss {
                let (op, payload) = raw::ws_frame(&mut rd).await.expect("a binary message");
                assert_eq!(op, 2, "{:?}", String::from_utf8_lossy(&payload));
                payload[4..].to_vec()
            } else {
                raw::frame(&mut rd).await.expect("a reply")
            };
            assert_eq!(
                raw::kind(&frame),
                raw::RETURN,
                "{:?}",
                raw::error_of(&frame)
            );
            returned += 1;
        }
    });
    for frame in frames {
        let frame = if wss { raw::ws_binary(&frame) } else { frame };
        for piece in frame.chunks(piece) {
            wr.write_all(piece).await.unwrap();
            wr.flush().await.unwrap();
        }
    }
    raw::bounded(answers).await.unwrap();
    assert_eq!(map.snapshot()[&2].len(), 16_000);
    none_closed(&server, &reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_a_frame_over_tls() {
    served_whole(false, rounds(8, 300), usize::MAX).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_a_frame_over_wss() {
    served_whole(true, rounds(6, 400), usize::MAX).await;
}

/// Frames written a byte at a time, unbuffered: a record a byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_a_byte_over_tls() {
    let mut frames = rounds(1, 30);
    frames.push(insert(100, 3, 16_000));
    served_whole(false, frames, 1).await;
}

/// Records sealed by hand and sent in one write to a `tls://` server:
/// once the last call (an insert of key 9) has taken effect, every record
/// before it was read, and nothing may have been closed.
async fn one_burst(make: impl FnOnce(&mut sealed::Sealer) -> Vec<u8>) {
    let ca = Ca::new("test ca");
    let (server, reasons, map) = server(&ca, "tls://127.0.0.1:0").await;
    let authority = server
        .local_addr()
        .strip_prefix("tls://")
        .unwrap()
        .to_owned();
    let (mut tcp, mut sealer) = sealed::past_hellos(&authority, &ca).await;
    let mut burst = make(&mut sealer);
    burst.extend(sealer.records(&insert(10_000, 9, 16_000)));
    tcp.write_all(&burst).await.unwrap();
    assert!(
        raw::eventually(|| map.snapshot().contains_key(&9) || !reasons.lock().unwrap().is_empty())
            .await
    );
    none_closed(&server, &reasons);
    assert_eq!(map.snapshot()[&9].len(), 16_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_records_between_full_ones() {
    one_burst(|sealer| {
        let mut out = sealer.records(&insert(1, 2, 16_000));
        for id in 2..=301 {
            out.extend(sealer.record(sealed::DATA, &get(id), 0));
        }
        out
    })
    .await;
}

/// Padding is a traffic-analysis countermeasure RFC 8446 §5.4 allows: the
/// record holds far more than its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_records_then_full_ones() {
    one_burst(|sealer| {
        let mut out = sealer.record(sealed::DATA, &get(1), 8_000);
        for id in 2..=41 {
            out.extend(sealer.record(sealed::DATA, &get(id), 300));
        }
        out
    })
    .await;
}
