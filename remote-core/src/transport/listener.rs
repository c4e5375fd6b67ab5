//! A server's bound listener, and what it accepts: an [`Accepted`]
//! connection whose transport handshake (TLS, the WebSocket upgrade) has
//! not run yet. The accept loop only accepts; each connection's own task
//! runs [`Accepted::open`], so one slow client never delays the others.

use std::path::PathBuf;

use tokio::time::Instant;

#[cfg(feature = "tls")]
use super::tls_counted;
#[cfg(feature = "websocket")]
use super::ws_open;
use super::{Address, ServerTls, TlsIdentity};
use crate::driver::io_types::{BoxRead, BoxWrite, OnOpen};
use crate::{Error, Limits};

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
        limits: Limits,
    },
    /// A TCP listener running a TLS handshake on each connection, then
    /// (`wss://`, with `ws_path`) a WebSocket upgrade.
    #[cfg(feature = "tls")]
    Tls {
        tcp: tokio::net::TcpListener,
        config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
        ws_path: Option<String>,
        limits: Limits,
    },
}

/// A connection accepted but not yet through its transport's handshake.
pub(crate) struct Accepted {
    /// A description of the peer (`tcp://1.2.3.4:5678`, ...).
    pub(crate) peer: String,
    /// Whether a pending write to it tells that the peer reads nothing
    /// (`progress.rs`).
    pub(crate) writes_show_reading: bool,
    /// When the socket was accepted: the connection's handshake deadline
    /// (`handshake_timeout`) counts from here, for every step of it.
    pub(crate) at: Instant,
    pending: Pending,
}

enum Pending {
    Ready(BoxRead, BoxWrite, Option<OnOpen>),
    #[cfg(feature = "tls")]
    Tls(Box<PendingTls>),
}

/// A TCP stream whose TLS handshake (and, with `ws_path`, WebSocket
/// upgrade) is still to run.
#[cfg(feature = "tls")]
struct PendingTls {
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    ws_path: Option<String>,
    limits: Limits,
}

/// A connection's transport, handshakes done.
pub(crate) struct Opened {
    pub(crate) reader: BoxRead,
    pub(crate) writer: BoxWrite,
    /// The client's verified certificate (mutual TLS).
    pub(crate) tls_identity: Option<TlsIdentity>,
    /// The TLS session's channel binding (RFC 9266 `tls-exporter`).
    pub(crate) channel_binding: Option<[u8; 32]>,
    /// Told when the connection is open (a WebSocket's read bound).
    pub(crate) on_open: Option<OnOpen>,
}

impl Accepted {
    /// Runs the transport's handshake: for `tls://` and `wss://` the TLS
    /// handshake, which must end by `deadline` (`handshake_timeout` after
    /// the accept; a WebSocket upgrade runs later, on first use, under the
    /// connection's handshake deadline, the same one).
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    pub(crate) async fn open(self, deadline: Instant) -> Result<Opened, Error> {
        match self.pending {
            Pending::Ready(reader, writer, on_open) => Ok(Opened {
                reader,
                writer,
                tls_identity: None,
                channel_binding: None,
                on_open,
            }),
            #[cfg(feature = "tls")]
            Pending::Tls(pending) => {
                let PendingTls {
                    tcp,
                    acceptor,
                    ws_path,
                    limits,
                } = *pending;
                let require_alpn = ws_path.is_none();
                let input = std::sync::Arc::new(tls_counted::Input::default());
                let room = limits.max_handshake_frame_len + tls_counted::HANDSHAKE_IN_MORE;
                let (s, sec) = super::tls_io::accept(
                    &acceptor,
                    tls_counted::RawCount::new(tcp, input.clone(), room),
                    &self.peer,
                    require_alpn,
                    deadline,
                    &limits,
                )
                .await?;
                // What rustls holds of the output and the input counts in
                // the budget.
                let mut s = s;
                s.get_mut().0.handshake_done();
                s.get_mut().1.set_buffer_limit(Some(tls_counted::OUT_LIMIT));
                let s = tls_counted::Counted::new(s, input);
                let counts = s.opened();
                let (reader, writer, on_open) = match ws_path {
                    None => {
                        let (r, w) = super::boxed(s);
                        (r, w, counts)
                    }
                    #[cfg(feature = "websocket")]
                    Some(path) => {
                        let (r, w, ws) = ws_open::accept(s, path, &limits, deadline);
                        let both: OnOpen = std::sync::Arc::new(move |budget, credit| {
                            let tls = counts(budget, credit);
                            match (ws(budget, credit), tls) {
                                (Some(ws), Some(tls)) => {
                                    Some(std::sync::Arc::new(crate::driver::io_types::Layered {
                                        outer: ws,
                                        inner: tls,
                                    })
                                        as std::sync::Arc<dyn crate::driver::io_types::Gathering>)
                                }
                                (ws, tls) => ws.or(tls),
                            }
                        });
                        (r, w, both)
                    }
                    #[cfg(not(feature = "websocket"))]
                    Some(_) => return Err(super::no_websocket(&self.peer)),
                };
                Ok(Opened {
                    reader,
                    writer,
                    tls_identity: sec.identity,
                    channel_binding: Some(sec.binding),
                    on_open: Some(on_open),
                })
            }
        }
    }
}

async fn bind_tcp(addr: &str, authority: &str) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(authority)
        .await
        .map_err(|e| Error::Io(format!("bind {addr}: {e}")))
}

impl Listener {
    pub(crate) async fn bind(
        addr: &str,
        limits: &Limits,
        tls: &ServerTls,
    ) -> Result<Listener, Error> {
        let parsed = Address::parse(addr)?;
        #[cfg(feature = "tls")]
        if let Address::Tls(_) | Address::Wss { .. } = &parsed {
            let Some(cfg) = tls else {
                return Err(Error::Address {
                    addr: addr.to_owned(),
                    reason: "a TLS address needs a certificate: \
                             Server::builder().tls(TlsServerConfig::from_pem_files(cert, key)?)"
                        .into(),
                });
            };
            let (authority, ws_path, alpn) = match parsed {
                Address::Tls(a) => (a, None, super::tls::ALPN),
                Address::Wss { authority, path } => (authority, Some(path), super::tls::ALPN_WSS),
                _ => return Err(Error::Tls("not a TLS address".into())),
            };
            #[cfg(not(feature = "websocket"))]
            if ws_path.is_some() {
                return Err(super::no_websocket(addr));
            }
            return Ok(Listener::Tls {
                tcp: bind_tcp(addr, &authority).await?,
                config: cfg.rustls(alpn)?,
                ws_path,
                limits: limits.clone(),
            });
        }
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        match parsed {
            #[cfg(feature = "websocket")]
            Address::Ws { authority, path } => Ok(Listener::Ws {
                tcp: bind_tcp(addr, &authority).await?,
                path,
                limits: limits.clone(),
            }),
            #[cfg(not(feature = "websocket"))]
            Address::Ws { .. } => {
                let _ = limits;
                Err(super::no_websocket(addr))
            }
            #[cfg(not(feature = "tls"))]
            Address::Tls(_) | Address::Wss { .. } => Err(super::no_tls(addr)),
            Address::Tcp(hp) => Ok(Listener::Tcp(bind_tcp(addr, &hp).await?)),
            #[cfg(unix)]
            Address::Unix(path) => {
                let l = tokio::net::UnixListener::bind(&path)
                    .map_err(|e| Error::Io(format!("bind {addr}: {e}")))?;
                Ok(Listener::Unix(l, path))
            }
            _ => Err(Error::Address {
                addr: addr.to_owned(),
                reason: "a server listens on tcp://, tls://, unix://, ws:// or wss://".into(),
            }),
        }
    }

    /// The address string clients connect to.
    pub(crate) fn local_addr(&self) -> String {
        let tcp = |l: &tokio::net::TcpListener, scheme: &str, path: &str| {
            l.local_addr()
                .map(|a| format!("{scheme}://{a}{path}"))
                .unwrap_or_default()
        };
        match self {
            Listener::Tcp(l) => tcp(l, "tcp", ""),
            #[cfg(unix)]
            Listener::Unix(_, p) => format!("unix://{}", p.display()),
            #[cfg(feature = "websocket")]
            Listener::Ws { tcp: l, path, .. } => tcp(l, "ws", path),
            #[cfg(feature = "tls")]
            Listener::Tls {
                tcp: l, ws_path, ..
            } => match ws_path {
                None => tcp(l, "tls", ""),
                Some(path) => tcp(l, "wss", path),
            },
        }
    }

    /// Accepts the next connection; its transport handshake is left to
    /// [`Accepted::open`].
    pub(crate) async fn accept(&self) -> std::io::Result<Accepted> {
        use super::progress::watch;
        let ready = |r: BoxRead, w: BoxWrite, peer: String, shows| Accepted {
            peer,
            writes_show_reading: shows,
            at: Instant::now(),
            pending: Pending::Ready(r, w, None),
        };
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                super::keepalive::set(&s);
                let shows = watch(&s);
                let (r, w) = s.into_split();
                Ok(ready(
                    Box::new(r),
                    Box::new(w),
                    format!("tcp://{peer}"),
                    shows,
                ))
            }
            #[cfg(unix)]
            Listener::Unix(l, p) => {
                let (s, _) = l.accept().await?;
                let (r, w) = s.into_split();
                Ok(ready(
                    Box::new(r),
                    Box::new(w),
                    format!("unix://{}", p.display()),
                    false,
                ))
            }
            #[cfg(feature = "websocket")]
            Listener::Ws { tcp, path, limits } => {
                let (s, peer) = tcp.accept().await?;
                s.set_nodelay(true)?;
                super::keepalive::set(&s);
                let writes_show_reading = watch(&s);
                let at = Instant::now();
                let deadline = crate::driver::deadline::after(at, limits.handshake_timeout);
                let (r, w, on_open) = ws_open::accept(s, path.clone(), limits, deadline);
                Ok(Accepted {
                    peer: format!("ws://{peer}{path}"),
                    writes_show_reading,
                    at,
                    pending: Pending::Ready(r, w, Some(on_open)),
                })
            }
            #[cfg(feature = "tls")]
            Listener::Tls {
                tcp,
                config,
                ws_path,
                limits,
            } => {
                let (s, peer) = tcp.accept().await?;
                s.set_nodelay(true)?;
                super::keepalive::set(&s);
                let peer = match ws_path {
                    None => format!("tls://{peer}"),
                    Some(path) => format!("wss://{peer}{path}"),
                };
                Ok(Accepted {
                    peer,
                    writes_show_reading: watch(&s),
                    at: Instant::now(),
                    pending: Pending::Tls(Box::new(PendingTls {
                        tcp: s,
                        acceptor: tokio_rustls::TlsAcceptor::from(config.clone()),
                        ws_path: ws_path.clone(),
                        limits: limits.clone(),
                    })),
                })
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
