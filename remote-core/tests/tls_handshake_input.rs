//! What a `tls://` server's TLS handshake takes in before it ends is
//! bounded (`max_handshake_frame_len` and 20 KiB): rustls joined a client
//! hello claiming 64 KiB, sent in fragments, outside the memory budget
//! until `handshake_timeout` (61 KB per connection, a red-team pass). Past
//! the bound the handshake fails at once.
#![cfg(feature = "tls")]

#[path = "support/pki.rs"]
mod pki;
#[path = "support/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use pki::Ca;
use remote_core::{
    remote, ConnectionBuilder, Error, Limits, Remote, Server, ServerHandle, TlsClientConfig,
    TlsServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[remote]
pub trait Echo {
    async fn echo(&self, n: u32) -> Result<u32, Error>;
}

struct E;

#[remote]
impl Echo for E {
    async fn echo(&self, n: u32) -> Result<u32, Error> {
        Ok(n)
    }
}

async fn tls_server(ca: &Ca) -> ServerHandle {
    let issued = ca.server();
    let tls =
        TlsServerConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    Server::builder()
        .limits(Limits {
            // The bound must end it, not the timeout.
            handshake_timeout: Duration::from_secs(600),
            ..Limits::default()
        })
        .tls(tls)
        .bind("tls://127.0.0.1:0")
        .await
        .unwrap()
        .serve(|_| Remote::new(Arc::new(E) as Arc<dyn Echo>))
}

/// `bytes` of a client hello claiming 0xfff0 bytes, in plaintext
/// handshake records of 16 KiB.
fn hello_fragments(bytes: usize) -> Vec<u8> {
    let mut msg = vec![0x01u8, 0x00, 0xff, 0xf0];
    msg.resize(bytes, 0);
    let mut out = Vec::new();
    for chunk in msg.chunks(16 << 10) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[tokio::test]
async fn a_handshake_sending_more_than_its_bound_fails_at_once() {
    raw::bounded(async {
        let ca = Ca::new("handshake input ca");
        let server = tls_server(&ca).await;
        let addr = server.local_addr().split("://").nth(1).unwrap().to_owned();
        let mut s = TcpStream::connect(addr).await.unwrap();
        // 63 KiB, more than the 24 KiB bound: the connection ends (with an
        // alert, or reset) without waiting for more.
        let _ = s.write_all(&hello_fragments(63 << 10)).await;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(raw::eventually(|| server.connections() == 0).await);
        // An honest client still connects, and works.
        let tls = TlsClientConfig::new()
            .with_root_pem(ca.pem().as_bytes())
            .unwrap();
        let client = ConnectionBuilder::new()
            .tls(tls)
            .connect(server.local_addr())
            .await
            .unwrap();
        let echo = client.root::<dyn Echo>();
        assert_eq!(echo.echo(7).await.unwrap(), 7);
        drop((echo, client));
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
