//! Running the TLS handshake of a `tls://` or `wss://` connection, client
//! and server side: bounded by `handshake_timeout`, ALPN checked, the
//! peer's verified certificate turned into a [`TlsIdentity`].
//!
//! The server side runs in the connection's own task (see
//! `Accepted::open`), never in the accept loop, so a client that stalls
//! its handshake holds only its own connection. What a peer can make the
//! server buffer before the handshake ends is bounded by rustls: one TLS
//! record (16 KiB plus overhead) at a time, handshake messages up to
//! 64 KiB, and no early data (0-RTT is off).

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tls::{TlsClientConfig, ALPN};
use super::TlsIdentity;
use crate::proto::encode;
use crate::{Error, Limits};

/// A client's TLS stream.
pub(crate) type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;
/// A server's TLS stream, over a socket counting what it gives rustls
/// (`tls_counted.rs`).
pub(crate) type ServerStream =
    tokio_rustls::server::TlsStream<super::tls_counted::RawCount<TcpStream>>;

/// The RFC 9266 exporter label for TLS 1.3 channel binding.
const BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// The session's `tls-exporter` channel binding (RFC 9266): 32 bytes of
/// keying material exported under label `EXPORTER-Channel-Binding` with no
/// context. Both ends of one TLS session get the same value; any other
/// session (a relay that terminates TLS on each side) gets another.
fn channel_binding<D>(conn: &rustls::ConnectionCommon<D>) -> Result<[u8; 32], Error> {
    conn.export_keying_material([0u8; 32], BINDING_LABEL, None)
        .map_err(|e| Error::Tls(format!("cannot export the TLS channel binding: {e}")))
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(authority: &str) -> &str {
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _port)| host)
}

/// How a peer's chosen ALPN protocol reads in an error.
fn alpn_text(p: Option<&[u8]>) -> String {
    match p {
        Some(p) => format!("{:?}", String::from_utf8_lossy(p)),
        None => "none".into(),
    }
}

/// What a finished TLS handshake tells the connection: the peer's verified
/// certificate (if any) and the session's channel binding.
pub(crate) struct Secured {
    /// The peer's verified certificate.
    pub(crate) identity: Option<TlsIdentity>,
    /// The `tls-exporter` value bound into authentication proofs.
    pub(crate) binding: [u8; 32],
}

/// Connects to `authority` and runs the client handshake offering `alpn`;
/// `tls://` (offering [`ALPN`]) requires the server to select it.
pub(crate) async fn connect(
    addr: &str,
    authority: &str,
    cfg: &TlsClientConfig,
    alpn: &[u8],
    limits: &Limits,
) -> Result<(ClientStream, Secured), Error> {
    let name = cfg.server_name_for(addr, host_of(authority))?;
    let connector = TlsConnector::from(cfg.rustls(alpn)?);
    let limit = limits.handshake_timeout;
    let handshake = async {
        let tcp = TcpStream::connect(authority)
            .await
            .map_err(|e| Error::Io(format!("connect to {addr}: {e}")))?;
        tcp.set_nodelay(true)?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Handshake(format!("TLS handshake with {addr} failed: {e}")))
    };
    let tls = tokio::time::timeout(limit, handshake).await.map_err(|_| {
        Error::Handshake(format!(
            "TLS handshake with {addr} did not finish within handshake_timeout = {limit:?}"
        ))
    })??;
    let (_, conn) = tls.get_ref();
    if alpn == ALPN && conn.alpn_protocol() != Some(ALPN) {
        return Err(Error::Handshake(format!(
            "TLS handshake with {addr}: the server did not select ALPN protocol \"remote/1\" \
             (it selected {}); is it a remote server?",
            alpn_text(conn.alpn_protocol())
        )));
    }
    let identity = if cfg.verifies_server() {
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| TlsIdentity::from_der(cert))
    } else {
        None
    };
    let binding = channel_binding(&**conn)?;
    Ok((tls, Secured { identity, binding }))
}

/// Runs the server handshake on an accepted TCP stream. With
/// `require_alpn` (`tls://`), a client that offered no ALPN protocol gets
/// a goodbye naming the requirement (one that offered another protocol
/// was already refused by rustls with a `no_application_protocol` alert).
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    tcp: super::tls_counted::RawCount<TcpStream>,
    peer: &str,
    require_alpn: bool,
    deadline: tokio::time::Instant,
    limits: &Limits,
) -> Result<(ServerStream, Secured), Error> {
    let limit = limits.handshake_timeout;
    let mut tls = tokio::time::timeout_at(deadline, acceptor.accept(tcp))
        .await
        .map_err(|_| {
            Error::Handshake(format!(
                "TLS handshake from {peer} did not finish within handshake_timeout = {limit:?}"
            ))
        })?
        .map_err(|e| Error::Handshake(format!("TLS handshake from {peer} failed: {e}")))?;
    let (_, conn) = tls.get_ref();
    let identity = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| TlsIdentity::from_der(cert));
    let binding = channel_binding(&**conn)?;
    if require_alpn && conn.alpn_protocol() != Some(ALPN) {
        let why = format!(
            "ALPN protocol \"remote/1\" required (the client offered {})",
            alpn_text(conn.alpn_protocol())
        );
        let frame = encode::goodbye(&why);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = tls.write_all(&frame).await;
            let _ = tls.shutdown().await;
        })
        .await;
        return Err(Error::Handshake(format!("{peer}: {why}")));
    }
    Ok((tls, Secured { identity, binding }))
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_strips_the_port() {
        assert_eq!(host_of("localhost:7443"), "localhost");
        assert_eq!(host_of("127.0.0.1:0"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7443"), "[::1]");
    }
}
