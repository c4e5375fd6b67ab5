//! Errors: what a call can return ([`Error`]) and what crossed the wire from a
//! failing remote method ([`RemoteError`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::schema::{SchemaBuilder, Ty};

/// Everything a remote call, a connection or a server can fail with.
///
/// Losing a connection, an expired deadline and a peer's protocol violation
/// are ordinary values of this type. Method error types must implement
/// `From<Error>` so they can carry these; the simplest way keeps the value
/// whole (`Error` is [`Wire`](crate::Wire)), so callers can still ask it
/// what happened:
///
/// ```
/// use remote_core::{Error, Wire};
///
/// #[derive(Debug, Wire, thiserror::Error)]
/// pub enum ShopError {
///     #[error("sold out")]
///     SoldOut,
///     #[error(transparent)]
///     Remote(#[from] Error),
/// }
///
/// fn advice(e: &ShopError) -> &'static str {
///     match e {
///         ShopError::SoldOut => "try tomorrow",
///         ShopError::Remote(e) if e.is_connection_lost() => "reconnect and retry",
///         ShopError::Remote(e) if e.is_deadline() => "retry with a longer deadline",
///         ShopError::Remote(e) if e.limit_name() == Some("max_frame_len") => "send less",
///         ShopError::Remote(_) => "give up",
///     }
/// }
///
/// let lost: ShopError = Error::ConnectionLost("peer went away".into()).into();
/// assert_eq!(advice(&lost), "reconnect and retry");
/// ```
///
/// # Predicates
///
/// Match on the variant, or ask: [`is_connection_lost`](Error::is_connection_lost)
/// (this call's own connection is gone), [`is_deadline`](Error::is_deadline),
/// [`is_limit`](Error::is_limit) and [`limit_name`](Error::limit_name),
/// [`is_cancelled`](Error::is_cancelled), [`is_remote`](Error::is_remote)
/// and [`remote_kind`](Error::remote_kind). [`kind`](Error::kind) is the
/// name the error crosses the wire with.
///
/// # Remote error kinds
///
/// A failure at the serving peer arrives as [`Error::Remote`] (unless the
/// method's error type rebuilds it, for kind `application`), whose
/// [`RemoteError::kind`] is one of (PROTOCOL.md §3.4):
///
/// | kind | meaning |
/// |---|---|
/// | `application` | the method returned `Err(e)`; `data` holds `e` |
/// | `panic` | the method panicked; `message` is the panic message. The serving peer keeps serving |
/// | `unknown_object` | the target (or a reference in the arguments) names no object of the receiver |
/// | `unknown_method` | the target's interface has no method with that wire name |
/// | `bad_arguments` | the arguments did not decode into the method's parameter types |
/// | `unauthenticated` | the method is `#[remote(requires_auth)]` and the connection did not authenticate |
/// | `limit_exceeded` | a limit was hit at the peer; `message` names it and its value |
/// | `deadline_exceeded` | the call's deadline passed at the serving peer (reported as [`Error::DeadlineExceeded`]) |
/// | `cancelled` | the caller cancelled the call before it was answered |
/// | `connection_lost`, `protocol`, `encode`, `io`, `handshake`, ... | an `Error` raised by the method itself (its own outgoing call failed), named by its kind |
///
/// A toolkit error that crossed the wire inside an application error (the
/// `Remote(#[from] Error)` variant above, filled in at the serving peer)
/// also comes back as [`Error::Remote`] with its kind: it happened over
/// there, so [`is_connection_lost`](Error::is_connection_lost) stays about
/// the caller's own connection.
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
    /// A blocking call was made on a thread inside a tokio runtime, where it
    /// could deadlock (see [`blocking`](crate::blocking) for what works).
    #[error(
        "blocking remote call made on a thread inside a tokio runtime, where it could deadlock; \
         from async code call an async method with .await, or run the blocking call in \
         remote_core::blocking::spawn_blocking(move || ..) (tokio's spawn_blocking alone is \
         not enough: wrap its closure in remote_core::blocking::allow_blocking), \
         or on a std::thread"
    )]
    BlockingInAsync,
    /// The peer's root is not the interface asked for: another interface
    /// (`the server's root is `A`, not `B``), or, from
    /// [`Connection::try_root`](crate::Connection::try_root) only, another
    /// version of it (their fingerprints differ).
    #[error("wrong interface: {0}")]
    WrongInterface(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl Error {
    /// Whether this call's own connection is gone (closed, broken, timed
    /// out idle): the message says why. The call may or may not have run.
    ///
    /// ```
    /// let e = remote_core::Error::ConnectionLost("no traffic for idle_timeout = 300s".into());
    /// assert!(e.is_connection_lost());
    /// ```
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost(_))
    }

    /// Whether the call's deadline passed (here or at the serving peer).
    ///
    /// ```
    /// let e = remote_core::Error::DeadlineExceeded(std::time::Duration::from_secs(1));
    /// assert!(e.is_deadline() && !e.is_connection_lost());
    /// ```
    pub fn is_deadline(&self) -> bool {
        matches!(self, Error::DeadlineExceeded(_))
            || self.remote_kind() == Some("deadline_exceeded")
    }

    /// Whether a configured limit was hit, here or at the peer (see
    /// [`limit_name`](Error::limit_name) for which).
    pub fn is_limit(&self) -> bool {
        matches!(self, Error::LimitExceeded { .. }) || self.remote_kind() == Some("limit_exceeded")
    }

    /// The name of the limit that was hit (a field of
    /// [`Limits`](crate::Limits), e.g. `max_frame_len`), here or at the peer.
    ///
    /// ```
    /// use remote_core::{Error, RemoteError};
    /// let at_peer = Error::Remote(Box::new(RemoteError {
    ///     kind: "limit_exceeded".into(),
    ///     type_name: "remote_core::Error".into(),
    ///     message: "limit exceeded: max_calls_in_flight = 128 (call 7 refused)".into(),
    ///     chain: vec![],
    ///     backtrace: None,
    ///     data: None,
    /// }));
    /// assert!(at_peer.is_limit());
    /// assert_eq!(at_peer.limit_name(), Some("max_calls_in_flight"));
    /// ```
    pub fn limit_name(&self) -> Option<&str> {
        match self {
            Error::LimitExceeded { limit, .. } => Some(limit),
            Error::Remote(r) if r.kind == "limit_exceeded" => limit_in(&r.message),
            _ => None,
        }
    }

    /// Whether the peer's root is another interface, or another version of
    /// this one, than the one asked for ([`Error::WrongInterface`]).
    ///
    /// ```
    /// let e = remote_core::Error::WrongInterface("the server's root is `A`, not `B`".into());
    /// assert!(e.is_wrong_interface() && !e.is_connection_lost());
    /// ```
    pub fn is_wrong_interface(&self) -> bool {
        matches!(self, Error::WrongInterface(_))
    }

    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled) || self.remote_kind() == Some("cancelled")
    }

    /// Whether the serving peer reported the failure ([`Error::Remote`]).
    pub fn is_remote(&self) -> bool {
        matches!(self, Error::Remote(_))
    }

    /// The kind of a failure the serving peer reported (see the table in
    /// [`Error`]'s docs), or `None` for a local error.
    pub fn remote_kind(&self) -> Option<&str> {
        match self {
            Error::Remote(r) => Some(&r.kind),
            _ => None,
        }
    }

    /// What the serving peer reported, or `None` for a local error.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// The name this error crosses the wire with (`connection_lost`,
    /// `limit_exceeded`, ...; `remote` for [`Error::Remote`]).
    pub fn kind(&self) -> &'static str {
        self.kind_code()
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
            Error::WrongInterface(_) => "wrong_interface",
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
#[diagnostic::do_not_recommend]
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

/// `Error` crosses by value inside an application error (its wire form is a
/// [`RemoteError`]), so `#[error(transparent)] Remote(#[from] Error)` works
/// in a `#[derive(Wire)]` error type. It decodes as [`Error::Remote`]: a
/// toolkit error the peer had is not one the caller had.
impl Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Error::to_remote(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RemoteError::deserialize(d).map(|r| Error::Remote(Box::new(r)))
    }
}

#[diagnostic::do_not_recommend]
impl crate::Wire for Error {
    fn describe(_: &mut SchemaBuilder) -> Ty {
        Ty::RemoteError
    }
}

/// An error type a remote method may return: `E` in `Result<T, E>`.
///
/// ```
/// use remote_core::{Error, RemoteErrorType, Wire};
///
/// #[derive(Debug, Wire, thiserror::Error)]
/// pub enum AppError {
///     #[error("not found: {0}")]
///     NotFound(String),
///     #[error(transparent)]
///     Remote(#[from] Error),
/// }
///
/// // What crosses the wire, and what the caller rebuilds from it.
/// let wire = AppError::NotFound("k".into()).to_remote();
/// assert_eq!(wire.kind, "application");
/// assert!(matches!(AppError::from_remote(wire), AppError::NotFound(k) if k == "k"));
/// fn is_error_type<E: RemoteErrorType>() {}
/// is_error_type::<Error>();
/// ```
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

/// One impl covers [`Error`] too (it is `Wire + std::error::Error +
/// From<Error>`): two impls would overlap. `Error` keeps its own wire form
/// (its kind, not `application`) through the two checks on `TypeId` below.
impl<E> RemoteErrorType for E
where
    E: crate::Wire + std::error::Error + From<Error>,
{
    fn to_remote(&self) -> RemoteError {
        if let Some(e) = (self as &dyn std::any::Any).downcast_ref::<Error>() {
            return Error::to_remote(e);
        }
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
        let is_core = std::any::TypeId::of::<E>() == std::any::TypeId::of::<Error>();
        if e.kind == "application" && !is_core {
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
        b.ty::<E>()
    }
}

/// The limit a `limit_exceeded` error's message names: `NAME` in
/// `limit exceeded: NAME = VALUE (...)`.
pub(crate) fn limit_in(message: &str) -> Option<&str> {
    message
        .strip_prefix("limit exceeded: ")
        .and_then(|m| m.split_once(" = "))
        .map(|(name, _)| name)
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
