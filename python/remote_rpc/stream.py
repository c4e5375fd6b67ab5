"""Remote streams (PROTOCOL.md §5.1): a stream crosses the wire as a
reference to a source object with one method, ``next_batch(max)``."""

from __future__ import annotations

import typing

from .connection import Proxy

#: Items asked for per round trip by default (as the Rust runtime does).
DEFAULT_BATCH = 32
#: Most items a source hands out per pull, whatever the puller asks.
MAX_BATCH = 1024


class RemoteStream:
    """Pulls a peer's stream: ``async for item in stream``. Each round trip
    asks for ``batch`` items; an empty batch ends the stream, and the source
    is released as soon as it has (or on :meth:`release`)."""

    def __init__(self, source: Proxy, decode: typing.Callable[[typing.Any], typing.Any] = lambda x: x,
                 batch: int = DEFAULT_BATCH) -> None:
        self._source: typing.Optional[Proxy] = source
        self._decode = decode
        self._batch = max(1, min(MAX_BATCH, batch))
        self._buf: typing.List[typing.Any] = []

    def __aiter__(self) -> "RemoteStream":
        return self

    async def __anext__(self) -> typing.Any:
        while not self._buf:
            if self._source is None:
                raise StopAsyncIteration
            items = await self._source.call("next_batch", [self._batch])
            if not items:
                self.release()
                raise StopAsyncIteration
            self._buf = list(items)
        return self._decode(self._buf.pop(0))

    def release(self) -> None:
        """Gives the source back to the peer now."""
        if self._source is not None:
            self._source.release()
            self._source = None


class LocalStream:
    """Serves a Python (async) iterable as a remote stream: pass
    ``LocalStream(items)`` where the peer expects a stream."""

    def __init__(self, items: typing.Union[typing.Iterable[typing.Any], typing.AsyncIterable[typing.Any]],
                 encode: typing.Callable[[typing.Any], typing.Any] = lambda x: x) -> None:
        if hasattr(items, "__aiter__"):
            self._aiter: typing.Optional[typing.AsyncIterator[typing.Any]] = items.__aiter__()
            self._iter = None
        else:
            self._aiter = None
            self._iter = iter(items)
        self._encode = encode

    async def next_batch(self, max_items: int) -> typing.List[typing.Any]:
        """Up to ``max_items`` (clamped to 1..=1024) next items; waits for one
        at least; an empty list when the stream has ended."""
        n = max(1, min(MAX_BATCH, int(max_items)))
        out: typing.List[typing.Any] = []
        while len(out) < n:
            if self._aiter is not None:
                try:
                    out.append(self._encode(await self._aiter.__anext__()))
                except StopAsyncIteration:
                    break
            else:
                try:
                    out.append(self._encode(next(self._iter)))
                except StopIteration:
                    break
        return out
