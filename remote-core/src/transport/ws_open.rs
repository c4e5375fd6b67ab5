//! Opening a WebSocket connection: the client's upgrade ([`dial`],
//! [`dial_over`] for `wss://`) and the server's ([`accept`]), each handing
//! the driver the two halves of a [`WsIo`].

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::WebSocketStream;

use super::ws::{config, Phase, WsIo};
use super::ws_meter::{Meter, Metered};
use super::ws_rescue::{self, Rescue, Slot};
use crate::driver::io_types::{BoxRead, BoxWrite, Gathering, OnOpen, Socket};
use crate::{Error, Limits};

fn halves<S>(io: WsIo<S>) -> (BoxRead, BoxWrite)
where
    S: AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static,
{
    super::split::split(io)
}

/// Runs a client's upgrade, bounded by `handshake_timeout` like the
/// protocol's own handshake that follows it.
async fn upgraded<S, R, E>(
    url: &str,
    limits: &Limits,
    upgrade: impl Future<Output = Result<(WebSocketStream<S>, R), E>>,
    what: &str,
) -> Result<(BoxRead, BoxWrite), Error>
where
    S: AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static,
    E: std::fmt::Display,
{
    let (ws, _response) = tokio::time::timeout(limits.handshake_timeout, upgrade)
        .await
        .map_err(|_| {
            Error::Handshake(format!(
                "websocket upgrade with {url} did not finish within handshake_timeout = {:?}",
                limits.handshake_timeout
            ))
        })?
        .map_err(|e| Error::Io(format!("{what} {url}: {e}")))?;
    Ok(halves(WsIo::open(ws)))
}

/// Connects to `url` (`ws://host:port/path`).
pub(crate) async fn dial(url: &str, limits: &Limits) -> Result<(BoxRead, BoxWrite), Error> {
    let upgrade = tokio_tungstenite::connect_async_with_config(url, Some(config(limits)), true);
    upgraded(url, limits, upgrade, "connect to").await
}

/// Runs the client side of the upgrade over an established stream (a TLS
/// stream for `wss://`).
#[cfg(feature = "tls")]
pub(crate) async fn dial_over<S>(
    url: &str,
    stream: S,
    limits: &Limits,
) -> Result<(BoxRead, BoxWrite), Error>
where
    S: AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static,
{
    let upgrade = tokio_tungstenite::client_async_with_config(url, stream, Some(config(limits)));
    upgraded(url, limits, upgrade, "websocket upgrade with").await
}

/// Wraps an accepted stream (TCP, or TLS for `wss://`); the upgrade
/// (checking the request path is `path`) runs when the connection first
/// reads or writes, and fails at `deadline` (the connection's handshake
/// deadline, `handshake_timeout` after the accept): a connection closed
/// meanwhile then closes its socket at once, instead of waiting for the
/// upgrade for its goodbye's grace period (a red-team pass: sockets
/// outlived their slot by 5 s, about 1.5 × `max_connections` held open).
/// The hook lifts the read bound of the handshake (`ws_meter.rs`): the
/// driver calls it once the connection is open.
pub(crate) fn accept<S>(
    stream: S,
    path: String,
    limits: &Limits,
    deadline: tokio::time::Instant,
) -> (BoxRead, BoxWrite, OnOpen)
where
    S: AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static,
{
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == path {
            Ok(resp)
        } else {
            let body = format!("no websocket endpoint at {}\n", req.uri());
            let mut e = ErrorResponse::new(None);
            *e.status_mut() = StatusCode::NOT_FOUND;
            // Framed like the answers of `ws_rescue.rs`.
            let headers = e.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            // The body quotes the request's URI: never read as anything
            // but text.
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            *e.body_mut() = Some(body);
            Err(e)
        }
    };
    let meter = Meter::new(
        limits.max_handshake_frame_len,
        limits.max_frame_len.saturating_add(4),
    );
    // A request tungstenite refuses without an answer gets one here
    // (`ws_rescue.rs`).
    let slot: Slot<S> = Arc::default();
    let stream = Metered::new(Rescue::new(stream, slot.clone()), meter.clone());
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config(limits)));
    let limit = limits.handshake_timeout;
    let fut = async move {
        match tokio::time::timeout_at(deadline, upgrade).await {
            Ok(Ok(ws)) => Ok(ws),
            Ok(Err(e)) => {
                if let Some(answer) = ws_rescue::answer(&e) {
                    ws_rescue::write_answer(&slot, &answer, deadline).await;
                }
                Err(e)
            }
            Err(_) => Err(WsError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the upgrade did not finish within handshake_timeout = {limit:?}"),
            ))),
        }
    };
    let lift = meter.clone();
    let (r, w) = halves(WsIo::new(
        Phase::Accepting(Box::new((Box::pin(fut), [None, None]))),
        Some(meter),
    ));
    (
        r,
        w,
        Arc::new(move |budget, credit| {
            lift.lift(budget, credit);
            Some(lift.clone() as Arc<dyn Gathering>)
        }),
    )
}
