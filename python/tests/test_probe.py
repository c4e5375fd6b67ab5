"""The Python client against the test-only Rust probe server: capabilities
with the server-side count, typed errors both ways, a panic's traceback,
streams, cancellation."""

from __future__ import annotations

import asyncio

import remote_rpc
from conftest import eventually, run


def test_capability_is_called_then_released_at_the_server(probe_server, stubs):
    async def main():
        conn = await remote_rpc.connect(probe_server.addr)
        probe = stubs.ProbeClient(conn.root())
        tally = await probe.tally("apples")
        assert isinstance(tally, stubs.TallyClient)
        assert await probe.live_tallies() == 1
        assert await tally.add(2) == 2
        assert await tally.add(3) == 5
        assert await tally.name() == "apples"
        again = await probe.tally("pears")
        assert await probe.live_tallies() == 2
        again.release()
        tally.release()
        assert await eventually(lambda: _live(probe, 0)), "the server still holds the tallies"
        try:
            await tally.add(1)
        except ValueError as e:
            assert "was released" in str(e)
        else:
            raise AssertionError("a released proxy was still callable")
        await conn.aclose()

    run(main())


async def _live(probe, n):
    return await probe.live_tallies() == n


def test_closing_the_connection_releases_everything(probe_server, stubs):
    async def main():
        conn = await remote_rpc.connect(probe_server.addr)
        probe = stubs.ProbeClient(conn.root())
        held = [await probe.tally(str(i)) for i in range(3)]
        observer = await remote_rpc.connect(probe_server.addr)
        watch = stubs.ProbeClient(observer.root())
        assert await watch.live_tallies() == 3
        await conn.aclose()
        assert await eventually(lambda: _live(watch, 0))
        del held
        await observer.aclose()

    run(main())


def test_typed_application_error(probe_server, stubs):
    async def main():
        conn = await remote_rpc.connect(probe_server.addr)
        probe = stubs.ProbeClient(conn.root())
        assert await probe.check(7) == 7
        for arg, want in ((-3, stubs.ProbeError_Negative(-3)), (500, stubs.ProbeError_TooBig(limit=100))):
            try:
                await probe.check(arg)
            except remote_rpc.RemoteError as e:
                assert e.kind == "application"
                assert e.type_name.endswith("ProbeError"), e.type_name
                assert e.data == want, e.data
            else:
                raise AssertionError("no error")
        await conn.aclose()

    run(main())


def test_remote_panic_carries_the_rust_backtrace(probe_server, stubs):
    async def main():
        conn = await remote_rpc.connect(probe_server.addr)
        probe = stubs.ProbeClient(conn.root())
        try:
            await probe.boom("kaboom from python")
        except remote_rpc.RemoteError as e:
            assert e.kind == "panic", e
            assert e.message == "kaboom from python"
            assert e.backtrace and "probe_server" in e.backtrace, e.backtrace
            assert "remote backtrace:" in str(e)
        else:
            raise AssertionError("no error")
        assert await probe.live_tallies() == 0, "the server keeps serving"
        await conn.aclose()

    run(main())


def test_stream_pulled_in_batches(probe_server, stubs):
    async def main():
        conn = await remote_rpc.connect(probe_server.addr)
        probe = stubs.ProbeClient(conn.root())
        stream = await probe.count(10)
        stream._batch = 3
        assert [x async for x in stream] == list(range(10))
        assert conn.imported_objects() == 0
        # Abandoned half way: released explicitly.
        stream = await probe.count(1000)
        assert await stream.__anext__() == 0
        stream.release()
        assert conn.imported_objects() == 0
        await conn.aclose()

    run(main())


def test_python_callback_and_its_typed_error(probe_server, stubs):
    class Greeter(stubs.Greeter):
        async def greet(self, name: str) -> str:
            if name == "mallory":
                raise remote_rpc.ApplicationError(stubs.GreetError_Refused(name=name))
            return f"hello, {name}!"

    async def main():
        conn = await remote_rpc.connect(probe_server.addr)
        probe = stubs.ProbeClient(conn.root())
        greeter = Greeter()
        assert await probe.greet_via(greeter, "alice") == "hello, alice!"
        assert await probe.greet_via(greeter, "mallory") == 'error: Refused { name: "mallory" }'
        # The server releases our greeter after each call (its release
        # frame may follow the reply: wait for it, bounded).
        async def released():
            return conn.exported_objects() == 0

        assert await eventually(released), "the server kept our greeter"
        await conn.aclose()

    run(main())


def test_deadline_cancels_the_call_and_the_callback_it_was_serving(probe_server, stubs):
    started = asyncio.Event
    state = {}

    class SlowGreeter(stubs.Greeter):
        async def greet(self, name: str) -> str:
            state["started"].set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                state["cancelled"].set()
                raise
            return "too late"

    async def main():
        state["started"], state["cancelled"] = started(), started()
        conn = await remote_rpc.connect(probe_server.addr)
        probe = conn.root()
        greeter = SlowGreeter()
        # A deadline the callback starts well within on a loaded machine
        # (at 0.5 s it sometimes passed first, and nothing was called back).
        call = asyncio.ensure_future(probe.call("greet_via", [greeter, "slow"], timeout=3))
        await asyncio.wait_for(state["started"].wait(), 30)
        try:
            await call
        except remote_rpc.DeadlineExceeded:
            pass
        else:
            raise AssertionError("the call outlived its deadline")
        # Our cancel stopped the server's handler, which cancelled its call
        # to our greeter: the cancel cascades back to us.
        await asyncio.wait_for(state["cancelled"].wait(), 30)
        # The cancelled call's one reply (`cancelled`) frees its id.
        assert await eventually(lambda: _no_cancelled(conn))
        assert await stubs.ProbeClient(probe).live_tallies() == 0
        await conn.aclose()

    async def _no_cancelled(conn):
        return not conn._cancelled

    run(main())
