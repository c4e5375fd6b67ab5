//! The verified identity of a TLS client certificate.

/// What a verified TLS client certificate says about the peer: filled in by
/// the TLS transport when mutual TLS is on, and readable from
/// [`Peer::tls_identity`](crate::Peer::tls_identity).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsIdentity {
    /// The certificate's subject names (DNS names, e-mail addresses, URIs,
    /// or the subject common name), as the TLS transport extracted them.
    pub subject_names: Vec<String>,
    /// SHA-256 of the DER-encoded leaf certificate (a stable key for
    /// pinning and allow-lists).
    pub cert_sha256: [u8; 32],
}

impl TlsIdentity {
    /// An identity with these subject names and certificate digest.
    pub fn new(subject_names: Vec<String>, cert_sha256: [u8; 32]) -> Self {
        TlsIdentity {
            subject_names,
            cert_sha256,
        }
    }
}
