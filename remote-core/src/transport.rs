//! Transports and address strings.
//!
//! | address | transport |
//! |---|---|
//! | `tcp://host:port` | TCP (Nagle off) |
//! | `tls://host:port` | TLS 1.3 over TCP, ALPN `remote/1` (feature `tls`, on by default) |
//! | `unix:///path/to.sock` | Unix domain socket |
//! | `stdio:` | this process's stdin/stdout (connect only) |
//! | `ws://host:port/path` | WebSocket, one binary message per frame (feature `websocket`, on by default) |
//! | `wss://host:port/path` | WebSocket over TLS 1.3 (features `websocket` and `tls`) |
//!
//! TLS needs a configuration: [`TlsServerConfig`] on
//! [`ServerBuilder::tls`](crate::ServerBuilder::tls) (certificate, key,
//! optional client-certificate check), [`TlsClientConfig`] on
//! [`ConnectionBuilder::tls`](crate::ConnectionBuilder::tls) (trust roots,
//! optional client certificate). The peer's verified certificate is
//! [`Connection::tls_identity`](crate::Connection::tls_identity). A spawned
//! child's stdio is [`ConnectionBuilder::spawn_child`]; an in-memory pair is
//! [`Connection::pair`]; any other byte stream is
//! [`ConnectionBuilder::over`].
//!
//! [`ConnectionBuilder::spawn_child`]: crate::ConnectionBuilder::spawn_child
//! [`ConnectionBuilder::over`]: crate::ConnectionBuilder::over
//! [`Connection::pair`]: crate::Connection::pair
//!
//! ```
//! use remote_core::collections::{RemoteList, SharedVec};
//! use remote_core::{Connection, ConnectionBuilder, Server};
//!
//! fn main() -> remote_core::Result<()> {
//!     tokio::runtime::Runtime::new()?.block_on(async {
//!         let list = SharedVec::<u8>::new();
//!         let served = list.clone();
//!         // The same server code on any address: tcp://, unix://, ws://, ...
//!         let server = Server::bind("ws://127.0.0.1:0/").await?.serve(move |_| served.remote());
//!         let client = Connection::connect(server.local_addr()).await?;
//!         client.root::<dyn RemoteList<u8>>().push(1).await?;
//!         // Or any pair of byte streams, here an in-memory pipe.
//!         let (a, b) = tokio::io::duplex(64 << 10);
//!         let (ar, aw) = tokio::io::split(a);
//!         let (br, bw) = tokio::io::split(b);
//!         let (client, _server) = tokio::try_join!(
//!             ConnectionBuilder::new().over(ar, aw, "pipe"),
//!             ConnectionBuilder::new().serve(list.remote()).over(br, bw, "pipe"),
//!         )?;
//!         client.root::<dyn RemoteList<u8>>().push(2).await?;
//!         assert_eq!(list.snapshot(), [1, 2]);
//!         Ok(())
//!     })
//! }
//! ```

use std::path::PathBuf;

use crate::driver::io_types::{BoxRead, BoxWrite, Plain};
use crate::{Error, Limits};

#[cfg(target_arch = "wasm32")]
mod browser_ws;
#[cfg(not(target_arch = "wasm32"))]
mod keepalive;
#[cfg(not(target_arch = "wasm32"))]
mod listener;
#[cfg(not(target_arch = "wasm32"))]
mod progress;
#[cfg(any(feature = "tls", feature = "websocket"))]
mod split;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tls")]
mod tls_counted;
mod tls_identity;
#[cfg(feature = "tls")]
mod tls_io;
#[cfg(feature = "websocket")]
mod ws;
#[cfg(feature = "websocket")]
mod ws_meter;
#[cfg(feature = "websocket")]
mod ws_open;
#[cfg(feature = "websocket")]
mod ws_rescue;
#[cfg(feature = "websocket")]
mod ws_scan;
#[cfg(feature = "websocket")]
pub(crate) use ws_meter::fuzz_ws_scan;

#[cfg(feature = "tls")]
pub use tls::{TlsClientConfig, TlsServerConfig, ALPN};
pub use tls_identity::TlsIdentity;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use listener::{Accepted, Listener};

/// A client's TLS configuration, if any (none exists without feature `tls`).
#[cfg(feature = "tls")]
pub(crate) type ClientTls = Option<TlsClientConfig>;
/// A client's TLS configuration, if any (none exists without feature `tls`).
#[cfg(not(feature = "tls"))]
pub(crate) type ClientTls = Option<std::convert::Infallible>;
/// A server's TLS configuration, if any (none exists without feature `tls`).
#[cfg(feature = "tls")]
pub(crate) type ServerTls = Option<TlsServerConfig>;
/// A server's TLS configuration, if any (none exists without feature `tls`).
#[cfg(not(feature = "tls"))]
pub(crate) type ServerTls = Option<std::convert::Infallible>;

/// A parsed address string.
///
/// ```
/// use remote_core::transport::Address;
/// assert_eq!(Address::parse("tcp://127.0.0.1:7000").unwrap(), Address::Tcp("127.0.0.1:7000".into()));
/// assert!(Address::parse("carrier-pigeon://coop").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix:///path`.
    Unix(PathBuf),
    /// `stdio:`.
    Stdio,
    /// `ws://host:port/path` (the path defaults to `/`).
    ///
    /// ```
    /// use remote_core::transport::Address;
    /// assert_eq!(
    ///     Address::parse("ws://127.0.0.1:0/chat").unwrap(),
    ///     Address::Ws { authority: "127.0.0.1:0".into(), path: "/chat".into() },
    /// );
    /// ```
    Ws {
        /// `host:port`.
        authority: String,
        /// The request path, starting with `/`.
        path: String,
    },
    /// `tls://host:port`: TLS 1.3 over TCP.
    ///
    /// ```
    /// use remote_core::transport::Address;
    /// assert_eq!(Address::parse("tls://localhost:7443").unwrap(), Address::Tls("localhost:7443".into()));
    /// ```
    Tls(String),
    /// `wss://host:port/path`: a WebSocket over TLS 1.3 (the path defaults
    /// to `/`).
    ///
    /// ```
    /// use remote_core::transport::Address;
    /// assert_eq!(
    ///     Address::parse("wss://localhost:7443").unwrap(),
    ///     Address::Wss { authority: "localhost:7443".into(), path: "/".into() },
    /// );
    /// ```
    Wss {
        /// `host:port`.
        authority: String,
        /// The request path, starting with `/`.
        path: String,
    },
}

impl Address {
    /// Parses an address string.
    pub fn parse(addr: &str) -> Result<Address, Error> {
        let bad = |reason: &str| Error::Address {
            addr: addr.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = addr.strip_prefix("tcp://") {
            if rest.is_empty() || !rest.contains(':') {
                return Err(bad("expected tcp://host:port"));
            }
            Ok(Address::Tcp(rest.to_owned()))
        } else if let Some(rest) = addr.strip_prefix("tls://") {
            if rest.is_empty() || !rest.contains(':') || rest.contains('/') {
                return Err(bad("expected tls://host:port"));
            }
            Ok(Address::Tls(rest.to_owned()))
        } else if let Some(rest) = addr.strip_prefix("unix://") {
            if rest.is_empty() {
                return Err(bad("expected unix:///path/to/socket"));
            }
            Ok(Address::Unix(PathBuf::from(rest)))
        } else if addr == "stdio:" || addr == "stdio://" {
            Ok(Address::Stdio)
        } else if let Some((scheme, rest)) = addr
            .strip_prefix("ws://")
            .map(|r| ("ws", r))
            .or_else(|| addr.strip_prefix("wss://").map(|r| ("wss", r)))
        {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if authority.is_empty() || !authority.contains(':') {
                return Err(bad(&format!("expected {scheme}://host:port/path")));
            }
            let (authority, path) = (authority.to_owned(), path.to_owned());
            Ok(if scheme == "ws" {
                Address::Ws { authority, path }
            } else {
                Address::Wss { authority, path }
            })
        } else {
            Err(bad(
                "unknown scheme; use tcp://host:port, tls://host:port, unix:///path, \
                 ws://host:port/path, wss://host:port/path or stdio:",
            ))
        }
    }
}

#[cfg(not(feature = "tls"))]
pub(crate) fn no_tls(addr: &str) -> Error {
    Error::Address {
        addr: addr.to_owned(),
        reason: "built without the `tls` feature of remote-core".into(),
    }
}

/// A TLS address needs a configuration.
#[cfg(feature = "tls")]
fn need_client_tls<'a>(addr: &str, tls: &'a ClientTls) -> Result<&'a TlsClientConfig, Error> {
    tls.as_ref().ok_or_else(|| Error::Address {
        addr: addr.to_owned(),
        reason: "a TLS address needs trust roots: \
                 ConnectionBuilder::new().tls(TlsClientConfig::new().with_root_pem(ca)?)"
            .into(),
    })
}

/// A connected transport: its byte streams, a description of the peer,
/// and (TLS) the peer's verified certificate identity.
pub(crate) struct Dialed {
    pub(crate) reader: BoxRead,
    pub(crate) writer: BoxWrite,
    pub(crate) peer: String,
    pub(crate) tls_identity: Option<TlsIdentity>,
    /// The TLS session's channel binding (RFC 9266 `tls-exporter`), bound
    /// into authentication proofs; `None` on plain transports.
    pub(crate) channel_binding: Option<[u8; 32]>,
}

#[cfg(feature = "tls")]
pub(crate) fn boxed<S>(s: S) -> (BoxRead, BoxWrite)
where
    S: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + crate::driver::io_types::Socket
        + Send
        + Unpin
        + 'static,
{
    split::split(s)
}

#[cfg(not(feature = "websocket"))]
pub(crate) fn no_websocket(addr: &str) -> Error {
    Error::Address {
        addr: addr.to_owned(),
        reason: "built without the `websocket` feature of remote-core".into(),
    }
}

pub(crate) async fn dial(addr: &str, limits: &Limits, tls: &ClientTls) -> Result<Dialed, Error> {
    let plain = |reader: BoxRead, writer: BoxWrite| Dialed {
        reader,
        writer,
        peer: addr.to_owned(),
        tls_identity: None,
        channel_binding: None,
    };
    match Address::parse(addr)? {
        #[cfg(feature = "tls")]
        Address::Tls(authority) => {
            let cfg = need_client_tls(addr, tls)?;
            let (s, sec) = tls_io::connect(addr, &authority, cfg, ALPN, limits).await?;
            let (reader, writer) = boxed(s);
            Ok(Dialed {
                tls_identity: sec.identity,
                channel_binding: Some(sec.binding),
                ..plain(reader, writer)
            })
        }
        #[cfg(all(feature = "tls", feature = "websocket"))]
        Address::Wss { authority, .. } => {
            let cfg = need_client_tls(addr, tls)?;
            let (s, sec) = tls_io::connect(addr, &authority, cfg, tls::ALPN_WSS, limits).await?;
            let (reader, writer) = ws_open::dial_over(addr, s, limits).await?;
            Ok(Dialed {
                tls_identity: sec.identity,
                channel_binding: Some(sec.binding),
                ..plain(reader, writer)
            })
        }
        #[cfg(all(feature = "tls", not(feature = "websocket")))]
        Address::Wss { .. } => {
            let _ = tls;
            Err(no_websocket(addr))
        }
        #[cfg(all(not(feature = "tls"), not(target_arch = "wasm32")))]
        Address::Tls(_) | Address::Wss { .. } => {
            let _ = tls;
            Err(no_tls(addr))
        }
        #[cfg(target_arch = "wasm32")]
        Address::Ws { .. } | Address::Wss { .. } => {
            // The browser does TLS for wss:// (its own trust roots).
            let _ = tls;
            let (r, w) = browser_ws::dial(addr, limits).await?;
            Ok(plain(r, w))
        }
        #[cfg(target_arch = "wasm32")]
        Address::Tcp(_) | Address::Tls(_) | Address::Unix(_) | Address::Stdio => {
            Err(Error::Address {
                addr: addr.to_owned(),
                reason: "a page reaches servers only over ws:// or wss:// (browser build)".into(),
            })
        }
        #[cfg(all(feature = "websocket", not(target_arch = "wasm32")))]
        Address::Ws { .. } => {
            let (r, w) = ws_open::dial(addr, limits).await?;
            Ok(plain(r, w))
        }
        #[cfg(all(not(feature = "websocket"), not(target_arch = "wasm32")))]
        Address::Ws { .. } => {
            let _ = limits;
            Err(no_websocket(addr))
        }
        #[cfg(not(target_arch = "wasm32"))]
        Address::Tcp(hp) => {
            let s = tokio::net::TcpStream::connect(&hp)
                .await
                .map_err(|e| Error::Io(format!("connect to {addr}: {e}")))?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            Ok(plain(Box::new(r), Box::new(w)))
        }
        #[cfg(not(target_arch = "wasm32"))]
        Address::Unix(path) => {
            #[cfg(unix)]
            {
                let s = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| Error::Io(format!("connect to {addr}: {e}")))?;
                let (r, w) = s.into_split();
                Ok(plain(Box::new(r), Box::new(w)))
            }
            #[cfg(not(unix))]
            {
                let _ = path;
                Err(Error::Address {
                    addr: addr.to_owned(),
                    reason: "unix sockets need a unix OS".into(),
                })
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        Address::Stdio => Ok(Dialed {
            peer: "stdio".into(),
            ..plain(
                Box::new(Plain(tokio::io::stdin())),
                Box::new(tokio::io::stdout()),
            )
        }),
    }
}
