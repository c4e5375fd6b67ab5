//! What rustls holds of a `tls://` peer's input (a handshake message being
//! joined, part of a record: up to 128 KiB counted per connection, even
//! with the budget used up) keeps a pace while the budget is short, as a
//! frame's rest does: at least 32 KiB more per `pressure_stall_timeout`,
//! or the peer is closed and what it held goes to those waiting.
//! (Red-team pass 26: 40 peers of one address each having rustls join a
//! key update claiming 64 KiB held a 4 MiB budget, and 520 the default
//! one, until their idle timeout; honest heavy calls reached their
//! deadlines.)
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
use std::time::Duration;

use pki::Ca;
use remote_core::collections::{RemoteMap, SharedMap};
use remote_core::{ConnectionBuilder, Limits, ServerHandle, TlsClientConfig, TlsServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A peer past the TLS handshake and the hello that sends 63 KiB of a key
/// update claiming 0xffff bytes, in valid records, and nothing more.
async fn joiner(authority: &str, ca: &Ca) -> TcpStream {
    joining(authority, ca, None).await
}

/// A peer past the handshake and the hello that sends the length prefix
/// of a frame of `len` bytes (whose room it then waits for) and then 63
/// KiB of a key update claiming 0xffff bytes.
async fn reserve_then_join(authority: &str, ca: &Ca, len: u32) -> TcpStream {
    joining(authority, ca, Some(len)).await
}

/// A peer past the hello that sends the length prefix of a frame of
/// `prefix` bytes, if any, then 63 KiB of a key update claiming 0xffff
/// bytes, in valid records, and nothing more.
async fn joining(authority: &str, ca: &Ca, prefix: Option<u32>) -> TcpStream {
    let (mut tcp, mut sealer) = sealed::past_hellos(authority, ca).await;
    if let Some(len) = prefix {
        let r = sealer.record(sealed::DATA, &len.to_be_bytes(), 0);
        tcp.write_all(&r).await.unwrap();
    }
    let mut msg = vec![24u8, 0x00, 0xff, 0xff];
    msg.resize(63 << 10, 0);
    for chunk in msg.chunks(16 << 10) {
        let r = sealer.record(sealed::HANDSHAKE, chunk, 0);
        tcp.write_all(&r).await.unwrap();
    }
    tcp
}

/// An honest `tls://` client of `server` whose calls may wait 40 s
/// inserts a 900 KiB value: a call that needs room in the budget.
async fn honest_large_insert(server: &ServerHandle, ca: &Ca) {
    let port = authority(server).rsplit(':').next().unwrap().to_owned();
    let honest = ConnectionBuilder::new()
        .tls(
            TlsClientConfig::new()
                .with_root_pem(ca.pem().as_bytes())
                .unwrap(),
        )
        .limits(Limits {
            default_deadline: Duration::from_secs(40),
            ..Limits::default()
        })
        .connect(&format!("tls://localhost:{port}"))
        .await
        .unwrap();
    let root = honest.root::<dyn RemoteMap<u32, String>>();
    root.insert(1, "w".repeat(900 << 10)).await.unwrap();
}

/// A `tls://` server of `map` on a 4 MiB budget, judging paces after a
/// second, noting why each connection closed.
async fn server(ca: &Ca, map: Arc<SharedMap<u32, String>>) -> (ServerHandle, noted::Reasons) {
    let issued = ca.server();
    let tls =
        TlsServerConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    noted::serve_tls(map, noted::judged(4 << 20), tls).await
}

/// The server's `host:port`.
fn authority(server: &ServerHandle) -> String {
    server.local_addr().split("://").nth(1).unwrap().to_owned()
}

/// 40 joiners count about 5.4 MB, over the budget; an honest client's
/// heavy call gets their room, as they are closed for their pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peers_whose_input_rustls_holds_give_their_room_back() {
    raw::bounded(async {
        let ca = Ca::new("tls pressure ca");
        let (server, reasons) = server(&ca, SharedMap::new()).await;
        let authority = authority(&server);
        let mut peers = Vec::new();
        for _ in 0..40 {
            peers.push(joiner(&authority, &ca).await);
        }
        honest_large_insert(&server, &ca).await;
        assert!(noted::closed_for(&reasons, "pressure_stall_timeout") > 0);
        drop(peers);
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

/// What the count leaves of a read (a record's padding, or the overhead
/// of many small records, looks held: the count takes a read to add one
/// record's overhead) is not judged: a peer that sent a call in a record
/// padded by 3,000 bytes (RFC 8446 §5.4 allows it) and then waits is not
/// closed while joiners keep the budget short and are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_idle_after_a_padded_record_is_not_closed() {
    raw::bounded(async {
        let ca = Ca::new("tls pressure ca");
        let map = SharedMap::<u32, String>::new();
        let (server, reasons) = server(&ca, map.clone()).await;
        let authority = authority(&server);
        let (mut honest, mut sealer) = sealed::past_hellos(&authority, &ca).await;
        // `insert(9, "x")`, padded.
        let insert = raw::call(1, 0, "insert", 60_000, &[0x92, 0x09, 0xa1, b'x']);
        let record = sealer.record(sealed::DATA, &insert, 3_000);
        honest.write_all(&record).await.unwrap();
        assert!(raw::eventually(|| map.snapshot().contains_key(&9)).await);
        let mut peers = Vec::new();
        for _ in 0..40 {
            peers.push(joiner(&authority, &ca).await);
        }
        let closed = || noted::closed_for(&reasons, "pressure_stall_timeout");
        assert!(raw::eventually(|| closed() > 0).await);
        // Two more windows of the pace.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            server.connections(),
            1 + 40 - closed(),
            "the honest peer is open; only joiners were closed ({:?})",
            reasons.lock().unwrap()
        );
        drop((peers, honest));
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

/// While a frame waits for room, the TLS layer is not read through, so it
/// takes in nothing it could hold uncounted by a pace: peers that send a
/// 1 MiB frame's prefix (most of them then wait for room) and then a key
/// update claiming 64 KiB do not keep an honest heavy call from its room.
/// (Red-team pass 27: read through while waiting, rustls joined the key
/// update, counted 128 KiB per peer and unpaced, and 37 peers held a
/// 4 MiB budget until their idle timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peers_joining_while_their_frame_waits_hold_nothing() {
    raw::bounded(async {
        let ca = Ca::new("tls pressure ca");
        let (server, _reasons) = server(&ca, SharedMap::new()).await;
        let authority = authority(&server);
        let mut peers = Vec::new();
        for _ in 0..40 {
            peers.push(reserve_then_join(&authority, &ca, 1 << 20).await);
        }
        honest_large_insert(&server, &ca).await;
        drop(peers);
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
