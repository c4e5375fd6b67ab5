"""The Python runtime against a hostile peer (red-team pass 19): calls held
back are held undecoded and bounded, cancels of held calls are paced, a
reply to a call never made or an error carrying a reference is a
violation, a malformed error fails its call at once, a stream's oversized
batch ends it. Both ends on 127.0.0.1, port 0; the peer is hand-driven."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
import typing

import msgpack

import remote_rpc
from conftest import eventually, run
from remote_rpc.errors import ProtocolViolation
from test_runtime import Raw, _true, slow_reader

LIMIT = 64 << 10


class Root:
    def big(self, n: int) -> str:
        return "x" * n

    def count(self, xs: list) -> int:
        return len(xs)

    def add(self, a: int, b: int) -> int:
        return a + b


async def _stalled_peer(**limits: typing.Any) -> typing.Tuple[Raw, remote_rpc.Connection, typing.Any]:
    """A Python server, and a raw peer (small receive buffer) that made it
    queue more than ``max_write_queue`` for it and reads nothing."""
    conns: typing.List[remote_rpc.Connection] = []

    async def accepted(reader, writer):
        conns.append(await remote_rpc.Connection.open(
            reader, writer, root=Root(), limits=remote_rpc.Limits(max_write_queue=LIMIT, **limits)))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    raw = await slow_reader(server)
    assert await eventually(lambda: _true(bool(conns)))
    conn = conns[0]
    for i in range(8):
        raw.send([1, 1000 + i, 0, "big", 60_000, [900_000]])
    assert await eventually(lambda: _true(conn._queued() > LIMIT)), conn._queued()
    return raw, conn, server


async def _replies(raw: Raw, ids: typing.Set[int]) -> typing.Dict[int, list]:
    """Reads until every call in ``ids`` has its reply; fails on a second
    reply to one."""
    got: typing.Dict[int, list] = {}
    while not ids <= got.keys():
        m = await raw.recv()
        assert m is not None, f"closed; replies to {sorted(ids - got.keys())[:5]} missing"
        if m[0] in (2, 3):
            assert m[1] not in got, f"two replies to call {m[1]}"
            got[m[1]] = m
    return got


def test_calls_held_back_are_held_undecoded_and_bounded():
    """Held decoded, a 1 MiB call of empty maps took 70 MB while held, and
    128 of them could be (24 MB sent, 1.7 GB held). Now the frame is held
    as it came, reading stops once held frames reach ``memory_budget``, and
    each call is decoded and answered when the peer reads again (one at a
    time: each weighs more than the budget)."""
    async def main():
        budget = 4 << 20
        raw, conn, server = await _stalled_peer(memory_budget=budget)
        n_maps = 256 << 10  # a 256 KiB frame; about 18 MB decoded
        calls = 24
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(calls):
                raw.send([1, i, 0, "count", 60_000, [[{}] * n_maps]])
            assert await eventually(lambda: _true(conn._held_bytes >= budget))
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        # Reading stopped at the 16th frame (its bytes reach 4 MiB), held
        # behind the stalled peer's calls still to start.
        held = [h for h in conn._held_calls if h.cid < calls]
        assert len(held) == 16, len(held)
        assert grown < 12 << 20, f"{grown} bytes held for 16 frames of 256 KiB"
        got = await _replies(raw, set(range(calls)) | set(range(1000, 1008)))
        assert all(got[i] == [2, i, n_maps] for i in range(calls)), [got[i][:2] for i in range(calls)]
        assert all(got[1000 + i][:2] == [2, 1000 + i] for i in range(8))
        server.close()

    run(main(), timeout=120)


def test_cancels_of_held_calls_are_answered_in_their_turn():
    """Answered at once, each cancel freed its call's place among the held
    ones, so a peer flooding calls and their cancels while reading nothing
    grew the queue without bound (307 MB in 60 s, a red-team pass). Now a
    cancelled call keeps its place, reading stops at ``max_calls_in_flight``
    held, and each call still gets exactly one reply, ``cancelled``."""
    async def main():
        raw, conn, server = await _stalled_peer()
        queued = conn._queued()
        pairs = 2000
        ids = range(10_000, 10_000 + pairs)
        for i in ids:
            raw.send([1, i, 0, "add", 60_000, [i, 1]])
            raw.send([5, i])
        limit = conn.limits.max_calls_in_flight
        assert await eventually(lambda: _true(len(conn._held_calls) >= limit))
        # The last call held stopped the reading before its cancel (the
        # stalled peer's own calls still to start are held before them).
        pairs_held = [h for h in conn._held_calls if h.cid in ids][:-1]
        held = [h.cid for h in pairs_held]
        assert held and all(h.cancelled for h in pairs_held)
        assert conn._queued() - queued < 1024, (queued, conn._queued())
        got = await _replies(raw, set(ids))
        assert all(got[i][0] == 3 and got[i][2][0] == "cancelled" for i in held)
        # Read once the peer reads again, a call may end before its cancel,
        # or find `max_calls_in_flight` cancelled tasks not yet ended.
        odd = [got[i] for i in ids if got[i] != [2, i, i + 1]
               and got[i][2][0] not in ("cancelled", "limit_exceeded")]
        assert not odd, odd[:3]
        server.close()

    run(main(), timeout=120)


async def _python_calls_raw(answer: typing.Callable[[int], list]) -> typing.Tuple[BaseException, str]:
    """A Python server calls its raw peer's root; the peer answers with
    ``answer(call_id)``. Returns the call's exception and the close reason."""
    from test_runtime import serve  # late: its Root differs from ours

    raw, conn, server = await serve(Root())
    call = asyncio.ensure_future(conn.root().call("hello", [], timeout=60))
    msg = await raw.recv()
    assert msg[0] == 1 and msg[3] == "hello", msg
    raw.writer.write(_framed(answer(msg[1])))
    try:
        await call
    except BaseException as e:  # noqa: BLE001 - the outcome under test
        error = e
    else:
        raise AssertionError("the call succeeded")
    reason = await asyncio.wait_for(conn.closed(), 30)
    server.close()
    return error, reason


async def _connect_fails(server: typing.Any) -> str:
    """Connects to ``server``; the `ConnectionLost` it must fail with."""
    port = server.sockets[0].getsockname()[1]
    try:
        await remote_rpc.connect(f"tcp://127.0.0.1:{port}")
    except remote_rpc.ConnectionLost as e:
        return str(e)
    raise AssertionError("connected")


def _framed(message: list) -> bytes:
    payload = msgpack.packb(message, use_bin_type=True)
    return len(payload).to_bytes(4, "big") + payload


def test_a_malformed_error_fails_its_call_at_once():
    """The call was taken from the waiting ones before its error was
    checked, so it waited out its deadline on a closed connection."""
    async def main():
        error, reason = await _python_calls_raw(lambda cid: [3, cid, [1, 2]])
        assert isinstance(error, remote_rpc.ConnectionLost), repr(error)
        assert "error value has 6 fields" in reason, reason

    run(main())


def test_a_reference_in_an_errors_data_is_a_violation():
    async def main():
        ref = msgpack.ExtType(1, (7).to_bytes(4, "big"))
        error, reason = await _python_calls_raw(
            lambda cid: [3, cid, ["application", "t", "m", [], None, {"x": ref}]])
        assert isinstance(error, remote_rpc.ConnectionLost), repr(error)
        assert "a reference in an error" in reason, reason

    run(main())


def test_a_reply_to_a_call_never_made_is_a_violation_before_its_references_count():
    """Ignored, each of its references was released with a frame of ours
    whatever the peer read (27 MB sent, 26 MB queued, a red-team pass)."""
    async def main():
        from test_runtime import serve

        raw, conn, server = await serve(Root())
        refs = [msgpack.ExtType(1, i.to_bytes(4, "big")) for i in range(1, 101)]
        raw.send([2, 12345, refs])
        bye = await raw.recv()
        assert bye == [6, "protocol violation: reply to call 12345, which is neither waiting "
                          "for a reply nor cancelled"], bye
        assert await raw.recv() is None
        server.close()

    run(main())


class _Source:
    """A stream source handing out ``per_batch`` items whatever is asked."""

    def __init__(self, items: int, per_batch: int) -> None:
        self.left, self.per_batch, self.released = items, per_batch, False

    async def call(self, method: str, args: list) -> list:
        assert method == "next_batch"
        n = min(self.left, self.per_batch)
        self.left -= n
        return list(range(n))

    def release(self) -> None:
        self.released = True


def test_a_streams_batch_over_what_was_asked_ends_it():
    async def main():
        good = _Source(100, 32)
        assert [x async for x in remote_rpc.RemoteStream(good, batch=32)] == \
            list(range(32)) * 3 + list(range(4))
        assert good.released
        bad = _Source(1_000_000, 1_000_000)
        stream = remote_rpc.RemoteStream(bad, batch=32)
        try:
            async for _ in stream:
                raise AssertionError("an item of an oversized batch was handed out")
        except ProtocolViolation as e:
            assert str(e) == "a stream's batch of 1000000 items, 32 asked for", e
        else:
            raise AssertionError("the oversized batch was taken")
        assert bad.released

    run(main())


def test_a_connect_to_a_server_that_never_accepts_fails_at_the_handshake_timeout():
    """Its SYNs dropped (the accept queue full), a connect waited for the
    kernel's retries, about two minutes."""
    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        addr = listener.getsockname()
        queued = []
        while True:
            s = socket.socket()
            s.setblocking(False)
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, addr), 0.5)
            except asyncio.TimeoutError:
                s.close()
                break
            queued.append(s)
            assert len(queued) < 64, "the accept queue never filled"
        limits = remote_rpc.Limits(handshake_timeout=1.0)
        try:
            await remote_rpc.connect(f"tcp://127.0.0.1:{addr[1]}", limits=limits)
        except remote_rpc.ConnectionLost as e:
            assert str(e) == (f"connecting to tcp://127.0.0.1:{addr[1]} did not finish "
                              f"within handshake_timeout = 1.0s"), e
        else:
            raise AssertionError("connected to a server that never accepts")
        for s in queued:
            s.close()
        listener.close()

    run(main())


def test_a_hello_whose_versions_are_not_integers_is_refused_with_a_goodbye():
    """A bare TypeError escaped ``connect``, the socket left open."""
    async def main():
        got: typing.List[list] = []

        async def accepted(reader, writer):
            raw = Raw(reader, writer)
            raw.send([0, "remote", "1", None, [], None])
            while (m := await raw.recv()) is not None:
                got.append(m)
            writer.close()

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        assert "are not u32s" in await _connect_fails(server)
        # The client's hello, then its goodbye, then the end of the stream.
        assert await eventually(lambda: _true(len(got) == 2 and got[1][0] == 6))
        assert got[1][1].startswith("handshake refused: malformed message"), got
        server.close()

    run(main())


# ---- red-team pass 20: the fixes above, attacked ---------------------------


class Busy:
    """A root whose ``sleep`` keeps a heavy call running (its frame's
    weight fills a small ``memory_budget``, so the calls behind it wait)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.names: typing.List[str] = []

    async def sleep(self, _blob: bytes, seconds: float) -> None:
        self.started.set()
        await asyncio.sleep(seconds)

    def make(self, name: str) -> "Named":
        return Named(name)

    def add(self, a: int, b: int) -> int:
        return a + b

    async def process(self, blob: bytes, cb: typing.Any) -> int:
        return await cb.call("more", [])

    def store(self, blob: bytes) -> int:
        return len(blob)


class Named:
    def __init__(self, name: str) -> None:
        self.name_ = name

    def name(self) -> str:
        return self.name_


async def _busy_server(root: Busy, seconds: float):
    """A Python server with a 1 MiB budget, a raw peer, and a heavy call
    (16 KiB frame: 2 MiB counted) running for ``seconds``: the peer's
    next calls are held until it ends."""
    from test_runtime import serve

    raw, conn, server = await serve(root, remote_rpc.Limits(memory_budget=1 << 20))
    raw.send([1, 900, 0, "sleep", 60_000, [b"x" * (16 << 10), seconds]])
    await asyncio.wait_for(root.started.wait(), 30)
    return raw, conn, server


def test_a_cancel_read_with_its_call_gives_its_place_back():
    """A task cancelled before its first step never ran its `finally`: its
    place in ``max_calls_in_flight`` and its weight stayed taken, and after
    128 such pairs every call was refused (red-team pass 20)."""
    async def main():
        from test_runtime import Root, serve

        raw, conn, server = await serve(Root())
        for i in range(300):
            raw.writer.write(_framed([1, i, 0, "add", 60_000, [i, 1]]) + _framed([5, i]))
        got = await _replies(raw, set(range(300)))
        # Cancelled tasks end on the loop's next turn, so within one read a
        # burst may find `max_calls_in_flight` taken.
        odd = [m for i, m in got.items() if m != [2, i, i + 1]
               and m[2][0] not in ("cancelled", "limit_exceeded")]
        assert not odd, odd[:3]
        assert await eventually(lambda: _true(conn._running == 0 and conn._running_weight == 0))
        raw.send([1, 1000, 0, "add", 60_000, [40, 2]])
        assert await raw.recv() == [2, 1000, 42]
        server.close()

    run(main())


def test_a_release_behind_a_held_call_waits_for_it():
    """Applied at once, a release freed the object a held call sent before
    it named, and the id, given to the next export, had the call run on
    another object (red-team pass 20)."""
    async def main():
        root = Busy()
        from test_runtime import serve

        raw, conn, server = await serve(root)
        raw.send([1, 1, 0, "make", 60_000, ["A"]])
        made = await raw.recv()
        assert made[:2] == [2, 1] and made[2][0] == 1, made
        oid = made[2][1]
        raw.send([1, 900, 0, "sleep", 60_000, [b"x" * (16 << 10), 1.0]])
        conn.limits.memory_budget = 1 << 20
        await asyncio.wait_for(root.started.wait(), 30)
        raw.send([1, 2, oid, "name", 60_000, []])  # held: no room
        raw.send([4, oid, 1])                      # behind it
        raw.send([1, 3, 0, "make", 60_000, ["B"]])
        got = await _replies(raw, {2, 3, 900})
        assert got[2] == [2, 2, "A"], got[2]
        server.close()

    run(main())


def test_a_cancelled_held_call_releases_the_references_it_carried():
    """Never decoded, the objects a caller passed in a call cancelled
    while held stayed exported by the caller for the connection's life
    (red-team pass 20)."""
    async def main():
        raw, conn, server = await _busy_server(Busy(), 1.0)
        ref = msgpack.ExtType(1, (5).to_bytes(4, "big"))
        raw.send([1, 7, 0, "add", 60_000, [ref, ref]])
        raw.send([5, 7])
        got: typing.List[list] = []
        while not any(m[:2] == [3, 7] for m in got):
            got.append(await raw.recv())
        assert [4, 5, 2] in got, got
        assert got.index([4, 5, 2]) < next(i for i, m in enumerate(got) if m[:2] == [3, 7])
        assert next(m for m in got if m[:2] == [3, 7])[2][0] == "cancelled"
        server.close()

    run(main())


def test_a_call_id_held_twice_is_a_violation():
    """One running and one held with the same id, a cancel left the
    running call unanswered (red-team pass 20)."""
    async def main():
        raw, conn, server = await _busy_server(Busy(), 5.0)
        raw.send([1, 900, 0, "add", 60_000, [1, 2]])
        bye = await raw.recv()
        assert bye == [6, "protocol violation: call id 900 is already in flight"], bye
        server.close()

    run(main())


def test_a_held_calls_deadline_counts_from_its_arrival():
    async def main():
        raw, conn, server = await _busy_server(Busy(), 1.0)
        raw.send([1, 8, 0, "add", 300, [1, 2]])
        got = await _replies(raw, {8, 900})
        assert got[8][2][0] == "deadline_exceeded", got[8]
        server.close()

    run(main())


def test_calls_whose_handlers_await_the_peer_get_no_room_past_the_budget():
    """Room lent to the calls of a peer this side awaits let a chain of
    handlers, each awaiting a callback the peer never answered, hold 1.7
    GB against a 64 MiB budget (red-team pass 21). Arguments are never
    lent room: past the one call that always runs, the rest wait."""
    async def main():
        from test_runtime import serve

        raw, conn, server = await serve(Busy(), remote_rpc.Limits(memory_budget=4 << 20))
        cb = msgpack.ExtType(1, (1).to_bytes(4, "big"))
        blob = b"x" * (40 << 10)  # 5 MiB counted: over the budget alone
        raw.send([1, 0, 0, "process", 60_000, [blob, cb]])
        first = await raw.recv()
        assert first[0] == 1 and first[3] == "more", first  # the callback, never answered
        # The next call comes while the handler awaits the peer.
        raw.send([1, 1, 0, "process", 60_000, [blob, cb]])
        assert await eventually(lambda: _true(len(conn._held_calls) == 1 or conn._running > 1))
        assert (conn._running, len(conn._held_calls)) == (1, 1)
        server.close()

    run(main())


def test_a_handler_awaiting_its_callback_gets_the_reply_while_held_calls_are_full():
    """Reading stopped as soon as ``max_calls_in_flight`` calls were held,
    so a running handler awaiting its callback's reply (which the held
    calls waited for) got it only at its deadline (red-team pass 20, F3).
    Now replies are read on; only a frame that would be held waits."""
    async def main():
        from test_runtime import serve

        limit = 4
        raw, conn, server = await serve(
            Busy(), remote_rpc.Limits(memory_budget=4 << 20, max_calls_in_flight=limit))
        cb = msgpack.ExtType(1, (1).to_bytes(4, "big"))
        blob = b"x" * (40 << 10)  # 5 MiB counted: the calls behind it are held
        raw.send([1, 0, 0, "process", 60_000, [blob, cb]])
        callback = await raw.recv()
        assert callback[0] == 1 and callback[3] == "more", callback
        for i in range(1, limit + 1):
            raw.send([1, i, 0, "add", 60_000, [i, 1]])
        assert await eventually(lambda: _true(len(conn._held_calls) == limit))
        # The callback's reply, read though the held calls are full, then
        # one call more, which waits unheld until they have started.
        raw.send([2, callback[1], 7])
        raw.send([1, limit + 1, 0, "add", 60_000, [limit + 1, 1]])
        got = await _replies(raw, set(range(limit + 2)))
        assert got[0] == [2, 0, 7], got[0]
        assert all(got[i] == [2, i, i + 1] for i in range(1, limit + 1)), got
        # The last one came while the held calls may still run: served, or
        # refused at `max_calls_in_flight`, as any call then.
        last = got[limit + 1]
        assert last == [2, limit + 1, limit + 2] or last[2][0] == "limit_exceeded", last
        server.close()

    # Well under the calls' 60 s deadline: before, call 0 was answered at it.
    run(main(), timeout=30)


def test_a_flood_of_small_frames_lets_other_tasks_run():
    """The reader handled every frame a socket read had buffered before it
    let another task run: a flood of cancels held the event loop, and the
    calls of other connections waited about 360 ms each (a red-team pass).
    It now lets them run every few dozen frames."""
    async def main():
        from test_runtime import serve

        raw, conn, server = await serve(Root())
        turns = 0
        stop = False

        async def ticker() -> None:
            # Runs once each time the event loop turns.
            nonlocal turns
            while not stop:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        n = 50_000
        # Cancels of calls never made (ignored), in one write, then a call.
        raw.writer.write(b"".join(_framed([5, 1_000_000 + i]) for i in range(n)))
        raw.send([1, 1, 0, "add", 60_000, [1, 2]])
        got = await _replies(raw, {1})
        stop = True
        await task
        assert got[1] == [2, 1, 3], got[1]
        # One turn per 64 frames at least; without the yields, about one
        # per socket read (tens of kilobytes of frames each).
        assert turns >= n // 256, (turns, n)
        server.close()

    run(main())


def test_a_cancelled_held_calls_references_are_bounded_by_max_imports():
    """Each distinct reference a held call cancelled carried cost a
    release frame, in one turn of the loop: 174,752 of them in 5 s from
    one frame (red-team pass 21). Past ``max_imports``, a violation, as
    the call's decode would have refused it."""
    async def main():
        root = Busy()
        from test_runtime import serve

        raw, conn, server = await serve(root, remote_rpc.Limits(memory_budget=1 << 20, max_imports=10))
        raw.send([1, 900, 0, "sleep", 60_000, [b"x" * (16 << 10), 5.0]])
        await asyncio.wait_for(root.started.wait(), 30)
        refs = [msgpack.ExtType(1, i.to_bytes(4, "big")) for i in range(1, 12)]
        raw.send([1, 7, 0, "add", 60_000, [refs, 0]])
        raw.send([5, 7])
        bye = await raw.recv()
        assert bye == [6, "protocol violation: limit exceeded: max_imports = 10"], bye
        server.close()

    run(main())


def test_a_wait_for_output_room_does_not_count_against_a_held_calls_deadline():
    """PROTOCOL.md §8: a call held back for output room has its deadline
    counted from the end of that wait (it was answered
    `deadline_exceeded` without running: red-team pass 21)."""
    async def main():
        raw, conn, server = await _stalled_peer()
        raw.send([1, 5, 0, "add", 1000, [1, 2]])
        assert await eventually(lambda: _true(any(h.cid == 5 for h in conn._held_calls)))
        await asyncio.sleep(1.5)  # held, for output room, past the call's timeout
        got = await _replies(raw, {5} | set(range(1000, 1008)))
        assert got[5] == [2, 5, 3], got[5]
        server.close()

    run(main())


def test_a_goodbye_whose_reason_is_no_string_is_refused():
    """Nested 1,000 deep, its reason raised RecursionError out of
    ``connect`` (red-team pass 20)."""
    async def main():
        async def accepted(reader, writer):
            raw = Raw(reader, writer)
            deep: typing.Any = "x"
            for _ in range(1000):
                deep = [deep]
            raw.send([6, deep])
            await raw.recv()
            writer.close()

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        assert "a goodbye's reason is a string, got list" in await _connect_fails(server)
        server.close()

    run(main())



def test_a_cancelled_held_call_is_walked_for_its_references_not_decoded_whole():
    """Decoded whole to find its references, one held call of 1 MiB of
    empty maps, cancelled, took 76 MB at its turn (red-team pass 20, G5).
    Now each array and map is dropped as soon as it is read, and the
    references are still found and released."""
    async def main():
        root = Busy()
        from test_runtime import serve

        raw, conn, server = await serve(root, remote_rpc.Limits(memory_budget=1 << 20))
        raw.send([1, 900, 0, "sleep", 60_000, [b"x" * (16 << 10), 1.0]])
        await asyncio.wait_for(root.started.wait(), 30)
        ref = msgpack.ExtType(1, (5).to_bytes(4, "big"))
        call = _framed([1, 7, 0, "count", 60_000, [[{}] * (1000 << 10), ref]])
        tracemalloc.start()
        try:
            raw.writer.write(call)
            raw.send([5, 7])
            got: typing.List[list] = []
            while not any(m[:2] == [3, 7] for m in got):
                got.append(await raw.recv())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [4, 5, 1] in got, got
        assert next(m for m in got if m[:2] == [3, 7])[2][0] == "cancelled"
        assert peak < 20 << 20, f"{peak} bytes at the peak for one cancelled 1 MiB frame"
        server.close()

    run(main())
