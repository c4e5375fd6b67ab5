"""The Python client against the Rust chat example (`chat server ADDR`),
through the stubs generated from the examples' schema."""

from __future__ import annotations

import asyncio

import remote_rpc
from conftest import eventually, run


def test_untyped_calls_callback_and_stream(chat_server):
    """The runtime alone: wire names and plain msgpack values."""

    class Listener:
        def __init__(self) -> None:
            self.seen: asyncio.Queue = asyncio.Queue()

        async def pushed(self, index, item):
            await self.seen.put((index, item))

    async def main():
        conn = await remote_rpc.connect(chat_server.addr)
        chat = conn.root()
        listener = Listener()
        await chat.subscribe(listener)
        assert conn.exported_objects() == 1, "the listener is held by the server"
        assert await chat.push({"user": "py", "text": "hello"}) == 0
        assert await asyncio.wait_for(listener.seen.get(), 30) == (0, {"user": "py", "text": "hello"})
        assert await chat.call("len") == 1
        assert await chat.range(0, 10) == [{"user": "py", "text": "hello"}]
        await conn.aclose()

    run(main())


def test_typed_client_listener_stream_and_errors(chat_server, stubs):
    Message = stubs.Message

    class Listener(stubs.ListListener_Message):
        """Serves the generated Protocol: arguments arrive as dataclasses."""

        def __init__(self) -> None:
            self.seen: asyncio.Queue = asyncio.Queue()

        async def pushed(self, index: int, item: Message) -> None:
            await self.seen.put((index, item))

    async def main():
        conn = await remote_rpc.connect(chat_server.addr)
        chat = stubs.RemoteList_MessageClient(conn.root())
        listener = Listener()
        await chat.subscribe(listener)

        # Another client (Rust-shaped: the same server) posts; ours is called back.
        other = await remote_rpc.connect(chat_server.addr)
        other_chat = stubs.RemoteList_MessageClient(other.root())
        for i in range(5):
            assert await other_chat.push(Message(user="bob", text=f"msg {i}")) == i
        got = [await asyncio.wait_for(listener.seen.get(), 30) for _ in range(5)]
        assert got == [(i, Message(user="bob", text=f"msg {i}")) for i in range(5)]
        assert isinstance(got[0][1], Message)

        assert await chat.len() == 5
        assert await chat.get(1) == Message(user="bob", text="msg 1")
        assert await chat.get(99) is None
        page = await chat.range(3, 10)
        assert page == [Message("bob", "msg 3"), Message("bob", "msg 4")]

        # A remote stream: pulled 2 at a time; the source is released at its end.
        stream = await chat.iter(1)
        assert isinstance(stream, remote_rpc.RemoteStream)
        stream._batch = 2
        assert conn.imported_objects() == 1
        items = [m async for m in stream]
        assert [m.text for m in items] == ["msg 1", "msg 2", "msg 3", "msg 4"]
        assert conn.imported_objects() == 0, "the stream source was released"

        # A remote error: the server refuses a user name over its bound.
        try:
            await chat.push(Message(user="x" * 100, text="too long a name"))
        except remote_rpc.RemoteError as e:
            assert e.kind == "bad_arguments", e
            assert "exceeds the bound of 32" in e.message, e
        else:
            raise AssertionError("an over-long name was accepted")
        # The connection still serves.
        assert await chat.len() == 5

        # Closing our connection: the server drops our listener (it keeps
        # serving the other client).
        await conn.aclose()
        assert await other_chat.push(Message("bob", "after")) == 5
        await other.aclose()

    run(main())


def test_dropping_the_last_reference_releases(chat_server, stubs):
    """A proxy garbage-collected without an explicit release still sends
    the release with every receipt counted."""

    async def main():
        conn = await remote_rpc.connect(chat_server.addr)
        chat = stubs.RemoteList_MessageClient(conn.root())
        stream = await chat.iter(0)
        assert conn.imported_objects() == 1
        del stream
        assert await eventually(lambda: _imports_zero(conn)), "no release after the proxy was dropped"
        await conn.aclose()

    async def _imports_zero(conn):
        return conn.imported_objects() == 0

    run(main())
