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
#[path = "support/sealed.rs"]
mod sealed;

use std::sync::Arc;

use counting::{live, measured};
use pki::Ca;
use remote_core::collections::SharedMap;
use remote_core::{Limits, ServerHandle, TlsServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
    let (mut tcp, mut sealer) = sealed::past_hellos(&authority, ca).await;
    match attack {
        Attack::Join => {
            let mut msg = vec![24u8, 0x00, 0xff, 0xff];
            msg.extend(vec![0u8; (63 << 10) - 4]);
            for chunk in msg.chunks(16 << 10) {
                let r = sealer.record(sealed::HANDSHAKE, chunk, 0);
                // The server may have cut it off already.
                if tcp.write_all(&r).await.is_err() {
                    break;
                }
            }
        }
        Attack::Straddle => {
            let mut out = sealer.record(sealed::DATA, &[0x00], 0);
            let mut msg = vec![24u8, 0x00, 0xff, 0xff];
            msg.extend(vec![0u8; (29 << 10) - 4]);
            for chunk in msg.chunks(16 << 10) {
                out.extend(sealer.record(sealed::HANDSHAKE, chunk, 0));
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
    noted::serve_tls(map, limits(), tls).await
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
