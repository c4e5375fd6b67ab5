"""Our calls to the peer (PROTOCOL.md §3.1, §3.6, §8): their ids, deadlines
and cancels, and the room each lends while it awaits the peer (§9)."""

from __future__ import annotations

import asyncio
import time
import typing

from . import wire
from .errors import ConnectionLost, DeadlineExceeded, RemoteError
from .serving import _DEADLINE


class _Calling:
    """Making calls to the peer. Part of :class:`Connection`."""

    async def _call(self, target: int, method: str, args: list,
                    timeout: typing.Optional[float]) -> typing.Any:
        if self._closed.is_set():
            raise ConnectionLost(self._close_reason or "connection closed")
        now = time.monotonic()
        deadline = now + (timeout if timeout is not None else self.limits.default_deadline)
        inherited = _DEADLINE.get()
        if inherited is not None:
            deadline = min(deadline, inherited)
        budget = deadline - now
        if budget <= 0:
            raise DeadlineExceeded("the inherited deadline has passed")
        if len(self._waiting) + len(self._cancelled) >= self.limits.max_outgoing_calls:
            raise RemoteError("limit_exceeded", "remote_core::Error",
                              f"limit exceeded: max_outgoing_calls = {self.limits.max_outgoing_calls}")
        while True:
            cid = self._next_call
            self._next_call = (self._next_call + 1) & wire.U32_MAX
            if cid not in self._waiting and cid not in self._cancelled:
                break
        fut = self._loop.create_future()
        self._waiting[cid] = fut
        timeout_ms = max(1, min(wire.U32_MAX, int(budget * 1000)))
        try:
            self._write([wire.CALL, cid, target, method, timeout_ms, args])
        except BaseException:
            del self._waiting[cid]
            raise
        # A call awaiting the peer lends a running call's room, whoever made
        # it: the held calls look again (one of them may be the peer's call
        # nested under ours, which this call's reply waits for). Lending
        # only for calls made in serving the peer's calls (a handler's task
        # or a task it started) was tried and withdrawn: a call back made
        # from a thread or a worker task, and a client's own calls whose
        # callbacks wait for each other, then waited until their deadlines
        # (red-team pass 34), as in the Rust runtime (PROTOCOL.md §9).
        self._lending += 1
        self._room.set()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), budget)
        except asyncio.TimeoutError:
            self._cancel(cid)
            raise DeadlineExceeded(f"deadline exceeded after {budget:.3f}s calling {method}") from None
        except asyncio.CancelledError:
            self._cancel(cid)
            raise
        finally:
            self._lending -= 1

    def _cancel(self, cid: int) -> None:
        """Cancels our call ``cid``: its id stays reserved until the peer's
        one reply to it arrives (§3.6)."""
        fut = self._waiting.pop(cid, None)
        if fut is None or self._closed.is_set():
            return
        if not fut.done():
            fut.cancel()
        self._cancelled.add(cid)
        self._write_quietly([wire.CANCEL, cid])
