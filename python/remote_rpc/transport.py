"""Transports: TCP and Unix sockets, and this process's stdin/stdout."""

from __future__ import annotations

import asyncio
import sys
import typing

from . import wire
from .connection import Connection
from .errors import ConnectionLost


async def connect(addr: str, *, root: typing.Any = None, limits: typing.Optional[wire.Limits] = None,
                  credentials: typing.Optional[typing.Tuple[str, bytes]] = None) -> Connection:
    """Connects to ``tcp://host:port`` or ``unix:///path``, serving ``root``;
    ``credentials`` (user, key) authenticate to a server that requires it
    (PROTOCOL.md §7.1)."""
    if addr.startswith("tcp://"):
        host, _, port = addr[len("tcp://"):].rpartition(":")
        opening = asyncio.open_connection(host.strip("[]"), int(port))
    elif addr.startswith("unix://"):
        opening = asyncio.open_unix_connection(addr[len("unix://"):])
    else:
        raise ValueError(f"bad address {addr!r}: use tcp://host:port or unix:///path")
    # Bounded as the handshake is: a server that never accepts (its SYNs
    # dropped) held the connect for the kernel's retries, about two minutes.
    limit = (limits or wire.Limits()).handshake_timeout
    try:
        reader, writer = await asyncio.wait_for(opening, limit)
    except asyncio.TimeoutError:
        raise ConnectionLost(f"connecting to {addr} did not finish within handshake_timeout = {limit}s") from None
    return await Connection.open(reader, writer, root=root, limits=limits, credentials=credentials,
                                 peer=addr)


class _PipeWriter:
    """A minimal writer over a pipe transport (stdout)."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._t = transport

    def write(self, data: bytes) -> None:
        self._t.write(data)

    def close(self) -> None:
        self._t.close()

    async def wait_closed(self) -> None:
        return None


async def serve_stdio(root: typing.Any, *, limits: typing.Optional[wire.Limits] = None) -> Connection:
    """Serves ``root`` on this process's stdin/stdout (the child side of
    Rust's ``ConnectionBuilder::spawn_child``). Log to stderr only."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2 ** 16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, sys.stdout.buffer)
    return await Connection.open(reader, _PipeWriter(transport), root=root, limits=limits, peer="stdio")
