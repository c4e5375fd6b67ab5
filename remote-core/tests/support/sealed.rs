//! A `tls://` peer past the hellos whose traffic keys the test holds, to
//! write TLS 1.3 records by hand (any content type, padding, any number
//! of records in one write). Included by
//! `#[path = "support/sealed.rs"] mod sealed;` beside `pki` and `raw`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use ring::aead;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ConnectionTrafficSecrets;

use super::pki::Ca;
use super::raw;

/// A TLS 1.3 record's inner content type: application data.
pub const DATA: u8 = 23;
/// A TLS 1.3 record's inner content type: a handshake message.
pub const HANDSHAKE: u8 = 22;

/// A client offering `remote/1` and only AES-128-GCM, whose traffic keys
/// can be taken.
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

/// The client's sending keys, sealing records in sequence.
pub struct Sealer {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Sealer {
    /// One record (AES-128-GCM) of inner content type `typ` holding
    /// `data` and `pad` zero bytes of padding (RFC 8446 §5.4).
    pub fn record(&mut self, typ: u8, data: &[u8], pad: usize) -> Vec<u8> {
        let mut inner = data.to_vec();
        inner.push(typ);
        inner.resize(inner.len() + pad, 0);
        let len = inner.len() + 16;
        let header = [0x17, 0x03, 0x03, (len >> 8) as u8, len as u8];
        let mut nonce = self.iv;
        for (i, b) in self.seq.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        self.seq += 1;
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(header),
                &mut inner,
            )
            .unwrap();
        let mut out = header.to_vec();
        out.extend(inner);
        out
    }

    /// `data` in full records of application data, one after another.
    pub fn records(&mut self, data: &[u8]) -> Vec<u8> {
        data.chunks(16 << 10)
            .flat_map(|chunk| self.record(DATA, chunk, 0))
            .collect()
    }
}

/// A connection to the `tls://` server at `authority` (`host:port`) past
/// the TLS handshake and both hellos: the socket, and the keys to write
/// the client's records on it.
pub async fn past_hellos(authority: &str, ca: &Ca) -> (TcpStream, Sealer) {
    let tcp = TcpStream::connect(authority).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector(ca).connect(name, tcp).await.unwrap();
    tls.write_all(&raw::hello(vec![])).await.unwrap();
    tls.flush().await.unwrap();
    assert_eq!(raw::kind(&raw::frame(&mut tls).await.unwrap()), raw::HELLO);
    let (tcp, conn) = tls.into_inner();
    let (seq, traffic) = conn.dangerous_extract_secrets().unwrap().tx;
    let ConnectionTrafficSecrets::Aes128Gcm { key, iv } = traffic else {
        panic!("not AES-128-GCM")
    };
    let key = aead::UnboundKey::new(&aead::AES_128_GCM, key.as_ref()).unwrap();
    let sealer = Sealer {
        key: aead::LessSafeKey::new(key),
        iv: iv.as_ref().try_into().unwrap(),
        seq,
    };
    (tcp, sealer)
}
