"""Serving the peer's calls (PROTOCOL.md §3.2, §8, §9): holding them back
while the output or the memory budget has no room, then running each."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import sys
import time
import typing

import msgpack

from . import wire
from .errors import ConnectionLost, ProtocolViolation, RemoteError, error_value_of

#: Deadline (``time.monotonic()``) of the call being served in this task:
#: calls made while serving it inherit what is left (PROTOCOL.md §8).
_DEADLINE: contextvars.ContextVar[typing.Optional[float]] = contextvars.ContextVar(
    "remote_rpc_deadline", default=None)

#: ``max_frame_len`` of the connection whose call is served in this task: a
#: stream's batch stays within half of it, so the reply fits in a frame.
FRAME_LIMIT: contextvars.ContextVar[typing.Optional[int]] = contextvars.ContextVar(
    "remote_rpc_frame_limit", default=None)


#: The least a reply is estimated at (``_Serving._replies_fit``), as in the
#: Rust runtime's share (PROTOCOL.md §9).
_MIN_ESTIMATE = 4 << 10

#: How soon held calls waiting for their replies' room look again while
#: output is queued (seconds), as the queue shrinks; the transport does not
#: say when it drains. While it does not shrink (a peer reading nothing)
#: the wait doubles up to the longest, so such a peer costs a few wake-ups
#: a second (at a fixed 5 ms, 200).
_DRAIN_LOOK = 0.005
_DRAIN_LOOK_LONGEST = 0.25


class _Held:
    """A call of the peer's held back, undecoded (held decoded, a 1 MiB
    frame of empty maps took 70 MB: a red-team pass, 24 MB sent, 1.7 GB
    held), or a release that came behind held calls: it waits its turn, so
    it cannot free an object a call sent before it names (a red-team pass:
    the id, given to the next export, had the held call run on another
    object)."""

    __slots__ = ("payload", "cid", "release", "cancelled", "arrived")

    def __init__(self, payload: bytes, cid: typing.Optional[int], release: bool = False) -> None:
        self.payload = payload
        self.cid = cid
        self.release = release
        self.cancelled = False
        self.arrived = time.monotonic()


class _Serving:
    """Serving the peer's calls: when each starts (held back, undecoded,
    while the output or the memory budget has no room), and running it.
    Part of :class:`Connection`."""

    def _queued(self) -> int:
        """Bytes queued for the peer (0 where the transport does not say)."""
        transport = getattr(self._writer, "transport", None)
        size = getattr(transport, "get_write_buffer_size", None)
        return size() if size is not None else 0

    def _unsent(self) -> int:
        """Bytes the kernel still holds for the peer, where it says (Linux):
        a peer reading slowly takes them first, before the transport's
        queue moves."""
        transport = getattr(self._writer, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        try:
            import fcntl
            import termios
            out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            return int.from_bytes(out, sys.byteorder)
        except Exception:  # noqa: BLE001 - not a socket, or not said here
            return 0

    def _call_or_hold(self, payload: bytes, cid: typing.Optional[int]) -> None:
        """Starts the peer's call, unless more than ``max_write_queue`` is
        queued for the peer, or the running calls' arguments leave no room
        for its own in ``memory_budget``, or calls wait already: then its
        frame waits, undecoded and in order, until the peer has read enough
        and there is room (`_release_held`). Only calls wait: replies,
        releases and cancels are read on, so a peer waiting for our reply
        to read never deadlocks with us. (Never held, a peer flooding small
        calls and reading nothing grew the queue without bound: 14 MB sent,
        73 MB queued, a red-team pass.)"""
        if (not self._held_calls and self._queued() <= self.limits.max_write_queue
                and self._has_room(len(payload)) and self._replies_fit()):
            self._start(payload, time.monotonic())
            return
        if wire.is_u32(cid) and (cid in self._incoming or cid in self._held_ids):
            raise ProtocolViolation(f"call id {cid} is already in flight")
        self._hold(_Held(payload, cid))
        self._held_ids.add(cid)

    def _held_full(self) -> bool:
        """Whether as many calls are held back as may run, or their frames
        are as long as ``memory_budget``."""
        return (len(self._held_calls) >= self.limits.max_calls_in_flight
                or self._held_bytes >= self.limits.memory_budget)

    def _would_hold(self, payload: bytes) -> bool:
        """Whether ``payload`` would join the held calls: a call (held, as
        calls are held already), or a release (held behind them)."""
        kind, _ = wire.peek(payload)
        return kind in (wire.CALL, wire.RELEASE)

    def _hold(self, held: _Held) -> None:
        self._held_calls.append(held)
        self._held_bytes += len(held.payload)
        if self._release_task is None:
            self._release_task = asyncio.ensure_future(self._release_held())

    def _has_room(self, length: int) -> bool:
        """Whether a call of a frame of ``length`` bytes may start: its
        arguments' weight fits in ``memory_budget`` beside the running
        calls', or none runs. Arguments are never lent room (as in the Rust
        runtime, PROTOCOL.md §9): room lent to the calls of a peer that
        this side awaits, a chain of handlers each awaiting the peer's
        callback took 1.7 GB against a 64 MiB budget (red-team pass 21); so
        a call nested under a running one whose arguments fill the budget
        waits for it, until its deadline (python/README.md, known gaps)."""
        weight = length * wire.DECODED_PER_BYTE
        return self._running_weight == 0 or self._running_weight + weight <= self.limits.memory_budget

    def _replies_fit(self) -> bool:
        """Whether the replies the running calls will queue, each estimated
        at the largest recent reply (``max_frame_len`` until the first),
        leave room under ``max_write_queue`` for one call more, or none
        runs. Started whenever the queue had room, a peer that read nothing
        had every call it could make in flight return a full frame at once:
        ``max_calls_in_flight × max_frame_len`` queued, 130 MB from 2.7 KB
        of calls (red-team pass 19). As in the Rust runtime (PROTOCOL.md
        §9), the calls running while one of ours awaits the peer's reply
        lend that room (a handler whose callback calls us back waits for a
        call that needs room it holds), and a reply larger than the estimate
        is what the bound misses (python/README.md, known gaps)."""
        running = self._running
        if running == 0:
            return True
        queued = self._queued()
        estimate = self._estimate or max(self.limits.max_frame_len, _MIN_ESTIMATE)

        def fits(n: int) -> bool:
            return n <= 0 or queued + n * estimate < self.limits.max_write_queue

        return fits(running) or fits(running - self._lending)

    def _replied(self, length: int) -> None:
        """A reply of ``length`` bytes was queued: the estimate becomes the
        largest recent reply, decaying by a quarter per smaller one."""
        e = self._estimate
        self._estimate = max(length, e - e // 4, _MIN_ESTIMATE) if e else max(length, _MIN_ESTIMATE)

    def _start(self, payload: bytes, arrived: float) -> None:
        unknown_own: typing.List[int] = []
        msg, kind = self._decode_checked(payload, unknown_own)
        if kind != wire.CALL:
            raise ProtocolViolation("malformed call")
        self._on_call(msg, unknown_own, len(payload) * wire.DECODED_PER_BYTE, arrived)

    def _answer_cancelled(self, held: _Held) -> None:
        """Answers a held call cancelled before it started, releasing the
        references it carried (never counted, the objects a caller passed
        in it stayed exported by the peer for the connection's life: a
        red-team pass)."""
        counts: typing.Dict[int, int] = collections.Counter()

        def hook(code: int, data: bytes) -> None:
            oid = wire.reference(code, data)  # checked as a started call's decode checks it
            if code == wire.EXT_SENDER_EXPORT:
                if oid not in counts and len(counts) >= self.limits.max_imports:
                    # As the call's decode would have refused it: a frame of
                    # 174,752 distinct references made as many releases in
                    # one turn of the loop, 5 s (red-team pass 21).
                    raise ProtocolViolation(f"limit exceeded: max_imports = {self.limits.max_imports}")
                counts[oid] += 1

        try:
            # Walked for its references only: each array and map dropped as
            # soon as it is read, so the walk holds at most the largest
            # one's slots (decoded whole, one 1 MiB frame of empty maps
            # took 76 MB; now 9 MB: red-team pass 20, G5).
            msgpack.unpackb(held.payload, raw=False, strict_map_key=False, ext_hook=hook,
                            list_hook=_dropped, object_pairs_hook=_dropped)
        except ProtocolViolation:
            raise
        except Exception as e:  # noqa: BLE001 - any malformed input
            raise ProtocolViolation(f"malformed message: {e}") from None
        for oid, count in counts.items():
            self._write_quietly([wire.RELEASE, oid, count])
        self._write_quietly(_cancelled(held.cid))

    async def _release_held(self) -> None:
        look, last = _DRAIN_LOOK, 0
        try:
            while self._held_calls and not self._closed.is_set():
                if self._queued() > self.limits.max_write_queue:
                    waited = time.monotonic()
                    if not await self._drained():
                        return
                    # A wait for output room does not count against the
                    # held calls' deadlines (§8: from the end of that wait).
                    waited = time.monotonic() - waited
                    for held in self._held_calls:
                        held.arrived += waited
                    continue
                held = self._held_calls[0]
                args_fit = held.release or held.cancelled or self._has_room(len(held.payload))
                output_waits = args_fit and not (held.release or held.cancelled or self._replies_fit())
                if not args_fit or output_waits:
                    # Room comes when a running call ends or one of ours
                    # starts awaiting the peer (`_room`), or as the peer
                    # reads what is queued: no event says so, so while
                    # anything is queued we look again, within 5 ms while
                    # the queue shrinks (waiting for `_room` alone, calls held
                    # for their replies' room waited for a long call to end
                    # with the queue empty: red-team pass 32).
                    self._room.clear()
                    queued = self._queued()
                    waited = time.monotonic()
                    if queued > 0:
                        look = _DRAIN_LOOK if queued < last else min(look * 2, _DRAIN_LOOK_LONGEST)
                        last = queued
                        try:
                            await asyncio.wait_for(self._room.wait(), look)
                        except asyncio.TimeoutError:
                            pass
                    else:
                        await self._room.wait()
                    if output_waits:
                        # A wait for output room, as the one above: not
                        # counted against the held calls' deadlines (§8;
                        # counted, calls held for their replies' room ran
                        # with a fifth of their time, red-team pass 33).
                        waited = time.monotonic() - waited
                        for h in self._held_calls:
                            h.arrived += waited
                    continue
                look, last = _DRAIN_LOOK, 0
                self._held_calls.popleft()
                self._held_bytes -= len(held.payload)
                self._held_ids.discard(held.cid)
                try:
                    if held.release:
                        self._on_release(self._decode_checked(held.payload, [])[0])
                    elif held.cancelled:
                        # Answered in its turn: cancels of held calls paced
                        # as the calls are (answered at once, a peer
                        # flooding calls and their cancels and reading a
                        # trickle grew the queue to 307 MB, a red-team pass).
                        self._answer_cancelled(held)
                    else:
                        self._start(held.payload, held.arrived)
                except ProtocolViolation as e:
                    self._goodbye(f"protocol violation: {e}")
                    return
        finally:
            self._release_task = None

    async def _drained(self) -> bool:
        """Waits for the peer to read what is queued for it; closes the
        connection if it reads nothing at all for ``write_stall_timeout``
        (a slow reader that keeps reading is waited for). False once closed."""
        self.held_back += 1
        taken = self._written - self._queued() - self._unsent()
        while not self._closed.is_set():
            try:
                await asyncio.wait_for(self._writer.drain(), self.limits.write_stall_timeout)
                return not self._closed.is_set()
            except asyncio.TimeoutError:
                now = self._written - self._queued() - self._unsent()
                if now <= taken:
                    self._shutdown(f"write_stall_timeout: the peer read nothing for "
                                   f"{self.limits.write_stall_timeout} s")
                    return False
                taken = now
            except Exception:  # noqa: BLE001 - the transport closed
                return False
        return False

    # ---- serving -------------------------------------------------------------

    def _on_call(self, msg: list, unknown_own: typing.List[int], weight: int, arrived: float) -> None:
        _, cid, target, method, timeout_ms, args = msg
        if not (wire.is_u32(cid) and wire.is_u32(target) and isinstance(method, str)
                and wire.is_u32(timeout_ms) and isinstance(args, list)):
            raise ProtocolViolation("malformed call")
        if cid in self._incoming:
            raise ProtocolViolation(f"call id {cid} is already in flight")

        def reject(kind: str, text: str) -> None:
            self._write_quietly([wire.ERROR, cid, wire.error_value(kind, "remote_core::Error", text)])

        if unknown_own:
            return reject("unknown_object", f"reference to unknown object id {unknown_own[0]} of ours")
        if self._running >= self.limits.max_calls_in_flight:
            return reject("limit_exceeded", f"limit exceeded: max_calls_in_flight = "
                          f"{self.limits.max_calls_in_flight} (call {cid} refused)")
        entry = self._exports.get(target)
        if entry is None:
            return reject("unknown_object", f"no object with id {target} on this connection")
        # From the call's arrival, its time held back included (§8).
        budget = min(max(timeout_ms, 1) / 1000.0, self.limits.max_deadline)
        budget -= time.monotonic() - arrived
        if budget <= 0:
            return reject("deadline_exceeded", f"the deadline of {timeout_ms} ms passed while the "
                          f"call waited to start")
        self._running += 1
        self._running_weight += weight
        task = asyncio.ensure_future(self._serve(cid, entry[0], method, args, budget))
        self._incoming[cid] = task
        # Given back however the task ends, even cancelled before its first
        # step (a cancel read with its call): its `finally` never ran, and
        # 128 such pairs left every later call refused, a red-team pass.
        task.add_done_callback(lambda _: self._served(weight))

    def _served(self, weight: int) -> None:
        self._running -= 1
        self._running_weight -= weight
        self._room.set()

    async def _serve(self, cid: int, obj: typing.Any, method: str, args: list, budget: float) -> None:
        me = asyncio.current_task()
        _DEADLINE.set(time.monotonic() + budget)
        FRAME_LIMIT.set(self.limits.max_frame_len)
        try:
            reply = [wire.RETURN, cid, await asyncio.wait_for(self._dispatch(obj, method, args), budget)]
        except asyncio.TimeoutError:
            reply = [wire.ERROR, cid, wire.error_value(
                "deadline_exceeded", "remote_core::Error",
                f"deadline of {int(budget * 1000)} ms passed; the call was stopped")]
        except asyncio.CancelledError:
            return
        except BaseException as e:  # noqa: BLE001 - every failure is answered
            reply = [wire.ERROR, cid, error_value_of(e)]
        # Answered only if not cancelled meanwhile: one reply per call.
        if self._incoming.get(cid) is me:
            del self._incoming[cid]
            try:
                self._replied(self._write(reply))
            except RemoteError as e:  # e.g. the reply is over max_frame_len
                self._write_quietly([wire.ERROR, cid, error_value_of(e)])
            except ConnectionLost:
                pass
            except Exception as e:  # noqa: BLE001 - a value that does not encode
                self._write_quietly([wire.ERROR, cid, wire.error_value(
                    "encode", "remote_core::Error", f"cannot encode return value: {e}")])

    async def _dispatch(self, obj: typing.Any, method: str, args: list) -> typing.Any:
        from .typed import bound_method  # late: typed imports us

        fn, convert_args, convert_result = bound_method(obj, method)
        if fn is None:
            raise RemoteError("unknown_method", "remote_core::Error",
                              f"interface {type(obj).__name__} has no method {method!r}")
        try:
            inspect.signature(fn).bind(*args)
            call_args = convert_args(args)
        except (TypeError, ValueError, KeyError) as e:
            raise RemoteError("bad_arguments", "remote_core::Error",
                              f"cannot decode arguments: {e}") from None
        result = fn(*call_args)
        if inspect.isawaitable(result):
            result = await result
        return convert_result(result)


def _dropped(_: typing.Any) -> None:
    return None


def _cancelled(cid: typing.Any) -> list:
    return [wire.ERROR, cid, wire.error_value(
        "cancelled", "remote_core::Error", f"call {cid} was cancelled by the caller")]
