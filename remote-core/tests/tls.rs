//! The TLS transports (`tls://`, `wss://`): calls over them, certificate
//! verification both ways (mutual TLS), the verified identity reaching the
//! application, ALPN, and the handshake bounded by `handshake_timeout` in
//! the connection's own task. Certificates are made at run time (rcgen).

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pki::Ca;
use remote_core::{
    Connection, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle, TlsClientConfig,
    TlsServerConfig,
};
use support::{Calc, Counter, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;

/// A server on `addr` whose root objects are kept in the returned list, so
/// a test can reach (through an object the client gives them) the server's
/// side of each connection.
async fn serve(addr: &str, tls: TlsServerConfig, limits: Limits) -> (ServerHandle, Roots) {
    let roots: Roots = Arc::default();
    let r2 = roots.clone();
    let server = Server::builder()
        .limits(limits)
        .tls(tls)
        .bind(addr)
        .await
        .unwrap()
        .serve(move |_| {
            let c = Arc::new(Counter::new(0, Arc::new(Stats::default())));
            r2.lock().unwrap().push(c.clone());
            Remote::new(c as Arc<dyn Calc>)
        });
    (server, roots)
}

type Roots = Arc<Mutex<Vec<Arc<Counter>>>>;

fn server_tls(ca: &Ca) -> TlsServerConfig {
    let s = ca.server();
    TlsServerConfig::from_pem(s.cert_pem.as_bytes(), s.key_pem.as_bytes()).unwrap()
}

fn client_tls(ca: &Ca) -> TlsClientConfig {
    TlsClientConfig::new()
        .with_root_pem(ca.pem().as_bytes())
        .unwrap()
}

/// The server's connection to the client: the client hands the root an
/// object of its own, whose proxy on the server belongs to that connection.
async fn server_side(conn: &Connection, roots: &Roots) -> Connection {
    let root = conn.root::<dyn Calc>();
    root.keep(Counter::remote(1, Arc::new(Stats::default())))
        .await
        .unwrap();
    let kept = roots.lock().unwrap()[0]
        .kept
        .lock()
        .unwrap()
        .clone()
        .unwrap();
    kept.handle().unwrap().connection()
}

#[tokio::test]
async fn calls_over_tls_and_wss() {
    let ca = Ca::new("test CA");
    for addr in ["tls://127.0.0.1:0", "wss://127.0.0.1:0/calc"] {
        let (server, _) = serve(addr, server_tls(&ca), Limits::default()).await;
        let scheme = &addr[..addr.find(':').unwrap()];
        assert!(
            server
                .local_addr()
                .starts_with(&format!("{scheme}://127.0.0.1:")),
            "{}",
            server.local_addr()
        );
        let conn = ConnectionBuilder::new()
            .tls(client_tls(&ca))
            .connect(server.local_addr())
            .await
            .unwrap();
        let root = conn.root::<dyn Calc>();
        assert_eq!(root.add(40, 2).await.unwrap(), 42, "over {scheme}");
        // A callback the server calls back over the same TLS connection.
        let mine = Counter::remote(10, Arc::new(Stats::default()));
        assert_eq!(root.call_back(mine, 5).await.unwrap(), 16, "over {scheme}");
        // The client verified the server's certificate and can read it.
        let id = conn.tls_identity().expect("the server's verified identity");
        assert_eq!(id.common_name(), Some("test server"));
        assert_eq!(id.san_names(), ["localhost", "127.0.0.1"]);
        conn.close();
        server.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let (ca, other) = (Ca::new("test CA"), Ca::new("someone else's CA"));
    let (server, _) = serve("tls://127.0.0.1:0", server_tls(&ca), Limits::default()).await;
    let err = ConnectionBuilder::new()
        .tls(client_tls(&other))
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("TLS handshake with") && msg.contains("invalid peer certificate"),
        "{msg}"
    );
    // The right CA but a certificate for other names: checked against the
    // configured server name (here overriding the address's 127.0.0.1).
    let err = ConnectionBuilder::new()
        .tls(client_tls(&ca).server_name("elsewhere.example"))
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not valid for name \"elsewhere.example\""),
        "{err}"
    );
    let conn = ConnectionBuilder::new()
        .tls(client_tls(&ca).server_name("localhost"))
        .connect(server.local_addr())
        .await
        .unwrap();
    assert_eq!(conn.root::<dyn Calc>().add(1, 2).await.unwrap(), 3);
    // Without any roots the client refuses to connect at all, naming why.
    let err = ConnectionBuilder::new()
        .tls(TlsClientConfig::new())
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no trust roots"), "{err}");
    // And the named escape hatch connects, without claiming an identity.
    let conn = ConnectionBuilder::new()
        .tls(TlsClientConfig::new().danger_accept_any_server_cert())
        .connect(server.local_addr())
        .await
        .unwrap();
    assert_eq!(conn.root::<dyn Calc>().add(1, 2).await.unwrap(), 3);
    assert!(conn.tls_identity().is_none());
}

#[tokio::test]
async fn a_required_client_certificate_missing_or_foreign_is_refused() {
    let (ca, clients, other) = (Ca::new("test CA"), Ca::new("clients CA"), Ca::new("other"));
    let tls = server_tls(&ca)
        .require_client_cert_pem(clients.pem().as_bytes())
        .unwrap();
    let (server, _) = serve("tls://127.0.0.1:0", tls, Limits::default()).await;
    // No certificate: TLS 1.3 clients learn it from the server's alert.
    let err = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake(_)), "{err:?}");
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    // A certificate from a CA the server does not trust.
    let mallory = other.client("mallory");
    let err = ConnectionBuilder::new()
        .tls(
            client_tls(&ca)
                .with_client_cert_pem(mallory.cert_pem.as_bytes(), mallory.key_pem.as_bytes())
                .unwrap(),
        )
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownCA"), "{err}");
    assert!(
        support::eventually(60, || server.connections() == 0).await,
        "refused clients still counted"
    );
}

#[tokio::test]
async fn a_client_certificates_identity_reaches_the_server() {
    let (ca, clients) = (Ca::new("test CA"), Ca::new("clients CA"));
    for required in [true, false] {
        let tls = server_tls(&ca);
        let tls = if required {
            tls.require_client_cert_pem(clients.pem().as_bytes())
        } else {
            tls.allow_client_cert_pem(clients.pem().as_bytes())
        }
        .unwrap();
        let (server, roots) = serve("tls://127.0.0.1:0", tls, Limits::default()).await;
        let alice = clients.client("alice");
        let conn = ConnectionBuilder::new()
            .tls(
                client_tls(&ca)
                    .with_client_cert_pem(alice.cert_pem.as_bytes(), alice.key_pem.as_bytes())
                    .unwrap(),
            )
            .connect(server.local_addr())
            .await
            .unwrap();
        let theirs = server_side(&conn, &roots).await;
        let id = theirs
            .tls_identity()
            .expect("the client's verified identity");
        assert_eq!(id.common_name(), Some("alice"));
        assert!(id.subject().contains("CN=alice"), "{}", id.subject());
        assert_eq!(id.san_names(), ["alice.clients.test"]);
        // The fingerprint is that of the certificate alice presented.
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(alice.cert_pem.as_bytes()).unwrap();
        assert_eq!(id.certificate_der(), der.as_ref());
        assert_eq!(id.sha256_hex().len(), 64);
        assert!(
            theirs.peer().starts_with("tls://127.0.0.1:"),
            "{}",
            theirs.peer()
        );
        server.shutdown(Duration::from_secs(5)).await;
    }
    // Optional client certificates: a client without one is served, with
    // no identity.
    let tls = server_tls(&ca)
        .allow_client_cert_pem(clients.pem().as_bytes())
        .unwrap();
    let (server, roots) = serve("tls://127.0.0.1:0", tls, Limits::default()).await;
    let conn = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .connect(server.local_addr())
        .await
        .unwrap();
    assert!(server_side(&conn, &roots).await.tls_identity().is_none());
}

/// A raw rustls client offering `alpn` (none if empty).
async fn raw_client(
    ca: &Ca,
    addr: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr.trim_start_matches("tls://")).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    ca.raw_client(alpn).connect(name, tcp).await
}

#[tokio::test]
async fn alpn_remote_1_is_required() {
    let ca = Ca::new("test CA");
    let (server, _) = serve("tls://127.0.0.1:0", server_tls(&ca), Limits::default()).await;
    // Another protocol: refused inside the TLS handshake.
    let err = raw_client(&ca, server.local_addr(), &[b"h2"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
    // No ALPN at all: the handshake completes, then a goodbye says why.
    let mut s = raw_client(&ca, server.local_addr(), &[]).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("ALPN protocol \"remote/1\" required"),
        "{text:?}"
    );
    // Our client against a TLS server speaking another protocol (a wss://
    // server, whose ALPN is http/1.1) is refused too.
    let (wss, _) = serve("wss://127.0.0.1:0/", server_tls(&ca), Limits::default()).await;
    let authority = wss
        .local_addr()
        .trim_start_matches("wss://")
        .trim_end_matches('/');
    let err = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .connect(&format!("tls://{authority}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
}

/// A client that opens TCP and never starts its TLS handshake is cut at
/// `handshake_timeout`; meanwhile other clients connect and are served
/// (the handshake runs in each connection's own task, not the accept loop:
/// were it run there, the served client would have to wait until the
/// silent ones were cut).
#[tokio::test]
async fn a_silent_tls_client_is_cut_at_handshake_timeout_while_others_are_served() {
    let ca = Ca::new("test CA");
    let limit = Duration::from_secs(5);
    let limits = Limits {
        handshake_timeout: limit,
        ..Limits::default()
    };
    let (server, _) = serve("tls://127.0.0.1:0", server_tls(&ca), limits).await;
    let tcp_addr = server.local_addr().trim_start_matches("tls://").to_owned();
    let started = tokio::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(&tcp_addr).await.unwrap();
    // A second one that sends the start of a TLS record header, then stops.
    let mut partial = tokio::net::TcpStream::connect(&tcp_addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let conn = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .connect(server.local_addr())
        .await
        .unwrap();
    assert_eq!(conn.root::<dyn Calc>().add(2, 3).await.unwrap(), 5);
    // Served while both silent clients are still waiting to be cut.
    for s in [&silent, &partial] {
        let mut buf = [0u8; 1];
        let e = s.try_read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
    }
    for s in [&mut silent, &mut partial] {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
            .await
            .expect("the silent client was never cut off");
        // Closed (EOF or reset), never answered with protocol data.
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    assert!(started.elapsed() >= limit, "cut before handshake_timeout");
    // The served client is still fine.
    assert_eq!(conn.root::<dyn Calc>().add(3, 4).await.unwrap(), 7);
}

#[tokio::test]
async fn tls_addresses_need_a_configuration() {
    let err = Server::bind("tls://127.0.0.1:0").await.unwrap_err();
    assert!(err.to_string().contains("needs a certificate"), "{err}");
    let err = Connection::connect("tls://127.0.0.1:1").await.unwrap_err();
    assert!(err.to_string().contains("needs trust roots"), "{err}");
    let err = TlsServerConfig::from_pem(b"not pem", b"").unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    // A key that is not the certificate's.
    let ca = Ca::new("test CA");
    let (a, b) = (ca.server(), ca.server());
    let err = TlsServerConfig::from_pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("server certificate and key"),
        "{err}"
    );
}

/// What a client can make the server hold before its TLS handshake ends is
/// bounded: a ClientHello announcing 16 MiB is refused from its header at
/// once, not buffered until `handshake_timeout`.
#[tokio::test]
async fn an_oversized_tls_handshake_message_is_refused_from_its_header() {
    let ca = Ca::new("test CA");
    let limits = Limits {
        handshake_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let (server, _) = serve("tls://127.0.0.1:0", server_tls(&ca), limits).await;
    let mut s = tokio::net::TcpStream::connect(server.local_addr().trim_start_matches("tls://"))
        .await
        .unwrap();
    // A handshake record (type 22, 16 KiB) whose first message is a
    // ClientHello (type 1) of 0xffffff bytes; only its header is sent.
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    record.resize(5 + 0x4000, 0);
    s.write_all(&record).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut got)).await;
    assert!(
        r.is_ok(),
        "the server kept the connection waiting for 16 MiB"
    );
    // Whatever came back is at most a TLS alert record, never a hello.
    assert!(got.len() <= 7, "{got:?}");
}

/// A client over `max_connections_per_peer` on `tls://` is counted by its
/// IP address like over TCP, and learns why it was refused: the goodbye is
/// sent inside TLS.
#[tokio::test]
async fn a_refused_tls_client_reads_the_reason() {
    let ca = Ca::new("test CA");
    let limits = Limits {
        max_connections_per_peer: 1,
        ..Limits::default()
    };
    let (server, _) = serve("tls://127.0.0.1:0", server_tls(&ca), limits).await;
    let first = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .connect(server.local_addr())
        .await
        .unwrap();
    let err = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("limit exceeded: max_connections_per_peer = 1"),
        "{err}"
    );
    assert_eq!(first.root::<dyn Calc>().add(1, 1).await.unwrap(), 2);
}

/// Many callers on four workers over one TLS (and one WebSocket-over-TLS)
/// connection: the reader writes its batches' replies itself into the
/// rustls buffer (`driver/direct.rs`), the writer task the rest. A frame
/// left in the transport's buffer with nobody to flush it, or a wake-up
/// lost between the two writers, leaves a call without its reply (caught
/// by the bound); a release overtaking the reply that hands an object
/// back fails the call on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_over_tls_and_wss_all_get_their_replies() {
    let ca = Ca::new("test CA");
    for addr in ["tls://127.0.0.1:0", "wss://127.0.0.1:0/calc"] {
        let (server, _) = serve(addr, server_tls(&ca), Limits::default()).await;
        let conn = ConnectionBuilder::new()
            .tls(client_tls(&ca))
            .connect(server.local_addr())
            .await
            .unwrap();
        let root = conn.root::<dyn Calc>();
        let tasks: Vec<_> = (0..16i64)
            .map(|t| {
                let root = root.clone();
                tokio::spawn(async move {
                    for r in 0..12i64 {
                        assert_eq!(root.add(t, r).await.unwrap(), t + r);
                        let data = vec![t as u8; ((t * 7919 + r * 104_729) % 60_000) as usize];
                        assert_eq!(root.echo(data.clone()).await.unwrap(), data);
                        let mine = Counter::remote(10, Arc::new(Stats::default()));
                        assert_eq!(root.call_back(mine, 5).await.unwrap(), 16);
                        // The server's object handed back to it and
                        // returned: the copy we drop must not release it
                        // before the reply naming it is queued.
                        let obj = root.make().await.unwrap();
                        let want = obj.add(1, 2).await.unwrap();
                        let same = root.same(obj).await.unwrap();
                        assert_eq!(same.add(1, 2).await.unwrap(), want);
                    }
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("every call answered within 60 s")
                .unwrap();
        }
        assert!(!conn.is_closed(), "{addr}");
        assert!(
            support::eventually(60, || conn.exported_objects() == 0).await,
            "{addr}: the client still exports {}",
            conn.exported_objects()
        );
        conn.close();
        server.shutdown(Duration::from_secs(5)).await;
    }
}
