"""The Python runtime as a server, against a raw peer: bad input gets a
clear goodbye or error, cancels get exactly one reply, references are
counted. No Rust needed (both ends on 127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import socket
import struct
import typing

import msgpack

import remote_rpc
from conftest import eventually, run


class Root:
    def __init__(self) -> None:
        self.kept: typing.List[typing.Any] = []
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    def add(self, a: int, b: int) -> int:
        return a + b

    async def sleep(self, seconds: float) -> None:
        self.started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def keep(self, obj: typing.Any) -> None:
        self.kept.append(obj)

    def make(self) -> typing.Any:
        return Root()


class Raw:
    """A hand-driven peer: frames in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(self, message: typing.Any) -> None:
        payload = msgpack.packb(message, use_bin_type=True)
        self.writer.write(struct.pack(">I", len(payload)) + payload)

    async def recv(self) -> typing.Optional[list]:
        """The next message, or None at the end of the stream."""
        try:
            (n,) = struct.unpack(">I", await self.reader.readexactly(4))
            payload = await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            return None
        return msgpack.unpackb(payload, raw=False, strict_map_key=False,
                               ext_hook=lambda code, data: (code, int.from_bytes(data, "big")))


async def serve(root: typing.Any, limits: typing.Optional[remote_rpc.Limits] = None):
    """A Python server on 127.0.0.1:0; returns (raw client, server conns, close)."""
    conns: typing.List[remote_rpc.Connection] = []

    async def accepted(reader, writer):
        conns.append(await remote_rpc.Connection.open(reader, writer, root=root, limits=limits))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = Raw(reader, writer)
    raw.send([0, "remote", 1, 1, [], None])
    assert (await raw.recv())[:2] == [0, "remote"]
    assert await eventually(lambda: _true(bool(conns)))
    return raw, conns[0], server


async def slow_reader(server: typing.Any) -> Raw:
    """A raw peer of ``server`` with a 4 KiB receive buffer, past its
    handshake: what the server sends it soon stays queued."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.sockets[0].getsockname())
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    raw = Raw(reader, writer)
    raw.send([0, "remote", 1, 1, [], None])
    assert (await raw.recv())[:2] == [0, "remote"]
    return raw


async def _true(v: bool) -> bool:
    return v


def test_oversized_frame_gets_a_goodbye_naming_the_limit():
    async def main():
        raw, conn, server = await serve(Root(), remote_rpc.Limits(max_frame_len=1024))
        raw.writer.write(struct.pack(">I", 1 << 30))  # and no payload
        bye = await raw.recv()
        assert bye == [6, "frame of 1073741824 bytes exceeds max_frame_len = 1024"], bye
        assert await raw.recv() is None
        await conn.closed()
        server.close()

    run(main())


def test_malformed_message_is_a_violation():
    async def main():
        raw, conn, server = await serve(Root())
        raw.send([42, "what"])
        bye = await raw.recv()
        assert bye[0] == 6 and bye[1].startswith("protocol violation: malformed message"), bye
        assert "unknown message kind 42" in bye[1]
        server.close()

    run(main())


def test_a_peer_that_reads_nothing_is_not_read_past_max_write_queue():
    """A peer flooding calls answered at once (unknown methods), reading
    nothing: reading stops while more than ``max_write_queue`` is queued
    for it (it grew without bound: 14 MB sent, 73 MB queued, a red-team
    pass)."""
    async def main():
        limit = 64 << 10
        conns: typing.List[remote_rpc.Connection] = []

        async def accepted(reader, writer):
            conns.append(await remote_rpc.Connection.open(
                reader, writer, root=Root(), limits=remote_rpc.Limits(max_write_queue=limit)))

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        raw = await slow_reader(server)
        writer = raw.writer
        # 3 MB of calls; their refusals, about 100 bytes each, 20 MB.
        for i in range(1, 200_001):
            raw.send([1, i, 0, "nope", 60000, []])
        assert await eventually(lambda: _true(bool(conns) and conns[0].held_back > 0))
        queued = conns[0]._writer.transport.get_write_buffer_size()
        assert limit < queued <= limit + (64 << 10), queued
        writer.transport.abort()
        server.close()

    run(main())


def test_a_reply_to_a_call_id_that_is_no_u32_is_a_violation():
    """A return whose call id is an array raised TypeError in the reader,
    which died and left the connection open: every call waited out its
    deadline (a red-team pass). Now a goodbye, and the connection closes."""
    async def main():
        for bad in ([2, [1], None], [3, "7", None], [5, -1]):
            raw, conn, server = await serve(Root())
            raw.send(bad)
            bye = await raw.recv()
            assert bye[0] == 6 and "is not a u32 id" in bye[1], bye
            await conn.closed()
            server.close()

    run(main())


def test_call_errors_are_replies_not_disconnects():
    async def main():
        raw, conn, server = await serve(Root())
        raw.send([1, 1, 0, "nope", 1000, []])
        raw.send([1, 2, 0, "add", 1000, [1]])
        raw.send([1, 3, 9, "add", 1000, [1, 2]])
        raw.send([1, 4, 0, "add", 1000, [40, 2]])
        got = {}
        while len(got) < 4:
            m = await raw.recv()
            got[m[1]] = m
        assert got[1][2][0] == "unknown_method", got[1]
        assert got[2][2][0] == "bad_arguments", got[2]
        assert got[3][2][0] == "unknown_object", got[3]
        assert got[4] == [2, 4, 42]
        server.close()

    run(main())


def test_a_cancel_is_answered_once_with_cancelled_then_the_id_is_free():
    async def main():
        root = Root()
        raw, conn, server = await serve(root)
        raw.send([1, 50, 0, "sleep", 60_000, [30]])
        await asyncio.wait_for(root.started.wait(), 30)
        raw.send([5, 50])
        reply = await raw.recv()
        assert reply[:2] == [3, 50] and reply[2][0] == "cancelled", reply
        await asyncio.wait_for(root.cancelled.wait(), 30)
        raw.send([1, 50, 0, "add", 1000, [1, 2]])  # the id, reused
        assert await raw.recv() == [2, 50, 3]
        raw.send([5, 50])  # answered already: ignored, no reply
        raw.send([1, 51, 0, "add", 1000, [2, 2]])
        assert await raw.recv() == [2, 51, 4]
        server.close()

    run(main())


def test_exports_are_counted_and_bad_releases_are_violations():
    async def main():
        raw, conn, server = await serve(Root())
        raw.send([1, 1, 0, "make", 1000, []])
        raw.send([1, 2, 0, "make", 1000, []])
        r1, r2 = await raw.recv(), await raw.recv()
        assert r1[2] == (1, 1) and r2[2] == (1, 2), (r1, r2)
        assert conn.exported_objects() == 2
        raw.send([4, 1, 1])
        assert await eventually(lambda: _true(conn.exported_objects() == 1))
        raw.send([4, 2, 5])  # more than was sent
        bye = await raw.recv()
        assert bye[0] == 6 and "bad release of object 2 (count 5)" in bye[1], bye
        server.close()

    run(main())


def test_an_imported_reference_is_released_with_every_receipt():
    async def main():
        root = Root()
        raw, conn, server = await serve(root)
        ref = msgpack.ExtType(1, (7).to_bytes(4, "big"))
        raw.send([1, 1, 0, "keep", 1000, [ref]])
        raw.send([1, 2, 0, "keep", 1000, [ref]])
        assert (await raw.recv())[:2] == [2, 1]
        assert (await raw.recv())[:2] == [2, 2]
        assert conn.imported_objects() == 1
        root.kept.clear()
        assert await raw.recv() == [4, 7, 2], "one release for both receipts"
        server.close()

    run(main())


def test_a_held_import_gives_its_receipts_back_and_stays(monkeypatch):
    from remote_rpc import connection

    monkeypatch.setattr(connection, "_GIVE_BACK_AT", 3)

    async def main():
        root = Root()
        raw, conn, server = await serve(root)
        ref = msgpack.ExtType(1, (7).to_bytes(4, "big"))
        messages = []
        for i in range(1, 8):
            raw.send([1, i, 0, "keep", 1000, [ref]])
        # 7 receipts while held: 2 given back at the 3rd, 2 at the 5th,
        # 2 at the 7th, and the replies to the 7 calls.
        while len([m for m in messages if m[0] == 2]) < 7:
            messages.append(await raw.recv())
        releases = [m for m in messages if m[0] == 4]
        while len(releases) < 3:
            m = await raw.recv()
            assert m[0] == 4, m
            releases.append(m)
        assert releases == [[4, 7, 2]] * 3
        assert conn.imported_objects() == 1, "the import stays"
        root.kept.clear()
        assert await raw.recv() == [4, 7, 1], "the receipt kept, released at the end"
        server.close()

    run(main())


class _Echo:
    async def echo(self, data: bytes) -> int:
        return len(data)

    async def big(self, data: bytes) -> bytes:
        return data


def test_peers_over_max_write_queue_both_ways_do_not_deadlock():
    """Two Python peers each make 40 calls of 900 KB of the other at once,
    and one uploads 40 whose replies echo them: every call is answered.
    (Reading nothing, replies included, while over ``max_write_queue``,
    both waited for the other to read: 1 call of 40 got through, then
    write_stall_timeout closed them, a red-team pass.)"""
    async def main():
        limits = remote_rpc.Limits(max_write_queue=16 << 20, write_stall_timeout=30.0)
        conns: typing.List[remote_rpc.Connection] = []

        async def accepted(reader, writer):
            conns.append(await remote_rpc.Connection.open(reader, writer, root=_Echo(), limits=limits))

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = await remote_rpc.Connection.open(reader, writer, root=_Echo(), limits=limits)
        assert await eventually(lambda: _true(bool(conns)))
        data = b"x" * 900_000
        both = [client.root().echo(data) for _ in range(40)]
        both += [conns[0].root().echo(data) for _ in range(40)]
        assert await asyncio.gather(*both) == [len(data)] * 80
        echoed = await asyncio.gather(*[client.root().big(data) for _ in range(40)])
        assert echoed == [data] * 40
        await client.aclose()
        server.close()

    run(main())
