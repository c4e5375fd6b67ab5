//! TLS configuration for `tls://` and `wss://` addresses: the server's
//! certificate and optional client-certificate check ([`TlsServerConfig`]),
//! the client's trust roots and optional certificate ([`TlsClientConfig`]).
//!
//! Choices, the same on both sides:
//! - **TLS 1.3 only.** Every maintained TLS stack speaks it (OpenSSL since
//!   1.1.1, browsers since 2018); it always has forward secrecy, no
//!   renegotiation, and encrypts the certificates, so a client's identity
//!   is not visible to an eavesdropper. A protocol this new has no legacy
//!   peers that would need TLS 1.2.
//! - **No 0-RTT.** Early data can be replayed by anyone who recorded it;
//!   a server never accepts it and a client never sends it.
//! - **ALPN `remote/1`** ([`ALPN`]) on `tls://`, required by both sides: a
//!   client that offers another protocol is refused by the TLS handshake
//!   itself (`no_application_protocol` alert), one that offers none gets a
//!   goodbye naming the requirement. `wss://` is HTTP/1.1 underneath, so
//!   it uses `http/1.1` as browsers and proxies expect.
//! - **rustls with the *ring* provider**, selected explicitly (not the
//!   process-wide default), so another crate choosing a provider cannot
//!   change or break these connections.
//! - **No unverified mode** except the one named
//!   [`TlsClientConfig::danger_accept_any_server_cert`].
//!
//! # TLS in a few lines
//!
//! A server with a certificate that requires client certificates from its
//! own CA, and reads who called:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use remote_core::{remote, Error, Remote};
//! # #[remote] pub trait Hello { async fn hi(&self) -> Result<String, Error>; }
//! # #[derive(Default)] struct H;
//! # #[remote] impl Hello for H { async fn hi(&self) -> Result<String, Error> { Ok("hi".into()) } }
//! use remote_core::{ConnectionBuilder, Server, TlsClientConfig, TlsServerConfig};
//!
//! # async fn demo() -> Result<(), Error> {
//! let tls = TlsServerConfig::from_pem_files("server.crt", "server.key")?
//!     .require_client_cert_pem(&std::fs::read("clients-ca.crt")?)?;
//! let server = Server::builder()
//!     .tls(tls)
//!     .bind("tls://0.0.0.0:7443") // or "wss://0.0.0.0:7443/path"
//!     .await?
//!     .serve(|_| Remote::new(Arc::new(H) as Arc<dyn Hello>));
//!
//! // A client trusting the server's CA and presenting its certificate.
//! let tls = TlsClientConfig::new()
//!     .with_root_pem_file("ca.crt")?
//!     .with_client_cert_pem_files("alice.crt", "alice.key")?;
//! let conn = ConnectionBuilder::new()
//!     .tls(tls)
//!     .connect("tls://server.example:7443")
//!     .await?;
//! let hello = conn.root::<dyn Hello>();
//! assert_eq!(hello.hi().await?, "hi");
//! # drop(server); Ok(()) }
//! ```
//!
//! On the server, each connection's
//! [`tls_identity`](crate::Connection::tls_identity) is the client's
//! verified certificate ([`TlsIdentity`](crate::TlsIdentity): subject,
//! common name, subject alternative names, SHA-256 fingerprint). A
//! `tls://` server talks to standard tools:
//! `openssl s_client -connect host:7443 -alpn remote/1 -CAfile ca.crt`
//! completes the handshake and shows `ALPN protocol: remote/1`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::Error;

/// The ALPN protocol name of this protocol over `tls://` (PROTOCOL.md §1).
pub const ALPN: &[u8] = b"remote/1";

/// The ALPN protocol name offered and accepted over `wss://`.
pub(crate) const ALPN_WSS: &[u8] = b"http/1.1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: impl std::fmt::Display) -> Error {
    Error::Tls(what.to_string())
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| tls_err(format!("cannot read {what} {}: {e}", path.display())))
}

/// Every `CERTIFICATE` block in `pem`; an error if there is none.
fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{what}: malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{what}: no CERTIFICATE block in the PEM")));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        tls_err(format!(
            "{what}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"
        ))
    })
}

fn roots_from_pem(pem: &[u8], what: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem, what)? {
        roots
            .add(cert)
            .map_err(|e| tls_err(format!("{what}: not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A certificate chain (end entity first) and its private key.
#[derive(Debug)]
struct CertKey {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl CertKey {
    fn from_pem(chain_pem: &[u8], key_pem: &[u8], what: &str) -> Result<CertKey, Error> {
        Ok(CertKey {
            chain: certs_from_pem(chain_pem, &format!("{what} chain"))?,
            key: key_from_pem(key_pem, &format!("{what} key"))?,
        })
    }
}

#[derive(Clone, Debug)]
enum ClientAuth {
    None,
    Optional(Arc<RootCertStore>),
    Required(Arc<RootCertStore>),
}

/// A TLS server's certificate, key, and whether (and against which CA) it
/// checks client certificates. Given to
/// [`ServerBuilder::tls`](crate::ServerBuilder::tls); serves both `tls://`
/// and `wss://` addresses.
///
/// ```no_run
/// # async fn demo() -> remote_core::Result<()> {
/// use remote_core::{Server, TlsServerConfig};
/// let tls = TlsServerConfig::from_pem_files("server.crt", "server.key")?
///     // Mutual TLS: only clients with a certificate from this CA get in.
///     .require_client_cert_pem(&std::fs::read("clients-ca.crt")?)?;
/// let server = Server::builder().tls(tls).bind("tls://0.0.0.0:7443").await?;
/// # drop(server); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    cert: Arc<CertKey>,
    client_auth: ClientAuth,
}

impl TlsServerConfig {
    /// The certificate chain (PEM, end-entity certificate first, then any
    /// intermediates) and its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    /// Checks that the key matches the certificate.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsServerConfig, Error> {
        let cfg = TlsServerConfig {
            cert: Arc::new(CertKey::from_pem(
                cert_chain_pem,
                key_pem,
                "server certificate",
            )?),
            client_auth: ClientAuth::None,
        };
        cfg.rustls(ALPN)?;
        Ok(cfg)
    }

    /// [`from_pem`](TlsServerConfig::from_pem) reading two files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsServerConfig, Error> {
        Self::from_pem(
            &read_file(cert_chain.as_ref(), "certificate file")?,
            &read_file(key.as_ref(), "key file")?,
        )
    }

    /// Mutual TLS: every client must present a certificate issued by one
    /// of the CAs in `ca_pem`; a client without one is refused in the TLS
    /// handshake. The verified identity is
    /// [`Connection::tls_identity`](crate::Connection::tls_identity).
    pub fn require_client_cert_pem(mut self, ca_pem: &[u8]) -> Result<TlsServerConfig, Error> {
        let roots = roots_from_pem(ca_pem, "client CA")?;
        self.client_auth = ClientAuth::Required(Arc::new(roots));
        self.rustls(ALPN)?;
        Ok(self)
    }

    /// Optional client certificates: a client may present one issued by a
    /// CA in `ca_pem` (and then has a verified identity), or none (and has
    /// no identity). A certificate from another CA is still refused.
    pub fn allow_client_cert_pem(mut self, ca_pem: &[u8]) -> Result<TlsServerConfig, Error> {
        let roots = roots_from_pem(ca_pem, "client CA")?;
        self.client_auth = ClientAuth::Optional(Arc::new(roots));
        self.rustls(ALPN)?;
        Ok(self)
    }

    /// The rustls configuration offering `alpn`.
    pub(crate) fn rustls(&self, alpn: &[u8]) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?;
        let verifier = |roots: &Arc<RootCertStore>, optional: bool| {
            let b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| tls_err(format!("client CA: {e}")))
        };
        let builder = match &self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(roots) => {
                builder.with_client_cert_verifier(verifier(roots, true)?)
            }
            ClientAuth::Required(roots) => {
                builder.with_client_cert_verifier(verifier(roots, false)?)
            }
        };
        let mut cfg = builder
            .with_single_cert(self.cert.chain.clone(), self.cert.key.clone_key())
            .map_err(|e| tls_err(format!("server certificate and key: {e}")))?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        cfg.max_early_data_size = 0; // no 0-RTT: early data is replayable
        cfg.send_half_rtt_data = false;
        Ok(Arc::new(cfg))
    }
}

/// A TLS client's trust roots, optional client certificate and server-name
/// override. Given to [`ConnectionBuilder::tls`](crate::ConnectionBuilder::tls)
/// for `tls://` and `wss://` addresses.
///
/// No roots are trusted unless added: a CA's PEM with
/// [`with_root_pem`](TlsClientConfig::with_root_pem), or the Mozilla set with
/// `with_webpki_roots` (feature `tls-webpki-roots`).
///
/// ```no_run
/// # async fn demo() -> remote_core::Result<()> {
/// use remote_core::{ConnectionBuilder, TlsClientConfig};
/// let tls = TlsClientConfig::new()
///     .with_root_pem_file("ca.crt")?
///     .with_client_cert_pem_files("alice.crt", "alice.key")?; // for mutual TLS
/// let conn = ConnectionBuilder::new().tls(tls).connect("tls://server.example:7443").await?;
/// println!("server is {:?}", conn.tls_identity());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TlsClientConfig {
    roots: Arc<RootCertStore>,
    client_cert: Option<Arc<CertKey>>,
    server_name: Option<String>,
    any_server_cert: bool,
}

impl Default for TlsClientConfig {
    fn default() -> Self {
        TlsClientConfig::new()
    }
}

impl TlsClientConfig {
    /// Trusts nothing yet, presents no certificate.
    pub fn new() -> TlsClientConfig {
        TlsClientConfig {
            roots: Arc::new(RootCertStore::empty()),
            client_cert: None,
            server_name: None,
            any_server_cert: false,
        }
    }

    /// Also trusts every CA certificate in `pem`.
    pub fn with_root_pem(mut self, pem: &[u8]) -> Result<TlsClientConfig, Error> {
        let more = roots_from_pem(pem, "trust roots")?;
        Arc::make_mut(&mut self.roots).roots.extend(more.roots);
        Ok(self)
    }

    /// [`with_root_pem`](TlsClientConfig::with_root_pem) reading a file.
    pub fn with_root_pem_file(self, path: impl AsRef<Path>) -> Result<TlsClientConfig, Error> {
        let pem = read_file(path.as_ref(), "trust roots file")?;
        self.with_root_pem(&pem)
    }

    /// Also trusts the Mozilla root certificates (the `webpki-roots`
    /// crate, compiled in; not the operating system's store).
    #[cfg(feature = "tls-webpki-roots")]
    pub fn with_webpki_roots(mut self) -> TlsClientConfig {
        Arc::make_mut(&mut self.roots).extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        self
    }

    /// Presents this certificate chain (PEM, end entity first) and key
    /// (PEM) to servers that ask for one (mutual TLS).
    pub fn with_client_cert_pem(
        mut self,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<TlsClientConfig, Error> {
        self.client_cert = Some(Arc::new(CertKey::from_pem(
            cert_chain_pem,
            key_pem,
            "client certificate",
        )?));
        self.rustls(ALPN)?;
        Ok(self)
    }

    /// [`with_client_cert_pem`](TlsClientConfig::with_client_cert_pem)
    /// reading two files.
    pub fn with_client_cert_pem_files(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsClientConfig, Error> {
        self.with_client_cert_pem(
            &read_file(cert_chain.as_ref(), "certificate file")?,
            &read_file(key.as_ref(), "key file")?,
        )
    }

    /// Checks the server's certificate against `name` instead of the host
    /// in the address (e.g. when connecting to an IP address whose
    /// certificate names a DNS name).
    pub fn server_name(mut self, name: impl Into<String>) -> TlsClientConfig {
        self.server_name = Some(name.into());
        self
    }

    /// **Dangerous:** accepts any server certificate, from any issuer, for
    /// any name, expired or not. The connection is encrypted but an active
    /// attacker can impersonate the server and read everything. For tests
    /// and for a first try against a self-signed server only; the
    /// connection's [`tls_identity`](crate::Connection::tls_identity) is
    /// then `None`, since nothing was verified. The handshake signature is
    /// still checked, so the peer at least holds the key of the
    /// certificate it showed.
    pub fn danger_accept_any_server_cert(mut self) -> TlsClientConfig {
        self.any_server_cert = true;
        self
    }

    /// Whether server certificates are verified (not
    /// [`danger_accept_any_server_cert`](TlsClientConfig::danger_accept_any_server_cert)).
    pub(crate) fn verifies_server(&self) -> bool {
        !self.any_server_cert
    }

    /// The name to verify the server's certificate against.
    pub(crate) fn server_name_for(
        &self,
        addr: &str,
        host: &str,
    ) -> Result<ServerName<'static>, Error> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_owned()).map_err(|e| Error::Address {
            addr: addr.to_owned(),
            reason: format!("{name:?} is not a valid TLS server name: {e}"),
        })
    }

    /// The rustls configuration offering `alpn`.
    pub(crate) fn rustls(&self, alpn: &[u8]) -> Result<Arc<rustls::ClientConfig>, Error> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?;
        let builder = if self.any_server_cert {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        } else {
            if self.roots.is_empty() {
                return Err(tls_err(
                    "no trust roots: add the server's CA with TlsClientConfig::with_root_pem",
                ));
            }
            builder.with_root_certificates(self.roots.clone())
        };
        let mut cfg = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some(ck) => builder
                .with_client_auth_cert(ck.chain.clone(), ck.key.clone_key())
                .map_err(|e| tls_err(format!("client certificate and key: {e}")))?,
        };
        cfg.alpn_protocols = vec![alpn.to_vec()];
        cfg.enable_early_data = false; // no 0-RTT: early data is replayable
        Ok(Arc::new(cfg))
    }
}

/// The verifier behind `danger_accept_any_server_cert`: any certificate,
/// but the handshake must still be signed by its key.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
