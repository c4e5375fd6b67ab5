"""Frames and messages (PROTOCOL.md §1, §3): a 4-byte big-endian length,
then one msgpack array."""

from __future__ import annotations

import asyncio
import struct
import typing

import msgpack

PROTOCOL_MAGIC = "remote"
PROTOCOL_VERSION = 1

HELLO, CALL, RETURN, ERROR, RELEASE, CANCEL, GOODBYE = range(7)
FIELDS = {HELLO: 6, CALL: 6, RETURN: 3, ERROR: 3, RELEASE: 3, CANCEL: 2, GOODBYE: 2}

#: msgpack extension type of a reference into the sender's export table.
EXT_SENDER_EXPORT = 1
#: msgpack extension type of a reference into the receiver's own table.
EXT_RECEIVER_OWN = 2

U32_MAX = 0xFFFF_FFFF


class Limits:
    """The limits this peer enforces (PROTOCOL.md §10); same defaults as
    the Rust reference implementation."""

    def __init__(self, **overrides: typing.Any) -> None:
        self.max_frame_len = 1 << 20
        self.max_handshake_frame_len = 4096
        self.max_calls_in_flight = 128
        self.max_outgoing_calls = 1024
        self.max_exports = 10_000
        self.max_imports = 10_000
        self.handshake_timeout = 10.0
        self.default_deadline = 10.0
        self.max_deadline = 600.0
        # Bytes queued for the peer past which the connection stops reading
        # until the peer has read enough, and how long it may read nothing
        # meanwhile before it is closed.
        self.max_write_queue = 16 << 20
        self.write_stall_timeout = 30.0
        # What the arguments of the peer's running calls may take decoded,
        # each counted at ``DECODED_PER_BYTE`` times its frame's length (a
        # call waits, its frame held undecoded, until there is room; one
        # call always runs); and the most bytes of call frames held back
        # before reading stops.
        self.memory_budget = 64 << 20
        for k, v in overrides.items():
            if not hasattr(self, k):
                raise TypeError(f"unknown limit {k!r}")
            setattr(self, k, v)


#: What one byte of a frame is counted at once decoded: an empty map (one
#: byte, ``0x80``) in an array becomes a ``dict`` (64 bytes) and the list's
#: pointer to it (8), and small maps with integer keys took up to 112 per
#: byte (a red-team pass found 72 short).
DECODED_PER_BYTE = 128


def peek(payload: bytes) -> typing.Tuple[typing.Optional[int], typing.Optional[int]]:
    """A message's kind and second field, where each is an integer (the
    second is a call id for every kind that has one), read from the first
    bytes alone: nothing else is decoded and no reference resolved. ``None``
    for what is not an integer (the full decode then says why)."""
    n, pos = _array_len(payload)
    if n is None or n < 2:
        return None, None
    kind, pos = _int_at(payload, pos)
    second, _ = _int_at(payload, pos) if kind is not None else (None, pos)
    return kind, second


def _array_len(b: bytes) -> typing.Tuple[typing.Optional[int], int]:
    if b and 0x90 <= b[0] <= 0x9F:
        return b[0] & 0x0F, 1
    if len(b) >= 3 and b[0] == 0xDC:
        return int.from_bytes(b[1:3], "big"), 3
    if len(b) >= 5 and b[0] == 0xDD:
        return int.from_bytes(b[1:5], "big"), 5
    return None, 0


#: msgpack's integer markers: (bytes that follow, signed).
_INTS = {0xCC: (1, False), 0xCD: (2, False), 0xCE: (4, False), 0xCF: (8, False),
         0xD0: (1, True), 0xD1: (2, True), 0xD2: (4, True), 0xD3: (8, True)}


def _int_at(b: bytes, pos: int) -> typing.Tuple[typing.Optional[int], int]:
    if pos >= len(b):
        return None, pos
    m = b[pos]
    if m <= 0x7F:
        return m, pos + 1
    if m >= 0xE0:
        return m - 0x100, pos + 1
    if m in _INTS:
        size, signed = _INTS[m]
        if pos + 1 + size > len(b):
            return None, pos
        return int.from_bytes(b[pos + 1:pos + 1 + size], "big", signed=signed), pos + 1 + size
    return None, pos


class FrameTooLarge(Exception):
    """A length prefix over the receiver's limit."""

    def __init__(self, length: int, limit_name: str, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds {limit_name} = {limit}")


def frame(message: list, default: typing.Callable[[typing.Any], typing.Any]) -> bytes:
    """One framed message; ``default`` encodes references."""
    payload = msgpack.packb(message, default=default, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader, limit: int, limit_name: str) -> typing.Optional[bytes]:
    """The next frame's payload, ``None`` at a clean end of stream. A
    length over ``limit`` raises before anything is read or allocated."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ConnectionError("stream ended inside a frame's length prefix") from None
    (length,) = struct.unpack(">I", head)
    if length > limit:
        raise FrameTooLarge(length, limit_name, limit)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ConnectionError("stream ended inside a frame") from None


def hello(auth: typing.Optional[bytes]) -> list:
    """A hello with ``auth`` in its authentication slot (§7.1)."""
    return [HELLO, PROTOCOL_MAGIC, PROTOCOL_VERSION, PROTOCOL_VERSION, [], auth]


def error_value(kind: str, type_name: str, message: str, chain: typing.Sequence[str] = (),
                backtrace: typing.Optional[str] = None, data: typing.Any = None) -> list:
    """The 6-element error array of an error message (§3.4)."""
    return [kind, type_name, message, list(chain), backtrace, data]


def is_u32(v: typing.Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U32_MAX


def reference(code: int, data: bytes) -> int:
    """The object id of a reference (msgpack extension ``code``, 1 or 2,
    §2); ``ValueError`` for any other extension, a length other than 4, or
    a type-1 reference to object 0 or ``U32_MAX``."""
    if code not in (EXT_SENDER_EXPORT, EXT_RECEIVER_OWN):
        raise ValueError(f"extension type {code} is not allowed")
    if len(data) != 4:
        raise ValueError(f"extension type {code} of {len(data)} bytes")
    oid = int.from_bytes(data, "big")
    if code == EXT_SENDER_EXPORT:
        if oid == 0:
            raise ValueError("a reference (ext type 1) to object 0: the root is never sent as a reference")
        if oid == U32_MAX:
            # PROTOCOL.md §4: the highest id names no object.
            raise ValueError(f"a reference (ext type 1) to object {oid}: that id names no object")
    return oid


def check_shape(msg: typing.Any) -> int:
    """Checks a decoded message's kind and field count; returns the kind."""
    if not isinstance(msg, list) or not msg:
        raise ValueError("a message is a non-empty array")
    kind = msg[0]
    if not isinstance(kind, int) or kind not in FIELDS:
        raise ValueError(f"unknown message kind {kind!r}")
    if len(msg) != FIELDS[kind]:
        raise ValueError(f"message kind {kind} has {FIELDS[kind]} fields, got {len(msg)}")
    # A call id (and a released object id) is a u32 wherever it appears:
    # a hostile peer's `[2, [1], nil]` raised TypeError past the reader.
    if kind in (RETURN, ERROR, CANCEL, RELEASE) and not is_u32(msg[1]):
        # The type, not the value: a value nested 1,000 deep raised
        # RecursionError in its repr (a red-team pass).
        shown = repr(msg[1]) if isinstance(msg[1], (int, str)) else type(msg[1]).__name__
        raise ValueError(f"message kind {kind}: {shown[:64]} is not a u32 id")
    if kind == GOODBYE and not isinstance(msg[1], str):
        raise ValueError(f"a goodbye's reason is a string, got {type(msg[1]).__name__}")
    return kind
