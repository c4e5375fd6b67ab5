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


class _PipeFlow(asyncio.BaseProtocol):
    """The write pipe's flow control: whether its transport asked us to
    pause (its buffer over the high-water mark), and who waits for it to
    resume."""

    def __init__(self) -> None:
        self._paused = False
        self._lost = False
        self._waiters: typing.List[asyncio.Future] = []

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: typing.Optional[BaseException]) -> None:
        self._lost = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def drained(self) -> None:
        if self._paused and not self._lost:
            w = asyncio.get_running_loop().create_future()
            self._waiters.append(w)
            await w
        if self._lost:
            raise ConnectionResetError("the pipe closed")


class _PipeWriter:
    """A writer over a pipe transport (stdout): its ``transport`` tells what
    it queues, and ``drain`` waits for the peer to read, so the peer's calls
    are held back when it reads nothing (PROTOCOL.md §9), as over sockets
    (without them, nothing was held back over stdio: red-team pass 20,
    F10)."""

    def __init__(self, transport: asyncio.WriteTransport, flow: _PipeFlow) -> None:
        self.transport = transport
        self._flow = flow

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        await self._flow.drained()

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        return None


async def serve_stdio(root: typing.Any, *, limits: typing.Optional[wire.Limits] = None) -> Connection:
    """Serves ``root`` on this process's stdin/stdout (the child side of
    Rust's ``ConnectionBuilder::spawn_child``). Log to stderr only."""
    return await _serve_pipes(root, sys.stdin.buffer, sys.stdout.buffer, limits)


async def _serve_pipes(root: typing.Any, rfile: typing.Any, wfile: typing.Any,
                       limits: typing.Optional[wire.Limits], peer: str = "stdio") -> Connection:
    """Serves ``root`` on a pair of pipes (file objects)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2 ** 16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), rfile)
    transport, flow = await loop.connect_write_pipe(_PipeFlow, wfile)
    return await Connection.open(reader, _PipeWriter(transport, flow), root=root, limits=limits, peer=peer)
