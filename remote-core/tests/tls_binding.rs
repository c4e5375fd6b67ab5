//! TLS channel binding (PROTOCOL.md §7.1): on `tls://` and `wss://` the
//! authentication proofs cover the TLS session's RFC 9266 `tls-exporter`
//! value, so a man in the middle that terminates TLS on both sides (with a
//! certificate the client trusts) and relays the handshake verbatim is
//! refused: its two TLS sessions have different bindings.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::sync::Arc;
use std::time::Duration;

use pki::Ca;
use remote_core::auth::Key;
use remote_core::{
    ConnectionBuilder, Error, Server, ServerHandle, TlsClientConfig, TlsServerConfig,
};
use support::{Calc, Counter, Stats};
use tokio_rustls::rustls;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn server_tls(ca: &Ca) -> TlsServerConfig {
    let s = ca.server();
    TlsServerConfig::from_pem(s.cert_pem.as_bytes(), s.key_pem.as_bytes()).unwrap()
}

fn client_tls(ca: &Ca) -> TlsClientConfig {
    TlsClientConfig::new()
        .with_root_pem(ca.pem().as_bytes())
        .unwrap()
}

async fn serve(addr: &str, ca: &Ca, key: Option<Key>) -> ServerHandle {
    let b = Server::builder().tls(server_tls(ca));
    let b = match key {
        Some(k) => b.shared_secret(k),
        None => b,
    };
    b.bind(addr)
        .await
        .unwrap()
        .serve(|_| Counter::remote(0, Arc::new(Stats::default())))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A man in the middle on 127.0.0.1: it terminates the client's TLS with
/// its own certificate, issued by the CA the client trusts, opens its own
/// TLS session to `upstream` (`host:port`), and copies bytes both ways.
/// Returns its `tls://` address.
async fn relay(ca: &Ca, upstream: String) -> String {
    let cert = ca.server();
    let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let mut front = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    front.alpn_protocols = vec![b"remote/1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let mut back = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    back.alpn_protocols = vec![b"remote/1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(front));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(back));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tls://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        // A test makes at most a few connections.
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, connector, upstream) =
                (acceptor.clone(), connector.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut client_side) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(tcp) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let name = ServerName::try_from("localhost").unwrap();
                let Ok(mut server_side) = connector.connect(name, tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client_side, &mut server_side).await;
            });
        }
    });
    addr
}

fn key() -> Key {
    Key::new(*b"a shared secret of 32 bytes!!!!!")
}

#[tokio::test]
async fn authentication_over_tls_and_wss_binds_the_session_and_succeeds() {
    let ca = Ca::new("test CA");
    for addr in ["tls://127.0.0.1:0", "wss://127.0.0.1:0/calc"] {
        let server = serve(addr, &ca, Some(key())).await;
        let conn = ConnectionBuilder::new()
            .tls(client_tls(&ca))
            .credentials("ops", key())
            .connect(server.local_addr())
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert_eq!(conn.root::<dyn Calc>().add(2, 3).await.unwrap(), 5);
        server.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn a_relay_terminating_tls_on_both_sides_cannot_pass_authentication() {
    let ca = Ca::new("test CA");
    // Without authentication the relay is transparent: calls go through.
    let open = serve("tls://127.0.0.1:0", &ca, None).await;
    let mitm = relay(&ca, open.local_addr().trim_start_matches("tls://").into()).await;
    let conn = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .connect(&mitm)
        .await
        .unwrap();
    assert_eq!(conn.root::<dyn Calc>().add(1, 1).await.unwrap(), 2);

    // With it, the relayed handshake is refused: the server's proof covers
    // its TLS session with the relay, the client checks it against its own.
    let guarded = serve("tls://127.0.0.1:0", &ca, Some(key())).await;
    let mitm = relay(
        &ca,
        guarded.local_addr().trim_start_matches("tls://").into(),
    )
    .await;
    let err = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .credentials("ops", key())
        .connect(&mitm)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Handshake(m) if m.contains("did not prove it knows the key")),
        "{err}"
    );
    // The same client and key, connected directly, are served.
    let direct = ConnectionBuilder::new()
        .tls(client_tls(&ca))
        .credentials("ops", key())
        .connect(guarded.local_addr())
        .await
        .unwrap();
    assert_eq!(direct.root::<dyn Calc>().add(2, 2).await.unwrap(), 4);
}
