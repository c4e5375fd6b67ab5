//! Transports and address strings.
//!
//! | address | transport |
//! |---|---|
//! | `tcp://host:port` | TCP (Nagle off) |
//! | `unix:///path/to.sock` | Unix domain socket |
//! | `stdio:` | this process's stdin/stdout (connect only) |
//! | `ws://host:port/path` | WebSocket, one binary message per frame (feature `websocket`, on by default) |
//!
//! `wss://` (WebSocket over TLS) is not supported yet: TLS comes with its
//! own transport later; until then terminate TLS in front of a `ws://`
//! server. A spawned child's stdio is [`ConnectionBuilder::spawn_child`]; an
//! in-memory pair is [`Connection::pair`]; any other byte stream is
//! [`ConnectionBuilder::over`].
//!
//! [`ConnectionBuilder::spawn_child`]: crate::ConnectionBuilder::spawn_child
//! [`ConnectionBuilder::over`]: crate::ConnectionBuilder::over
//! [`Connection::pair`]: crate::Connection::pair

use std::path::PathBuf;

use crate::driver::io_types::{BoxRead, BoxWrite};
use crate::{Error, Limits};

mod identity;
#[cfg(feature = "websocket")]
mod ws;

pub use identity::TlsIdentity;

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
    /// assert!(Address::parse("wss://example.com/").unwrap_err().to_string().contains("TLS"));
    /// ```
    Ws {
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
        } else if let Some(rest) = addr.strip_prefix("unix://") {
            if rest.is_empty() {
                return Err(bad("expected unix:///path/to/socket"));
            }
            Ok(Address::Unix(PathBuf::from(rest)))
        } else if addr == "stdio:" || addr == "stdio://" {
            Ok(Address::Stdio)
        } else if let Some(rest) = addr.strip_prefix("ws://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if authority.is_empty() || !authority.contains(':') {
                return Err(bad("expected ws://host:port/path"));
            }
            Ok(Address::Ws {
                authority: authority.to_owned(),
                path: path.to_owned(),
            })
        } else if addr.starts_with("wss://") {
            Err(bad(
                "wss:// needs TLS, which this version does not support; use ws:// (behind a TLS-terminating proxy)",
            ))
        } else {
            Err(bad(
                "unknown scheme; use tcp://host:port, unix:///path, ws://host:port/path or stdio:",
            ))
        }
    }
}

#[cfg(not(feature = "websocket"))]
fn no_websocket(addr: &str) -> Error {
    Error::Address {
        addr: addr.to_owned(),
        reason: "built without the `websocket` feature of remote-core".into(),
    }
}

pub(crate) async fn dial(
    addr: &str,
    limits: &Limits,
) -> Result<(BoxRead, BoxWrite, String), Error> {
    match Address::parse(addr)? {
        #[cfg(feature = "websocket")]
        Address::Ws { .. } => {
            let (r, w) = ws::dial(addr, limits).await?;
            Ok((r, w, addr.to_owned()))
        }
        #[cfg(not(feature = "websocket"))]
        Address::Ws { .. } => {
            let _ = limits;
            Err(no_websocket(addr))
        }
        Address::Tcp(hp) => {
            let s = tokio::net::TcpStream::connect(&hp)
                .await
                .map_err(|e| Error::Io(format!("connect to {addr}: {e}")))?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w), addr.to_owned()))
        }
        Address::Unix(path) => {
            #[cfg(unix)]
            {
                let s = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| Error::Io(format!("connect to {addr}: {e}")))?;
                let (r, w) = s.into_split();
                Ok((Box::new(r), Box::new(w), addr.to_owned()))
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
        Address::Stdio => Ok((
            Box::new(tokio::io::stdin()),
            Box::new(tokio::io::stdout()),
            "stdio".into(),
        )),
    }
}

/// A bound listener for a server.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, PathBuf),
    /// A TCP listener upgrading each connection to a WebSocket at `path`.
    #[cfg(feature = "websocket")]
    Ws {
        tcp: tokio::net::TcpListener,
        path: String,
        limits: Box<Limits>,
    },
}

impl Listener {
    pub(crate) async fn bind(addr: &str, limits: &Limits) -> Result<Listener, Error> {
        match Address::parse(addr)? {
            #[cfg(feature = "websocket")]
            Address::Ws { authority, path } => Ok(Listener::Ws {
                tcp: tokio::net::TcpListener::bind(&authority)
                    .await
                    .map_err(|e| Error::Io(format!("bind {addr}: {e}")))?,
                path,
                limits: Box::new(limits.clone()),
            }),
            #[cfg(not(feature = "websocket"))]
            Address::Ws { .. } => {
                let _ = limits;
                Err(no_websocket(addr))
            }
            Address::Tcp(hp) => Ok(Listener::Tcp(
                tokio::net::TcpListener::bind(&hp)
                    .await
                    .map_err(|e| Error::Io(format!("bind {addr}: {e}")))?,
            )),
            #[cfg(unix)]
            Address::Unix(path) => {
                let l = tokio::net::UnixListener::bind(&path)
                    .map_err(|e| Error::Io(format!("bind {addr}: {e}")))?;
                Ok(Listener::Unix(l, path))
            }
            _ => Err(Error::Address {
                addr: addr.to_owned(),
                reason: "a server listens on tcp://, unix:// or ws://".into(),
            }),
        }
    }

    /// The address string clients connect to.
    pub(crate) fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("tcp://{a}"))
                .unwrap_or_default(),
            #[cfg(unix)]
            Listener::Unix(_, p) => format!("unix://{}", p.display()),
            #[cfg(feature = "websocket")]
            Listener::Ws { tcp, path, .. } => tcp
                .local_addr()
                .map(|a| format!("ws://{a}{path}"))
                .unwrap_or_default(),
        }
    }

    pub(crate) async fn accept(&self) -> std::io::Result<(BoxRead, BoxWrite, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                let (r, w) = s.into_split();
                Ok((Box::new(r), Box::new(w), format!("tcp://{peer}")))
            }
            #[cfg(unix)]
            Listener::Unix(l, p) => {
                let (s, _) = l.accept().await?;
                let (r, w) = s.into_split();
                Ok((Box::new(r), Box::new(w), format!("unix://{}", p.display())))
            }
            #[cfg(feature = "websocket")]
            Listener::Ws { tcp, path, limits } => {
                let (s, peer) = tcp.accept().await?;
                s.set_nodelay(true)?;
                let (r, w) = ws::accept(s, path.clone(), limits);
                Ok((r, w, format!("ws://{peer}{path}")))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}
