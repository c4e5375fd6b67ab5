//! Transports and address strings.
//!
//! | address | transport |
//! |---|---|
//! | `tcp://host:port` | TCP (Nagle off) |
//! | `unix:///path/to.sock` | Unix domain socket |
//! | `stdio:` | this process's stdin/stdout (connect only) |
//!
//! A spawned child's stdio is [`ConnectionBuilder::spawn_child`]; an
//! in-memory pair is [`Connection::pair`]; any other byte stream (TLS,
//! WebSocket, ...) is [`ConnectionBuilder::over`].
//!
//! [`ConnectionBuilder::spawn_child`]: crate::ConnectionBuilder::spawn_child
//! [`ConnectionBuilder::over`]: crate::ConnectionBuilder::over
//! [`Connection::pair`]: crate::Connection::pair

use std::path::PathBuf;

use crate::driver::io_types::{BoxRead, BoxWrite};
use crate::Error;

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
        } else {
            Err(bad(
                "unknown scheme; use tcp://host:port, unix:///path or stdio:",
            ))
        }
    }
}

pub(crate) async fn dial(addr: &str) -> Result<(BoxRead, BoxWrite, String), Error> {
    match Address::parse(addr)? {
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
}

impl Listener {
    pub(crate) async fn bind(addr: &str) -> Result<Listener, Error> {
        match Address::parse(addr)? {
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
                reason: "a server listens on tcp:// or unix://".into(),
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
