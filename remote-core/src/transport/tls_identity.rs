//! [`TlsIdentity`]: who the certificate a TLS peer presented (and that was
//! verified against the configured trust roots) names.

use std::fmt;

/// The identity in a peer's verified TLS certificate: the client
/// certificate on a server's connection (mutual TLS), the server
/// certificate on a client's. Read it with
/// [`Connection::tls_identity`](crate::Connection::tls_identity).
///
/// Only certificates that chained to the configured roots reach the
/// application: an unverified certificate never produces a `TlsIdentity`
/// (except under the explicitly named
/// [`danger_accept_any_server_cert`](crate::TlsClientConfig::danger_accept_any_server_cert)).
///
/// ```
/// use remote_core::TlsIdentity;
/// # fn check(id: &TlsIdentity) {
/// // Authorise by a name the CA put in the certificate ...
/// let is_alice = id.common_name() == Some("alice") || id.san_names().iter().any(|n| n == "alice.example");
/// // ... or pin the exact certificate.
/// let pinned = id.sha256_hex() == "0f1e...";
/// # let _ = (is_alice, pinned); }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    subject: String,
    common_name: Option<String>,
    san_names: Vec<String>,
    sha256: [u8; 32],
    der: Vec<u8>,
}

impl TlsIdentity {
    /// The certificate's subject as a distinguished-name string (e.g.
    /// `CN=alice,O=Example`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's common name (`CN`), if it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The subject alternative names: DNS names, e-mail addresses and URIs
    /// as written, IP addresses in their usual text form.
    pub fn san_names(&self) -> &[String] {
        &self.san_names
    }

    /// The SHA-256 digest of the certificate's DER encoding (what
    /// `openssl x509 -fingerprint -sha256` prints), for pinning.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// [`sha256`](TlsIdentity::sha256) as lowercase hex without separators.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The end-entity certificate, DER-encoded.
    pub fn certificate_der(&self) -> &[u8] {
        &self.der
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("subject", &self.subject)
            .field("san_names", &self.san_names)
            .field("sha256", &self.sha256_hex())
            .finish()
    }
}

#[cfg(feature = "tls")]
impl TlsIdentity {
    /// Reads the names out of a DER certificate that rustls has verified.
    /// A certificate whose names cannot be decoded still has an identity
    /// (its fingerprint) with empty names: the chain was verified, and
    /// pinning by fingerprint keeps working.
    pub(crate) fn from_der(der: &[u8]) -> TlsIdentity {
        use x509_cert::der::Decode;
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        let mut id = TlsIdentity {
            subject: String::new(),
            common_name: None,
            san_names: Vec::new(),
            sha256,
            der: der.to_vec(),
        };
        let Ok(cert) = x509_cert::Certificate::from_der(der) else {
            return id;
        };
        let tbs = &cert.tbs_certificate;
        id.subject = tbs.subject.to_string();
        id.common_name = tbs
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN)
            .and_then(|atv| any_string(&atv.value));
        if let Ok(Some((_, san))) = tbs.get::<x509_cert::ext::pkix::SubjectAltName>() {
            id.san_names = san.0.iter().filter_map(general_name).collect();
        }
        id
    }
}

/// A directory string's text (UTF8String, PrintableString or IA5String).
#[cfg(feature = "tls")]
fn any_string(v: &x509_cert::der::Any) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    if let Ok(s) = Utf8StringRef::try_from(v) {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = PrintableStringRef::try_from(v) {
        return Some(s.as_str().to_owned());
    }
    Ia5StringRef::try_from(v)
        .ok()
        .map(|s| s.as_str().to_owned())
}

#[cfg(feature = "tls")]
fn general_name(n: &x509_cert::ext::pkix::name::GeneralName) -> Option<String> {
    use x509_cert::ext::pkix::name::GeneralName;
    match n {
        GeneralName::DnsName(s)
        | GeneralName::Rfc822Name(s)
        | GeneralName::UniformResourceIdentifier(s) => Some(s.as_str().to_owned()),
        GeneralName::IpAddress(o) => {
            let b = o.as_bytes();
            if let Ok(v4) = <[u8; 4]>::try_from(b) {
                Some(std::net::IpAddr::from(v4).to_string())
            } else {
                <[u8; 16]>::try_from(b)
                    .ok()
                    .map(|v6| std::net::IpAddr::from(v6).to_string())
            }
        }
        _ => None,
    }
}
