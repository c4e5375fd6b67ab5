//! Errors: what a call can return ([`Error`]) and what crossed the wire from a
//! failing remote method ([`RemoteError`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::schema::{SchemaBuilder, Ty};

/// Everything a remote call, a connection or a server can fail with.
///
/// Losing a connection, an expired deadline and a peer's protocol violation
/// are ordinary values of this type. Method error types must implement
/// `From<Error>` so they can carry these.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection closed or broke; the call may or may not have run.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The peer broke the protocol (malformed frame, unknown message kind,
    /// wrong version, ...). The connection is closed.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A configured limit was exceeded. Names the limit and its value.
    #[error("limit exceeded: {limit} = {value} ({detail})")]
    LimitExceeded {
        /// The limit's name as in [`Limits`](crate::Limits), e.g. `max_frame_len`.
        limit: &'static str,
        /// Its configured value.
        value: u64,
        /// What went over it.
        detail: String,
    },
    /// The call's deadline passed before a result arrived.
    #[error("deadline exceeded after {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// The call was cancelled.
    #[error("call cancelled")]
    Cancelled,
    /// The remote method failed; carries the remote traceback.
    #[error("{0}")]
    Remote(Box<RemoteError>),
    /// A value could not be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        message: String,
    },
    /// A value from the peer could not be decoded into the expected type.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        message: String,
    },
    /// An I/O error on the transport.
    #[error("i/o error: {0}")]
    Io(String),
    /// An address string could not be used.
    #[error("bad address {addr:?}: {reason}")]
    Address {
        /// The address given.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// The handshake failed (version, authentication, timeout).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A TLS configuration could not be used: unreadable or malformed PEM,
    /// a key that does not match its certificate, no trust roots.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The method requires an authenticated connection and this one is not.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A blocking call was made on an async runtime thread, where it would
    /// deadlock.
    #[error(
        "blocking remote call made from inside an async runtime thread; \
         call the async method with .await, or run this code in tokio::task::spawn_blocking"
    )]
    BlockingInAsync,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl Error {
    /// Whether the connection this error came from is gone.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost(_))
    }

    pub(crate) fn limit(limit: &'static str, value: u64, detail: impl Into<String>) -> Self {
        Error::LimitExceeded {
            limit,
            value,
            detail: detail.into(),
        }
    }

    /// The wire kind code of this error (see PROTOCOL.md, "Errors").
    pub(crate) fn kind_code(&self) -> &'static str {
        match self {
            Error::ConnectionLost(_) => "connection_lost",
            Error::Protocol(_) => "protocol",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::DeadlineExceeded(_) => "deadline_exceeded",
            Error::Cancelled => "cancelled",
            Error::Remote(_) => "remote",
            Error::Encode { .. } => "encode",
            Error::Decode { .. } => "bad_arguments",
            Error::Io(_) => "io",
            Error::Address { .. } => "address",
            Error::Handshake(_) => "handshake",
            Error::Tls(_) => "tls",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::BlockingInAsync => "blocking_in_async",
        }
    }

    /// Builds the wire form of this error as raised by a local method.
    pub(crate) fn to_remote(&self) -> RemoteError {
        if let Error::Remote(r) = self {
            // Re-raising a remote error keeps its original traceback, with
            // one more frame noting it passed through here.
            let mut r = (**r).clone();
            r.chain.insert(0, "re-raised by a remote method".to_owned());
            return r;
        }
        RemoteError {
            kind: self.kind_code().to_owned(),
            type_name: "remote_core::Error".to_owned(),
            message: self.to_string(),
            chain: Vec::new(),
            backtrace: None,
            data: None,
        }
    }
}

/// An error raised by a remote method, as it crossed the wire.
///
/// Display prints it like a traceback:
///
/// ```
/// use remote_core::RemoteError;
/// let e = RemoteError {
///     kind: "application".into(),
///     type_name: "chat::ChatError".into(),
///     message: "room is full".into(),
///     chain: vec!["capacity 2 reached".into()],
///     backtrace: None,
///     data: None,
/// };
/// assert_eq!(
///     e.to_string(),
///     "remote error (application) chat::ChatError: room is full\n  caused by: capacity 2 reached"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// What kind of failure: `application` (the method returned `Err`),
    /// `panic`, `unknown_object`, `unknown_method`, `bad_arguments`,
    /// `limit_exceeded`, `deadline_exceeded`, `cancelled`, ...
    pub kind: String,
    /// The remote Rust type of the error (or `panic`).
    pub type_name: String,
    /// The error's Display text.
    pub message: String,
    /// The `source()` chain, outermost first.
    pub chain: Vec<String>,
    /// The remote backtrace, where one was captured.
    pub backtrace: Option<String>,
    /// The application error value, msgpack-encoded, when `kind` is `application`.
    #[serde(skip)]
    pub data: Option<Vec<u8>>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "remote error ({}) {}: {}",
            self.kind, self.type_name, self.message
        )?;
        for cause in &self.chain {
            write!(f, "\n  caused by: {cause}")?;
        }
        if let Some(bt) = &self.backtrace {
            write!(f, "\nremote backtrace:\n{bt}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

/// `RemoteError` crosses by value, so an application error type can carry a
/// toolkit error: `#[error(transparent)] Remote(RemoteError)` with
/// `impl From<remote_core::Error> for MyError { fn from(e) -> Self { MyError::Remote(e.into()) } }`.
impl crate::Wire for RemoteError {
    fn describe(_: &mut SchemaBuilder) -> Ty {
        Ty::RemoteError
    }
}

impl From<Error> for RemoteError {
    /// The wire form of a toolkit error (a remote error keeps its traceback).
    fn from(e: Error) -> Self {
        match e {
            Error::Remote(r) => *r,
            other => other.to_remote(),
        }
    }
}

impl RemoteError {
    pub(crate) fn new(kind: &str, type_name: &str, message: impl Into<String>) -> Self {
        RemoteError {
            kind: kind.to_owned(),
            type_name: type_name.to_owned(),
            message: message.into(),
            chain: Vec::new(),
            backtrace: None,
            data: None,
        }
    }
}

/// An error type a remote method may return: `E` in `Result<T, E>`.
///
/// Implemented for [`Error`] itself and for every `E: Wire +
/// std::error::Error + From<Error>`, whose values travel as data and come
/// back as the same `E` on the caller's side.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a remote method",
    label = "remote methods return `Result<T, E>` where `E` is `remote_core::Error` or a `Wire` error type",
    note = "derive `Wire` and `std::error::Error` (e.g. with thiserror) for `{Self}`, and implement `From<remote_core::Error>` so a lost connection can be reported as `{Self}`"
)]
pub trait RemoteErrorType: Sized + Send + 'static {
    /// Encodes a local error for the wire.
    fn to_remote(&self) -> RemoteError;
    /// Rebuilds an error from the wire. `decode` decodes [`RemoteError::data`].
    fn from_remote(e: RemoteError) -> Self;
    /// Wraps a toolkit error.
    fn from_error(e: Error) -> Self;
    /// Describes this error type for the schema.
    fn describe(b: &mut SchemaBuilder) -> Ty;
}

impl RemoteErrorType for Error {
    fn to_remote(&self) -> RemoteError {
        Error::to_remote(self)
    }
    fn from_remote(e: RemoteError) -> Self {
        Error::Remote(Box::new(e))
    }
    fn from_error(e: Error) -> Self {
        e
    }
    fn describe(_: &mut SchemaBuilder) -> Ty {
        Ty::RemoteError
    }
}

impl<E> RemoteErrorType for E
where
    E: crate::Wire + std::error::Error + From<Error>,
{
    fn to_remote(&self) -> RemoteError {
        let mut chain = Vec::new();
        let mut src = self.source();
        while let Some(s) = src {
            chain.push(s.to_string());
            src = s.source();
        }
        RemoteError {
            kind: "application".to_owned(),
            type_name: std::any::type_name::<E>().to_owned(),
            message: self.to_string(),
            chain,
            backtrace: None,
            data: crate::codec::encode_detached(self).ok(),
        }
    }
    fn from_remote(e: RemoteError) -> Self {
        if e.kind == "application" {
            if let Some(data) = &e.data {
                if let Ok(v) = crate::codec::decode_detached::<E>(data) {
                    return v;
                }
            }
        }
        E::from(Error::Remote(Box::new(e)))
    }
    fn from_error(e: Error) -> Self {
        E::from(e)
    }
    fn describe(b: &mut SchemaBuilder) -> Ty {
        E::describe(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_error_crosses_by_value_for_application_errors() {
        let e: RemoteError = Error::limit("max_exports", 3, "too many").into();
        assert_eq!(e.kind, "limit_exceeded");
        assert!(e.message.contains("max_exports = 3"));
        let bytes = crate::codec::encode_detached(&e).unwrap();
        let back: RemoteError = crate::codec::decode_detached(&bytes).unwrap();
        assert_eq!(back, e);
        let unauth = Error::Unauthenticated("no".into());
        assert_eq!(RemoteError::from(unauth).kind, "unauthenticated");
    }
}
