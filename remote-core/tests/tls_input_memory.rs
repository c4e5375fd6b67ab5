//! What a `tls://` peer sends past the TLS handshake that rustls holds
//! without handing data on counts in the memory budget, never more than
//! rustls can hold. A red-team pass had rustls join a post-handshake
//! handshake message of up to 64 KiB (a key update claiming 0xffff bytes,
//! sent in valid records, then a stall): about 61 KiB per such peer
//! outside the budget, for as long as it stayed; part of a record held
//! 37 KiB more than the same bytes over TCP; and a second pass sent data
//! and such a message in one burst (52 KB). Each is measured here against
//! peers holding as many bytes of a frame over plain TCP (whose reader
//! counts a frame's announced length), with a counting allocator.
#![cfg(feature = "tls")]

#[path = "support/counting.rs"]
mod counting;
#[path = "support/noted.rs"]
mod noted;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;

use counting::{live, measured};
use pki::Ca;
use remote_core::collections::SharedMap;
use remote_core::{Limits, Server, ServerHandle, TlsServerConfig};
use ring::aead;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ConnectionTrafficSecrets;

const CONNS: usize = 16;

/// What a peer sends after the hellos.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// A key update claiming 0xffff bytes, 63 KiB of it, in valid records.
    Join,
    /// A record header claiming 16,640 bytes, and 16,000 of them.
    Partial,
    /// A record of data (a frame's first byte) and, in the same write,
    /// 29 KiB of a key update claiming 0xffff bytes.
    Straddle,
}

/// A client whose traffic keys the test can take, to write records itself.
fn connector(ca: &Ca) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes());
    roots.add(der.unwrap()).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"remote/1".to_vec()];
    cfg.enable_secret_extraction = true;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One TLS 1.3 record (AES-128-GCM) of inner content type `typ`.
fn record(key: &aead::LessSafeKey, iv: &[u8; 12], seq: &mut u64, typ: u8, data: &[u8]) -> Vec<u8> {
    let mut inner = data.to_vec();
    inner.push(typ);
    let len = inner.len() + 16;
    let header = [0x17, 0x03, 0x03, (len >> 8) as u8, len as u8];
    let mut nonce = *iv;
    for (i, b) in seq.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    *seq += 1;
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(header),
        &mut inner,
    )
    .unwrap();
    let mut out = header.to_vec();
    out.extend(inner);
    out
}

/// A peer past the hellos that then sends `attack`'s bytes and stalls;
/// over plain TCP (`ca` `None`), a frame's prefix and as many bytes.
async fn peer(server: &ServerHandle, ca: Option<&Ca>, attack: Attack) -> TcpStream {
    let authority = server.local_addr().split("://").nth(1).unwrap().to_owned();
    let tcp = TcpStream::connect(&authority).await.unwrap();
    let Some(ca) = ca else {
        let mut s = tcp;
        s.write_all(&raw::hello(vec![])).await.unwrap();
        assert_eq!(raw::kind(&raw::frame(&mut s).await.unwrap()), raw::HELLO);
        let (claim, sent) = match attack {
            Attack::Join | Attack::Straddle => (0xffffu32, 63 << 10),
            Attack::Partial => (16640, 16000),
        };
        let mut b = claim.to_be_bytes().to_vec();
        b.extend(vec![0x90u8; sent]);
        s.write_all(&b).await.unwrap();
        return s;
    };
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector(ca).connect(name, tcp).await.unwrap();
    tls.write_all(&raw::hello(vec![])).await.unwrap();
    tls.flush().await.unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut tls).await.unwrap()), raw::HELLO);
    let (mut tcp, conn) = tls.into_inner();
    let (mut seq, traffic) = conn.dangerous_extract_secrets().unwrap().tx;
    let ConnectionTrafficSecrets::Aes128Gcm { key, iv } = traffic else {
        panic!("not AES-128-GCM")
    };
    let key = aead::UnboundKey::new(&aead::AES_128_GCM, key.as_ref()).unwrap();
    let key = aead::LessSafeKey::new(key);
    let iv: [u8; 12] = iv.as_ref().try_into().unwrap();
    match attack {
        Attack::Join => {
            let mut msg = vec![24u8, 0x00, 0xff, 0xff];
            msg.extend(vec![0u8; (63 << 10) - 4]);
            for chunk in msg.chunks(16 << 10) {
                let r = record(&key, &iv, &mut seq, 22, chunk);
                // The server may have cut it off already.
                if tcp.write_all(&r).await.is_err() {
                    break;
                }
            }
        }
        Attack::Straddle => {
            let mut out = record(&key, &iv, &mut seq, 23, &[0x00]);
            let mut msg = vec![24u8, 0x00, 0xff, 0xff];
            msg.extend(vec![0u8; (29 << 10) - 4]);
            for chunk in msg.chunks(16 << 10) {
                out.extend(record(&key, &iv, &mut seq, 22, chunk));
            }
            let _ = tcp.write_all(&out).await;
        }
        Attack::Partial => {
            let mut b = vec![0x17, 0x03, 0x03, 0x41, 0x00];
            b.extend(vec![0u8; 16000]);
            tcp.write_all(&b).await.unwrap();
        }
    }
    tcp
}

fn limits() -> Limits {
    Limits {
        max_connections_per_peer: 256,
        ..Limits::default()
    }
}

/// A `tls://` server of `map`, noting why each connection closed.
async fn tls_server(ca: &Ca, map: Arc<SharedMap<u32, String>>) -> (ServerHandle, noted::Reasons) {
    let issued = ca.server();
    let tls =
        TlsServerConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    let reasons = noted::Reasons::default();
    let r = reasons.clone();
    let server = Server::builder()
        .limits(limits())
        .on_event(move |e| {
            if let remote_core::ServerEvent::Closed { reason, .. } = e {
                r.lock().unwrap().push(reason);
            }
        })
        .tls(tls)
        .bind("tls://127.0.0.1:0")
        .await
        .unwrap()
        .serve(move |_| map.remote());
    (server, reasons)
}

/// What `attack` makes rustls hold (and the TCP reader count), at least.
fn held(attack: Attack) -> usize {
    match attack {
        Attack::Join => 60_000,
        Attack::Partial => 16_000,
        Attack::Straddle => 28_000,
    }
}

/// The heap held beyond what `server` counts, per connection, once
/// `CONNS` peers sent `attack`'s bytes (a frame's over TCP) and stalled.
async fn uncounted(server: ServerHandle, ca: Option<&Ca>, attack: Attack) -> isize {
    let warm = peer(&server, ca, attack).await;
    assert!(raw::eventually(|| server.buffered_bytes() >= held(attack)).await);
    let (counted, before) = (
        server.buffered_bytes(),
        live() - server.buffered_bytes() as isize,
    );
    let mut peers = vec![];
    for _ in 0..CONNS {
        peers.push(peer(&server, ca, attack).await);
    }
    // Each peer's bytes are counted once read: over TCP the frame's
    // reservation, over TLS what rustls holds of them.
    assert!(
        raw::eventually(|| server.buffered_bytes() >= counted + CONNS * held(attack)).await,
        "{} bytes counted for {CONNS} peers ({attack:?})",
        server.buffered_bytes() - counted
    );
    let per = (live() - server.buffered_bytes() as isize - before) / CONNS as isize;
    drop((peers, warm));
    server.shutdown(std::time::Duration::from_secs(5)).await;
    per
}

async fn compare(attack: Attack) {
    let map = SharedMap::<u32, String>::new();
    let (tcp_server, _) = noted::serve(map.clone(), limits(), "tcp://127.0.0.1:0").await;
    let tcp = uncounted(tcp_server, None, attack).await;
    let ca = Ca::new("test ca");
    let tls = uncounted(tls_server(&ca, map).await.0, Some(&ca), attack).await;
    // rustls's read buffer grows in steps beyond what it holds, and its
    // state.
    assert!(
        tls <= tcp + (28 << 10),
        "{attack:?}: {tls} bytes uncounted over tls://, {tcp} over tcp://"
    );
}

#[test]
fn part_of_a_record_counts_in_the_budget() {
    measured(compare(Attack::Partial));
}

#[test]
fn a_handshake_message_joined_past_the_handshake_counts_in_the_budget() {
    measured(compare(Attack::Join));
}

/// rustls reads on past a record of data while the socket has more: what
/// came with the data was once forgotten.
#[test]
fn a_handshake_message_sent_with_data_counts_in_the_budget() {
    measured(compare(Attack::Straddle));
}
