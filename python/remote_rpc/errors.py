"""Errors: what a failed call raises, and what a served method raises to
return a typed error (PROTOCOL.md §3.4)."""

from __future__ import annotations

import traceback
import typing

from . import wire


class RemoteError(Exception):
    """A call failed at the peer (an error message, PROTOCOL.md §3.4).

    ``kind`` says what failed (``application``, ``panic``, ``unknown_method``,
    ``cancelled``, ...), ``type_name`` the error's type at the peer,
    ``chain`` its causes, ``backtrace`` the peer's traceback (if captured)
    and ``data`` the typed error value for kind ``application`` (decoded
    into the stub's dataclass when the call went through typed stubs; the
    plain msgpack value otherwise).
    """

    def __init__(
        self,
        kind: str,
        type_name: str,
        message: str,
        chain: typing.Sequence[str] = (),
        backtrace: typing.Optional[str] = None,
        data: typing.Any = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.type_name = type_name
        self.message = message
        self.chain = list(chain)
        self.backtrace = backtrace
        self.data = data

    def __str__(self) -> str:
        text = f"remote error ({self.kind}) {self.type_name}: {self.message}"
        for cause in self.chain:
            text += f"\n  caused by: {cause}"
        if self.backtrace:
            text += f"\nremote backtrace:\n{self.backtrace}"
        return text


class ApplicationError(Exception):
    """Raise this from a served method to return a typed error.

    ``value`` is the error value (a stub dataclass or a plain msgpack
    value) sent as the error's ``data``; the Rust caller rebuilds its error
    type from it. ``type_name`` names the error type (default: the schema
    key of the stub class, else its Python name).
    """

    def __init__(self, value: typing.Any, message: typing.Optional[str] = None,
                 type_name: typing.Optional[str] = None) -> None:
        self.value = value
        self.type_name = type_name or getattr(value, "__rust_path__", None) or (
            "python:" + type(value).__qualname__)
        super().__init__(message if message is not None else repr(value))


class ConnectionLost(Exception):
    """The connection closed before the call was answered."""


class DeadlineExceeded(Exception):
    """The call's deadline passed; it was cancelled at the peer."""


class ProtocolViolation(Exception):
    """The peer broke the protocol; the connection is closed with a goodbye."""


def _exception_type(e: BaseException) -> str:
    t = type(e)
    return f"python:{t.__module__}.{t.__qualname__}"


def error_value_of(e: BaseException) -> list:
    """The wire error for an exception raised by a served method (§3.4)."""
    if isinstance(e, ApplicationError):
        from .typed import plain  # late: typed imports the connection

        return wire.error_value("application", e.type_name, str(e), _chain(e),
                                None, plain(e.value))
    if isinstance(e, RemoteError):
        if e.type_name == "remote_core::Error" and e.kind != "application" and not e.chain \
                and e.backtrace is None and e.data is None and e.kind in (
                    "unknown_method", "bad_arguments", "limit_exceeded", "encode"):
            return wire.error_value(e.kind, e.type_name, e.message)
        # Re-raising a remote error keeps its traceback (as Rust does).
        return wire.error_value(e.kind, e.type_name, e.message,
                                ["re-raised by a remote method"] + list(e.chain), e.backtrace, None)
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return wire.error_value("panic", _exception_type(e), str(e) or type(e).__name__, _chain(e), tb, None)


def _chain(e: BaseException) -> typing.List[str]:
    out = []
    cause = e.__cause__ or e.__context__
    while cause is not None and len(out) < 16:
        out.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    return out
