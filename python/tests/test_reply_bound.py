"""The Python runtime's bound on the replies of running calls (red-team
pass 19's known gap): a call starts only while the running calls'
estimated replies fit in ``max_write_queue``. Both ends on 127.0.0.1,
port 0; the peer is hand-driven."""

from __future__ import annotations

import asyncio
import os
import typing

import msgpack

import remote_rpc
from conftest import eventually, run
from test_hostile_peer import Busy, _replies
from remote_rpc.transport import _serve_pipes
from test_runtime import Raw, _true, serve, slow_reader



class _Gate:
    """A root whose ``wait`` runs until the gate opens, and whose ``big``
    returns ``n`` bytes once it opens."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def wait(self) -> int:
        await self.open.wait()
        return 1

    async def big(self, n: int) -> bytes:
        await self.open.wait()
        return b"x" * n

    def now(self, n: int) -> bytes:
        return b"x" * n

    def release(self) -> None:
        self.open.set()


def test_running_calls_replies_are_bounded_by_the_write_queue():
    """Started whenever the output had room, every call a peer that reads
    nothing had in flight returned a full frame at once, queueing
    ``max_calls_in_flight × max_frame_len`` (130 MB from 2.7 KB of calls,
    red-team pass 19). Now a call starts only while the running calls'
    replies, estimated at ``max_frame_len`` until the first, fit in
    ``max_write_queue``: the rest wait, and each gets its reply once the
    peer reads."""
    async def main():
        queue = 2 << 20
        root = _Gate()
        conns: typing.List[remote_rpc.Connection] = []

        async def accepted(reader, writer):
            conns.append(await remote_rpc.Connection.open(
                reader, writer, root=root, limits=remote_rpc.Limits(max_write_queue=queue)))

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        raw = await slow_reader(server)  # reads nothing until the end
        assert await eventually(lambda: _true(bool(conns)))
        conn = conns[0]
        calls = 40
        for i in range(calls):
            raw.send([1, i, 0, "big", 60_000, [900_000]])
        assert await eventually(lambda: _true(conn._running + len(conn._held_calls) == calls))
        # Two fit before the first reply tells more (1 MiB estimated each).
        assert conn._running == 2, conn._running
        root.open.set()
        assert await eventually(lambda: _true(conn._running == 0 and conn._queued() > 0))
        assert conn._queued() <= queue + (1 << 20), conn._queued()
        # The kernel's buffers take a few replies; the rest wait.
        assert len(conn._held_calls) >= calls // 2, len(conn._held_calls)
        got = await _replies(raw, set(range(calls)))
        assert all(len(got[i][2]) == 900_000 for i in range(calls))
        server.close()

    run(main(), timeout=120)


def test_calls_with_small_replies_run_side_by_side():
    """The estimate follows the replies: once they are small, as many calls
    run at once as ``max_calls_in_flight`` lets (a busy honest client is
    not held to two calls at a time)."""
    async def main():
        root = _Gate()
        raw, conn, server = await serve(root, remote_rpc.Limits(max_write_queue=2 << 20))
        raw.send([1, 0, 0, "wait", 60_000, []])
        root.open.set()
        assert (await _replies(raw, {0}))[0] == [2, 0, 1]
        root.open.clear()
        for i in range(1, 65):
            raw.send([1, i, 0, "wait", 60_000, []])
        assert await eventually(lambda: _true(conn._running == 64)), (conn._running, len(conn._held_calls))
        root.open.set()
        got = await _replies(raw, set(range(1, 65)))
        assert all(got[i] == [2, i, 1] for i in range(1, 65))
        server.close()

    run(main())


def test_a_call_nested_under_a_handler_awaiting_the_peer_starts():
    """A handler that awaits its callback lends its reply's room: the
    peer's call made before it answers the callback starts, though the
    handler's estimated reply alone fills ``max_write_queue`` (counted,
    the two waited for each other until their deadlines)."""
    async def main():
        raw, conn, server = await serve(Busy(), remote_rpc.Limits(max_write_queue=1 << 20))
        cb = msgpack.ExtType(1, (1).to_bytes(4, "big"))
        raw.send([1, 0, 0, "process", 60_000, [b"", cb]])
        callback = await raw.recv()
        assert callback[0] == 1 and callback[3] == "more", callback
        raw.send([1, 1, 0, "add", 60_000, [1, 2]])
        assert (await _replies(raw, {1}))[1] == [2, 1, 3]
        raw.send([2, callback[1], 7])
        assert (await _replies(raw, {0}))[0] == [2, 0, 7]
        server.close()

    run(main(), timeout=30)


class _PipeOut:
    """Writes to a pipe (the served side's stdin), blocking: small frames."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.fd, data):]


def test_calls_over_pipes_are_held_back_when_the_peer_reads_nothing():
    """Over stdio (pipes) the output queue's size was not known, so nothing
    was held back: a peer that read nothing had every call run and its
    reply queued (red-team pass 20, F10). Now the pipe's transport tells
    what it queues, and the calls wait as over a socket."""
    async def main():
        loop = asyncio.get_running_loop()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        reader = asyncio.StreamReader(limit=1 << 16)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(out_r, "rb", buffering=0))
        raw = Raw(reader, _PipeOut(in_w))
        raw.send([0, "remote", 1, 1, [], None])
        queue = 1 << 20
        conn = await _serve_pipes(_Gate(), os.fdopen(in_r, "rb", buffering=0),
                                  os.fdopen(out_w, "wb", buffering=0),
                                  remote_rpc.Limits(max_write_queue=queue), "pipe")
        assert (await raw.recv())[:2] == [0, "remote"]
        calls = 40
        for i in range(calls):
            raw.send([1, i, 0, "now", 60_000, [900_000]])  # we read nothing now
        assert await eventually(lambda: _true(
            conn._running == 0 and (len(conn._held_calls) > 0 or conn._queued() > calls // 2 * 900_000)))
        assert conn._queued() <= queue + (1 << 20), conn._queued()
        got = await _replies(raw, set(range(calls)))
        assert all(len(got[i][2]) == 900_000 for i in range(calls))
        conn.close()
        os.close(in_w)

    run(main(), timeout=120)


def test_held_calls_start_as_the_peer_reads_while_a_long_call_runs():
    """Calls held for their replies' room looked again only when a running
    call ended: with one long call running and the peer reading all that
    was queued, they waited for it to end (red-team pass 32: 29 of 300
    downloads beside a long poll). Now they start as the output drains."""
    async def main():
        root = _Gate()
        conns: typing.List[remote_rpc.Connection] = []

        async def accepted(reader, writer):
            conns.append(await remote_rpc.Connection.open(
                reader, writer, root=root, limits=remote_rpc.Limits(max_write_queue=4 << 20)))

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        raw = await slow_reader(server)
        assert await eventually(lambda: _true(bool(conns)))
        raw.send([1, 0, 0, "wait", 60_000, []])  # runs until the end
        calls = range(1, 41)
        for i in calls:
            raw.send([1, i, 0, "now", 60_000, [900_000]])
        got = await asyncio.wait_for(_replies(raw, set(calls)), 30)
        assert all(len(got[i][2]) == 900_000 for i in calls)
        assert conns[0]._running == 1  # the long call still runs
        root.open.set()
        assert (await _replies(raw, {0}))[0] == [2, 0, 1]
        server.close()

    run(main(), timeout=60)


def test_calls_nested_under_held_calls_start_once_the_handlers_await_the_peer():
    """17 pipelined calls whose handlers call the peer back, whose
    callbacks call us before they answer: 16 start (a 16 MiB queue, 1 MiB
    per reply until the first), the 17th is held, and the nested calls
    behind it. The handlers awaiting the peer lend their room, but the
    held call looked again only when a call ended, and none could: all
    waited until their deadlines (red-team pass 32). Now a call of ours
    awaiting the peer wakes the held calls."""
    async def main():
        raw, conn, server = await serve(Busy())
        cb = msgpack.ExtType(1, (1).to_bytes(4, "big"))
        n = 17
        for i in range(n):
            raw.send([1, i, 0, "process", 60_000, [b"", cb]])
        nested: typing.Dict[int, int] = {}  # our add's id -> the callback's id
        done: typing.Dict[int, list] = {}

        async def serve_peer() -> None:
            next_id = 1000
            while len(done) < n:
                m = await raw.recv()
                assert m is not None, f"closed; {sorted(done)} answered"
                if m[0] == 1 and m[3] == "more":
                    nested[next_id] = m[1]
                    raw.send([1, next_id, 0, "add", 60_000, [1, 2]])
                    next_id += 1
                elif m[0] == 2 and m[1] in nested:
                    assert m[2] == 3, m
                    raw.send([2, nested.pop(m[1]), 7])
                elif m[0] in (2, 3):
                    done[m[1]] = m

        await asyncio.wait_for(serve_peer(), 30)
        assert all(done[i] == [2, i, 7] for i in range(n)), done
        server.close()

    run(main(), timeout=60)


def test_a_cancel_of_a_held_call_is_answered_while_long_calls_run():
    """Marked cancelled, a held call was answered only when the held calls
    looked again, as a running call ended: behind 16 long polls, when
    they ended (red-team pass 33). Now its cancel has them look at once."""
    async def main():
        root = _Gate()
        raw, conn, server = await serve(root)
        for i in range(16):  # 1 MiB each until the first reply: 16 MiB
            raw.send([1, i, 0, "wait", 60_000, []])
        raw.send([1, 100, 0, "now", 60_000, [10]])
        assert await eventually(lambda: _true(any(h.cid == 100 for h in conn._held_calls)))
        raw.send([5, 100])
        got = await asyncio.wait_for(_replies(raw, {100}), 10)
        assert got[100][:2] == [3, 100] and got[100][2][0] == "cancelled", got[100]
        assert conn._running == 16
        root.open.set()
        await _replies(raw, set(range(16)))
        server.close()

    run(main(), timeout=60)


def test_a_wait_for_the_replies_room_does_not_count_against_a_held_calls_deadline():
    """PROTOCOL.md §8: a held call's deadline counts from its arrival less
    its waits for output room. The wait for its reply's room counted, and
    such calls ran with part of their time, or none (red-team pass 33)."""
    async def main():
        root = _Gate()
        raw, conn, server = await serve(root, remote_rpc.Limits(max_write_queue=2 << 20))
        for i in range(2):  # 1 MiB each until the first reply: 2 MiB
            raw.send([1, i, 0, "wait", 60_000, []])
        raw.send([1, 3, 0, "now", 1000, [10]])
        assert await eventually(lambda: _true(any(h.cid == 3 for h in conn._held_calls)))
        await asyncio.sleep(1.5)  # held for its reply's room, past its timeout
        root.open.set()
        got = await _replies(raw, {0, 1, 3})
        assert got[3] == [2, 3, b"x" * 10], got[3][:3]
        server.close()

    run(main(), timeout=60)


def test_our_own_calls_awaiting_the_peer_lend_room_to_its_calls():
    """A client's own calls awaiting the server lend room to the server's
    calls back: 16 callbacks waiting for a 17th, which the server makes
    while our 16 calls await it, all run (lending only for calls made in
    serving the peer's calls, the 17th waited behind the 16 for their
    deadlines: red-team pass 34)."""
    async def main():
        root = _Gate()
        raw, conn, server = await serve(root)
        ours = [asyncio.ensure_future(conn.root().call("greet_via", [i], timeout=30)) for i in range(16)]
        assert await eventually(lambda: _true(len(conn._waiting) == 16))
        for i in range(16):  # 1 MiB each until the first reply: 16 MiB
            raw.send([1, i, 0, "wait", 60_000, []])
        raw.send([1, 16, 0, "release", 60_000, []])  # opens the gate
        got = await asyncio.wait_for(_replies(raw, set(range(17))), 10)
        assert all(got[i] == [2, i, 1] for i in range(16)), got
        for p in ours:
            p.cancel()
        server.close()

    run(main(), timeout=60)


class _Spawner:
    async def process(self, cb: typing.Any) -> int:
        # The call back made from a task the handler starts and joins.
        return await asyncio.ensure_future(cb.call("more", []))

    def add(self, a: int, b: int) -> int:
        return a + b


def test_a_call_back_from_a_task_the_handler_started_lends_its_room():
    """A handler that calls the peer back from a task it starts still
    lends its room: the peer's call nested under that call back starts,
    though the handler's estimated reply alone fills ``max_write_queue``
    (in the Rust runtime, lending only for a handler's own task made such
    calls wait until their deadlines: PROTOCOL.md §9)."""
    async def main():
        raw, conn, server = await serve(_Spawner(), remote_rpc.Limits(max_write_queue=1 << 20))
        cb = msgpack.ExtType(1, (1).to_bytes(4, "big"))
        raw.send([1, 0, 0, "process", 60_000, [cb]])
        callback = await raw.recv()
        assert callback[0] == 1 and callback[3] == "more", callback
        raw.send([1, 1, 0, "add", 60_000, [1, 2]])
        assert (await asyncio.wait_for(_replies(raw, {1}), 10))[1] == [2, 1, 3]
        raw.send([2, callback[1], 7])
        assert (await _replies(raw, {0}))[0] == [2, 0, 7]
        server.close()

    run(main(), timeout=30)
