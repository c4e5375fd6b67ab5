"""LocalStream's batches (PROTOCOL.md §5.1): bounded by bytes as well as
by count, nothing lost or reordered, and only what is ready is taken."""

from __future__ import annotations

import asyncio
import typing

from remote_rpc.stream import MAX_PAGE_BYTES, LocalStream
from conftest import run


def batches(s: LocalStream, ask: int = 1024) -> typing.List[typing.List[typing.Any]]:
    async def go() -> typing.List[typing.List[typing.Any]]:
        out = []
        while True:
            b = await s.next_batch(ask)
            if not b:
                return out
            out.append(b)
    return run(go())


def test_a_batch_stops_at_the_page_bytes_and_loses_nothing() -> None:
    # 200 KiB each: two fit in 512 KiB.
    items = [bytes([i]) * (200 << 10) for i in range(5)]
    got = batches(LocalStream(items))
    assert [len(b) for b in got] == [2, 2, 1]
    assert [x for b in got for x in b] == items
    # An item larger than every earlier one that does not fit opens the
    # next batch; one alone over the bytes still goes, alone.
    items = [b"a" * (100 << 10), b"b" * (450 << 10), b"c" * (MAX_PAGE_BYTES + 1), b"d"]
    got = batches(LocalStream(items))
    assert [len(b) for b in got] == [1, 1, 1, 1]
    assert [x for b in got for x in b] == items
    # Small items: the count is the bound.
    assert [len(b) for b in batches(LocalStream(range(3000)))] == [1024, 1024, 952]


def test_a_pull_of_1024_large_items_produces_only_what_it_sends() -> None:
    produced = []

    def items() -> typing.Iterator[bytes]:
        for i in range(1024):
            produced.append(i)
            yield bytes([i % 256]) * (128 << 10)

    s = LocalStream(items())
    first = run(s.next_batch(1024))
    assert len(first) == 3, "three of 128 KiB fit in 512 KiB"
    assert len(produced) == 3, "and no fourth was made to wait"


def test_an_async_source_hands_out_what_is_ready_and_keeps_its_pending_step() -> None:
    gate = asyncio.Event()

    async def items() -> typing.AsyncIterator[int]:
        yield 1
        yield 2
        await gate.wait()
        yield 3

    async def go() -> None:
        s = LocalStream(items())
        assert await s.next_batch(32) == [1, 2], "not waiting for 32"
        pull = asyncio.ensure_future(s.next_batch(32))
        await asyncio.sleep(0.01)
        assert not pull.done(), "waits for one at least"
        gate.set()
        assert await pull == [3]
        assert await s.next_batch(32) == []
        assert await s.next_batch(32) == [], "still ended"
    run(go())


def test_an_async_source_that_waits_after_its_last_item_ends_cleanly() -> None:
    gate = asyncio.Event()

    async def rows() -> typing.AsyncIterator[int]:
        yield 1
        await gate.wait()  # e.g. fetching the next page finds none

    async def go() -> None:
        s = LocalStream(rows())
        assert await s.next_batch(32) == [1]
        pull = asyncio.ensure_future(s.next_batch(32))
        await asyncio.sleep(0.01)
        gate.set()
        assert await pull == [], "the end, not StopAsyncIteration"
        assert await s.next_batch(32) == []
    run(go())


async def _given_up_with_a_step_pending(
        items: typing.AsyncIterator[int]) -> typing.Tuple[LocalStream, "asyncio.Future[typing.Any]"]:
    """A stream of `items` (1, then a wait that never ends) after its
    first batch and a second pull given up half way: its source's next
    step stays pending. The stream, and that step."""
    s = LocalStream(items)
    assert await s.next_batch(32) == [1]
    pull = asyncio.ensure_future(s.next_batch(32))
    await asyncio.sleep(0.01)
    pull.cancel()  # the puller gives up; the step stays pending
    await asyncio.wait({pull})
    task = s._next_task
    assert task is not None and not task.done()
    return s, task


def test_an_abandoned_source_has_its_pending_step_cancelled() -> None:
    gate = asyncio.Event()
    stopped = []

    async def items() -> typing.AsyncIterator[int]:
        yield 1
        try:
            await gate.wait()  # never set
            yield 2
        finally:
            stopped.append(True)

    async def go() -> None:
        s, task = await _given_up_with_a_step_pending(items())
        del s  # released by its peer: the last reference goes
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled(), "the pending step is stopped"
        assert stopped == [True], "and the source's own clean-up ran"
    run(go())


def test_a_source_dropped_on_another_thread_has_its_step_cancelled_on_its_loop() -> None:
    import threading

    async def items() -> typing.AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()  # never set
        yield 2

    async def go() -> None:
        s, task = await _given_up_with_a_step_pending(items())
        box = [s]
        del s
        t = threading.Thread(target=box.clear)  # the last reference goes there
        t.start()
        t.join()
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled(), "cancelled on its own loop"
    run(go())


def test_a_cancelled_pull_gives_its_items_to_the_next_one() -> None:
    async def items() -> typing.AsyncIterator[int]:
        for i in range(200):
            yield i

    async def go() -> None:
        s = LocalStream(items())
        got: typing.List[int] = []
        for k in range(50):
            pull = asyncio.ensure_future(s.next_batch(1024))
            for _ in range(k % 7 + 1):  # cancelled at various points
                await asyncio.sleep(0)
            pull.cancel()
            try:
                got.extend(await pull)
            except asyncio.CancelledError:
                pass
        while True:
            b = await s.next_batch(1024)
            if not b:
                break
            got.extend(b)
        assert got == list(range(200)), "nothing lost, nothing twice"
    run(go())


def test_one_item_over_the_bound_does_not_make_every_later_batch_single() -> None:
    items = [b"a" * (600 << 10)] + [b"b"] * 2000
    assert [len(b) for b in batches(LocalStream(items))] == [1, 1024, 976]


def test_a_connection_with_small_frames_gets_batches_within_half_a_frame() -> None:
    from remote_rpc.connection import FRAME_LIMIT

    async def go() -> typing.List[int]:
        FRAME_LIMIT.set(64 << 10)  # as the serving connection sets it
        s = LocalStream([bytes([i]) * (8 << 10) for i in range(10)])
        sizes = []
        while True:
            b = await s.next_batch(32)
            if not b:
                return sizes
            sizes.append(len(b))
    # Three of 8 KiB fit in 32 KiB.
    assert run(go()) == [3, 3, 3, 1]


def test_end_to_end_under_a_small_frame_limit() -> None:
    from remote_rpc import wire
    from remote_rpc.connection import Connection
    from remote_rpc.stream import RemoteStream

    class Root:
        async def rows(self, n: int) -> LocalStream:
            async def gen() -> typing.AsyncIterator[int]:
                for i in range(n):
                    yield i
                    await asyncio.sleep(0.001)  # a cursor fetching the next row
            return LocalStream(gen())

        async def blobs(self, n: int, size: int) -> LocalStream:
            return LocalStream([bytes([i]) * size for i in range(n)])

    async def go() -> None:
        limits = wire.Limits(max_frame_len=256 << 10)
        served = asyncio.get_running_loop().create_future()

        async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            served.set_result(await Connection.open(r, w, root=Root(), limits=limits, peer="server"))
        listener = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        client = await Connection.open(r, w, limits=limits, peer="client")
        server = await served
        try:
            # Ten items of 100 KiB: a batch of 32 made a 1 MB reply, over
            # the 256 KiB frame; now within half of it.
            src = await client.root().call("blobs", [10, 100 << 10])
            got = [x async for x in RemoteStream(src)]
            assert [x[0] for x in got] == list(range(10))
            assert all(len(x) == 100 << 10 for x in got)
            # An async source whose last step waits ends cleanly.
            src = await client.root().call("rows", [5])
            assert [x async for x in RemoteStream(src)] == [0, 1, 2, 3, 4]
        finally:
            await client.aclose()
            await server.aclose()
            listener.close()
    run(go())
