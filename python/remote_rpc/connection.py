"""A connection to a peer (PROTOCOL.md §4-§9): calls both ways, the export
and import tables with counted releases, cancels, goodbyes."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import sys
import time
import typing
import weakref

import msgpack

from . import auth, wire
from .errors import (
    ConnectionLost,
    DeadlineExceeded,
    ProtocolViolation,
    RemoteError,
    error_value_of,
)

#: Deadline (``time.monotonic()``) of the call being served in this task:
#: calls made while serving it inherit what is left (PROTOCOL.md §8).
_DEADLINE: contextvars.ContextVar[typing.Optional[float]] = contextvars.ContextVar(
    "remote_rpc_deadline", default=None)

#: ``max_frame_len`` of the connection whose call is served in this task: a
#: stream's batch stays within half of it, so the reply fits in a frame.
FRAME_LIMIT: contextvars.ContextVar[typing.Optional[int]] = contextvars.ContextVar(
    "remote_rpc_frame_limit", default=None)


class _Import:
    """One generation of an imported object: receipts counted since it was
    first received (or last released)."""

    __slots__ = ("id", "count", "proxy", "__weakref__")

    def __init__(self, oid: int) -> None:
        self.id = oid
        self.count = 0
        self.proxy: typing.Optional[weakref.ref] = None


class Proxy:
    """A peer's object: call its methods by wire name.

    ``await proxy.call("post", [msg])`` or ``await proxy.post(msg)``. When
    the last reference to the proxy goes away (or on ``await
    proxy.release()``), the connection sends a release with every receipt
    counted (§4).
    """

    def __init__(self, conn: "Connection", oid: int, imp: typing.Optional[_Import]) -> None:
        self._conn = conn
        self._id = oid
        self._imp = imp
        self._released = False
        if imp is not None:
            weakref.finalize(self, conn._release_import, imp)

    @property
    def object_id(self) -> int:
        """The peer's id of the object (0: the root)."""
        return self._id

    @property
    def connection(self) -> "Connection":
        return self._conn

    async def call(self, method: str, args: typing.Sequence[typing.Any] = (),
                   timeout: typing.Optional[float] = None) -> typing.Any:
        """Calls ``method`` (its wire name) with ``args``; returns the value or
        raises :class:`RemoteError`."""
        if self._released:
            raise ValueError(f"object {self._id} was released; it cannot be called")
        return await self._conn._call(self._id, method, list(args), timeout)

    def release(self) -> None:
        """Gives the object back now (sends the release); later calls fail."""
        self._released = True
        if self._imp is not None:
            self._conn._release_import(self._imp)
            self._imp = None

    def __getattr__(self, name: str) -> typing.Callable[..., typing.Awaitable[typing.Any]]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def method(*args: typing.Any) -> typing.Any:
            return await self.call(name, args)

        return method

    def __repr__(self) -> str:
        return f"<remote_rpc.Proxy object {self._id} on {self._conn.peer}>"


class Connection:
    """One connection. Use :func:`connect`, :func:`serve_stdio` or
    :meth:`Connection.open` (any asyncio stream pair)."""

    def __init__(self, reader: asyncio.StreamReader, writer: typing.Any, root: typing.Any,
                 limits: wire.Limits, peer: str) -> None:
        self._reader = reader
        self._writer = writer
        self.limits = limits
        self.peer = peer
        self._closed = asyncio.Event()
        self._close_reason: typing.Optional[str] = None
        #: Times the peer's calls waited for it to read what was queued for
        #: it (over ``Limits.max_write_queue``).
        self.held_back = 0
        # The peer's calls held back meanwhile, in order, and the task that
        # starts them once the peer has read enough (`_release_held`).
        self._held_calls: typing.Deque[typing.Tuple[list, typing.List[int]]] = collections.deque()
        self._release_task: typing.Optional[asyncio.Task] = None
        # Bytes handed to the transport: less what it still queues, what the
        # peer has taken (`_drained`).
        self._written = 0
        # Exports: id -> [object, count]; the root (0) is never counted.
        self._exports: typing.Dict[int, typing.List[typing.Any]] = {}
        self._export_ids: typing.Dict[int, int] = {}
        if root is not None:
            self._exports[0] = [root, 0]
        self._imports: typing.Dict[int, _Import] = {}
        # Our calls: id -> future; ids cancelled and waiting for their reply.
        self._next_call = 0
        self._waiting: typing.Dict[int, asyncio.Future] = {}
        self._cancelled: typing.Set[int] = set()
        # Incoming calls: id -> task (live: not yet answered nor cancelled).
        self._incoming: typing.Dict[int, asyncio.Task] = {}
        self._running = 0
        self._loop = asyncio.get_running_loop()
        self._reader_task: typing.Optional[asyncio.Task] = None
        self._exported_now: typing.List[int] = []

    # ---- opening and closing -------------------------------------------

    @classmethod
    async def open(cls, reader: asyncio.StreamReader, writer: typing.Any, *, root: typing.Any = None,
                   limits: typing.Optional[wire.Limits] = None,
                   credentials: typing.Optional[typing.Tuple[str, bytes]] = None,
                   peer: str = "stream") -> "Connection":
        """Runs the handshake over ``reader``/``writer`` and starts serving
        ``root`` (object 0) to the peer. With ``credentials`` (a user name
        and that user's key), proves to a server that requires it that this
        side holds the key, after the server proved it knows it too
        (PROTOCOL.md §7.1); the key never crosses the wire."""
        conn = cls(reader, writer, root, limits or wire.Limits(), peer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + conn.limits.handshake_timeout
        client_nonce = auth.nonce()
        slot = None if credentials is None else auth.credentials_slot(client_nonce, credentials[0])
        conn._write([wire.HELLO, wire.PROTOCOL_MAGIC, wire.PROTOCOL_VERSION,
                     wire.PROTOCOL_VERSION, [], slot])
        try:
            first = await asyncio.wait_for(
                wire.read_frame(reader, conn.limits.max_handshake_frame_len, "max_handshake_frame_len"),
                conn.limits.handshake_timeout)
        except asyncio.TimeoutError:
            conn._goodbye(f"no handshake within handshake_timeout = {conn.limits.handshake_timeout}s")
            raise ConnectionLost("no handshake from the peer") from None
        except wire.FrameTooLarge as e:
            conn._goodbye(str(e).replace("max_handshake_frame_len", "max_handshake_frame_len"))
            raise ConnectionLost(f"handshake failed: {e}") from None
        if first is None:
            conn._shutdown("peer closed the connection before the handshake")
            raise ConnectionLost("peer closed the connection before the handshake")
        try:
            msg = msgpack.unpackb(first, raw=False, strict_map_key=False)
            kind = wire.check_shape(msg)
        except Exception as e:  # noqa: BLE001 - any decoding failure
            conn._goodbye(f"handshake refused: malformed message: {e}")
            raise ConnectionLost(f"handshake failed: {e}") from None
        if kind == wire.GOODBYE:
            conn._shutdown(f"peer refused the connection: {msg[1]}")
            raise ConnectionLost(f"handshake failed: peer refused the connection: {msg[1]}")
        if kind != wire.HELLO or msg[1] != wire.PROTOCOL_MAGIC:
            conn._goodbye("handshake refused: expected a handshake (message kind 0) first")
            raise ConnectionLost("handshake failed: the peer did not send a hello")
        lo, hi = msg[2], msg[3]
        if min(hi, wire.PROTOCOL_VERSION) < max(lo, wire.PROTOCOL_VERSION):
            reason = (f"no common protocol version: peer speaks {lo}..={hi}, "
                      f"we speak {wire.PROTOCOL_VERSION}..={wire.PROTOCOL_VERSION}")
            conn._goodbye(reason)
            raise ConnectionLost(f"handshake failed: {reason}")
        await conn._authenticate(msg[5], credentials, client_nonce, deadline)
        conn._reader_task = asyncio.ensure_future(conn._read_loop())
        return conn

    async def _authenticate(self, slot: typing.Any, credentials: typing.Optional[typing.Tuple[str, bytes]],
                            client_nonce: bytes, deadline: float) -> None:
        """The client side of the exchange (§7.1), after the peer's hello
        with ``slot`` in its ``auth`` field."""
        server_nonce = auth.challenge_nonce(slot)
        if credentials is None:
            if server_nonce is not None:
                self._refuse(auth.NO_CREDENTIALS)
            return  # nothing asked; junk in an unused slot is ignored
        if server_nonce is None:
            self._refuse(auth.NO_CHALLENGE)
        user, key = credentials
        try:
            payload = await asyncio.wait_for(
                wire.read_frame(self._reader, self.limits.max_handshake_frame_len,
                                "max_handshake_frame_len"),
                max(deadline - asyncio.get_running_loop().time(), 0))
        except asyncio.TimeoutError:
            self._refuse(f"authentication did not complete within handshake_timeout = "
                         f"{self.limits.handshake_timeout}s")
        except wire.FrameTooLarge as e:
            self._refuse(str(e))
        if payload is None:
            self._shutdown("peer closed the connection during authentication")
            raise ConnectionLost("handshake failed: peer closed the connection during authentication")
        theirs = auth.parse_proof(payload)
        if theirs is None:
            try:
                msg = msgpack.unpackb(payload, raw=False)
            except Exception:  # noqa: BLE001 - not a goodbye then
                msg = None
            if isinstance(msg, list) and len(msg) == 2 and msg[0] == wire.GOODBYE:
                self._shutdown(f"peer refused the connection: {msg[1]}")
                raise ConnectionLost(f"handshake failed: peer refused the connection: {msg[1]}")
            self._refuse(auth.NO_PROOF)
        if not auth.verify(key, "server", user, client_nonce, server_nonce, theirs):
            self._refuse(auth.IMPOSTOR)
        self._write([auth.PROOF_KIND, auth.proof(key, "client", user, client_nonce, server_nonce)])

    def _refuse(self, why: str) -> typing.NoReturn:
        """Says goodbye with ``why`` and fails the handshake."""
        self._goodbye(why)
        raise ConnectionLost(f"handshake failed: {why}")

    def root(self) -> Proxy:
        """A proxy for the peer's root object (object 0)."""
        return Proxy(self, 0, None)

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    async def closed(self) -> str:
        """Waits until the connection is closed; returns why."""
        await self._closed.wait()
        return self._close_reason or "closed"

    def close(self, reason: str = "closed by peer") -> None:
        """Says goodbye and closes: pending calls fail, exports are dropped."""
        self._goodbye(reason)

    async def aclose(self) -> None:
        """Like :meth:`close`, then waits until the stream is shut."""
        self.close()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)
        try:
            await self._writer.wait_closed()
        except Exception:  # noqa: BLE001 - already broken: nothing to do
            pass

    def exported_objects(self) -> int:
        """Objects exported to the peer (not counting the root)."""
        return sum(1 for k in self._exports if k != 0)

    def imported_objects(self) -> int:
        """Peer objects currently imported."""
        return len(self._imports)

    def _goodbye(self, reason: str) -> None:
        if not self._closed.is_set():
            try:
                self._write([wire.GOODBYE, reason])
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self._close_reason = reason
        self._closed.set()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(reason))
        self._waiting.clear()
        self._cancelled.clear()
        for task in list(self._incoming.values()):
            task.cancel()
        self._incoming.clear()
        self._held_calls.clear()
        if self._release_task is not None:
            self._release_task.cancel()
        self._exports.clear()
        self._export_ids.clear()
        self._imports.clear()
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001
            pass
        current = asyncio.current_task() if self._loop.is_running() else None
        if self._reader_task is not None and self._reader_task is not current:
            self._reader_task.cancel()

    # ---- encoding: references out ---------------------------------------

    def _write(self, message: list) -> None:
        """Encodes and queues one message. References in it are exported;
        if it cannot be sent they are given back (§4)."""
        if self._closed.is_set():
            raise ConnectionLost(self._close_reason or "connection closed")
        self._exported_now = []
        try:
            data = wire.frame(message, self._encode_ref)
            if len(data) - 4 > self.limits.max_frame_len:
                raise RemoteError("limit_exceeded", "remote_core::Error",
                                  f"limit exceeded: max_frame_len = {self.limits.max_frame_len} "
                                  f"(message encodes to {len(data) - 4} bytes)")
        except BaseException:
            for oid in self._exported_now:
                self._unexport(oid, 1)
            raise
        finally:
            self._exported_now = []
        self._writer.write(data)
        self._written += len(data)

    def _encode_ref(self, obj: typing.Any) -> typing.Any:
        """msgpack ``default``: proxies of this connection go back as type-2
        references; any other object is exported as a type-1 reference."""
        if isinstance(obj, Proxy):
            if obj._conn is self and obj._id != 0:
                return msgpack.ExtType(wire.EXT_RECEIVER_OWN, obj._id.to_bytes(4, "big"))
            raise TypeError("a proxy can only be handed back to the peer it came from")
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, (int, float, str, bytes, bytearray, type)):
            raise TypeError(f"cannot encode {type(obj).__name__}")
        return msgpack.ExtType(wire.EXT_SENDER_EXPORT, self._export(obj).to_bytes(4, "big"))

    def _export(self, obj: typing.Any) -> int:
        oid = self._export_ids.get(id(obj))
        if oid is None:
            if self.exported_objects() >= self.limits.max_exports:
                raise RemoteError("limit_exceeded", "remote_core::Error",
                                  f"limit exceeded: max_exports = {self.limits.max_exports}")
            oid = 1
            while oid in self._exports:
                oid += 1
            self._exports[oid] = [obj, 0]
            self._export_ids[id(obj)] = oid
        self._exports[oid][1] += 1
        self._exported_now.append(oid)
        return oid

    def _unexport(self, oid: int, count: int) -> None:
        entry = self._exports[oid]
        entry[1] -= count
        if entry[1] == 0:
            del self._exports[oid]
            del self._export_ids[id(entry[0])]

    # ---- decoding: references in ----------------------------------------

    def _decode(self, payload: bytes, unknown_own: typing.List[int]) -> typing.Any:
        """Decodes a frame, counting every type-1 reference in order and
        resolving type-2 ones (unknown ids are collected in ``unknown_own``)."""

        def hook(code: int, data: bytes) -> typing.Any:
            if len(data) != 4:
                raise ValueError(f"extension type {code} of {len(data)} bytes")
            oid = int.from_bytes(data, "big")
            if code == wire.EXT_SENDER_EXPORT:
                if oid == 0:
                    raise ValueError("a reference (ext type 1) to object 0: the root is never sent as a reference")
                if oid == 0xFFFFFFFF:
                    # PROTOCOL.md §4: the highest id names no object.
                    raise ValueError(f"a reference (ext type 1) to object {oid}: that id names no object")
                return self._receive(oid)
            if code == wire.EXT_RECEIVER_OWN:
                entry = self._exports.get(oid)
                if entry is None:
                    unknown_own.append(oid)
                    return None
                return entry[0]
            raise ValueError(f"extension type {code} is not allowed")

        return msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=hook)

    def _receive(self, oid: int) -> Proxy:
        imp = self._imports.get(oid)
        proxy = imp.proxy() if imp is not None and imp.proxy is not None else None
        if imp is None:
            if len(self._imports) >= self.limits.max_imports:
                raise ValueError(f"limit exceeded: max_imports = {self.limits.max_imports}")
            imp = _Import(oid)
            self._imports[oid] = imp
        imp.count += 1
        if proxy is None:
            proxy = Proxy(self, oid, imp)
            imp.proxy = weakref.ref(proxy)
        return proxy

    def _release_import(self, imp: _Import) -> None:
        """The last proxy of an import generation is gone: release it."""
        if self._imports.get(imp.id) is not imp or imp.count == 0:
            return
        del self._imports[imp.id]
        count, imp.count = imp.count, 0
        if self._closed.is_set() or self._loop.is_closed():
            return
        # Queued, not written from here: a finalizer may run anywhere, even
        # in the middle of encoding another message.
        self._loop.call_soon_threadsafe(self._write_quietly, [wire.RELEASE, imp.id, count])

    def _write_quietly(self, message: list) -> None:
        try:
            self._write(message)
        except Exception:  # noqa: BLE001 - closed meanwhile
            pass

    # ---- calls out ---------------------------------------------------------

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
        try:
            return await asyncio.wait_for(asyncio.shield(fut), budget)
        except asyncio.TimeoutError:
            self._cancel(cid)
            raise DeadlineExceeded(f"deadline exceeded after {budget:.3f}s calling {method}") from None
        except asyncio.CancelledError:
            self._cancel(cid)
            raise

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

    # ---- reading -----------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "peer closed the connection"
        try:
            while True:
                payload = await wire.read_frame(self._reader, self.limits.max_frame_len, "max_frame_len")
                if payload is None:
                    break
                self._on_frame(payload)
                if self._closed.is_set():
                    return
                if len(self._held_calls) >= self.limits.max_calls_in_flight:
                    # As many calls held back as may run: read nothing more
                    # until they start.
                    task = self._release_task
                    if task is not None:
                        await asyncio.wait([task])
                    if self._closed.is_set():
                        return
        except wire.FrameTooLarge as e:
            self._goodbye(str(e))
            return
        except ProtocolViolation as e:
            self._goodbye(f"protocol violation: {e}")
            return
        except asyncio.CancelledError:
            return
        except (ConnectionError, OSError) as e:
            reason = f"read failed: {e}"
        except Exception as e:  # noqa: BLE001 - never a reader dead and the connection open
            self._goodbye(f"protocol violation: malformed message: {type(e).__name__}: {e}")
            return
        self._shutdown(reason)

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

    def _call_or_hold(self, msg: list, unknown_own: typing.List[int]) -> None:
        """Starts the peer's call, unless more than ``max_write_queue`` is
        queued for the peer (or calls wait already): then it waits, in order,
        until the peer has read enough (`_release_held`). Only calls wait:
        replies, releases and cancels are read on, so a peer waiting for our
        reply to read never deadlocks with us. (Never held, a peer flooding
        small calls and reading nothing grew the queue without bound: 14 MB
        sent, 73 MB queued, a red-team pass.)"""
        if not self._held_calls and self._queued() <= self.limits.max_write_queue:
            self._on_call(msg, unknown_own)
            return
        self._held_calls.append((msg, unknown_own))
        if self._release_task is None:
            self._release_task = asyncio.ensure_future(self._release_held())

    async def _release_held(self) -> None:
        try:
            while self._held_calls and not self._closed.is_set():
                if self._queued() > self.limits.max_write_queue:
                    if not await self._drained():
                        return
                    continue
                msg, unknown_own = self._held_calls.popleft()
                try:
                    self._on_call(msg, unknown_own)
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

    def _on_frame(self, payload: bytes) -> None:
        unknown_own: typing.List[int] = []
        try:
            msg = self._decode(payload, unknown_own)
            kind = wire.check_shape(msg)
        except ProtocolViolation:
            raise
        except Exception as e:  # noqa: BLE001 - any malformed input
            raise ProtocolViolation(f"malformed message: {e}") from None
        if kind == wire.HELLO:
            raise ProtocolViolation("handshake sent twice")
        if kind == wire.CALL:
            self._call_or_hold(msg, unknown_own)
        elif kind in (wire.RETURN, wire.ERROR):
            if unknown_own:
                raise ProtocolViolation(f"reference to unknown object id {unknown_own[0]} of ours")
            self._on_reply(kind, msg)
        elif kind == wire.RELEASE:
            _, oid, count = msg
            entry = self._exports.get(oid) if wire.is_u32(oid) else None
            if oid == 0 or entry is None or not wire.is_u32(count) or count == 0 or count > entry[1]:
                raise ProtocolViolation(f"bad release of object {oid} (count {count})")
            self._unexport(oid, count)
        elif kind == wire.CANCEL:
            cid = msg[1]
            task = self._incoming.pop(cid, None)
            held = [h for h in self._held_calls if h[0][1] == cid]
            if held:
                # Not started yet: answered as cancelled, never started.
                self._held_calls.remove(held[0])
                self._write_quietly([wire.ERROR, cid, wire.error_value(
                    "cancelled", "remote_core::Error", f"call {cid} was cancelled by the caller")])
            elif task is not None:
                task.cancel()
                self._write_quietly([wire.ERROR, cid, wire.error_value(
                    "cancelled", "remote_core::Error", f"call {cid} was cancelled by the caller")])
        elif kind == wire.GOODBYE:
            # The receiver of a goodbye closes without answering it (§3.7).
            self._shutdown(f"peer closed the connection: {msg[1]}")

    def _on_reply(self, kind: int, msg: list) -> None:
        cid = msg[1]
        fut = self._waiting.pop(cid, None)
        if fut is None:
            # The one reply to a call we cancelled: its id is free again.
            self._cancelled.discard(cid)
            return
        if fut.done():
            return
        if kind == wire.RETURN:
            fut.set_result(msg[2])
            return
        e = msg[2]
        if not isinstance(e, list) or len(e) != 6:
            raise ProtocolViolation("error value has 6 fields")
        fut.set_exception(RemoteError(e[0], e[1], e[2], e[3] or (), e[4], e[5]))

    # ---- serving -------------------------------------------------------------

    def _on_call(self, msg: list, unknown_own: typing.List[int]) -> None:
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
        budget = min(max(timeout_ms, 1) / 1000.0, self.limits.max_deadline)
        self._running += 1
        task = asyncio.ensure_future(self._serve(cid, entry[0], method, args, budget))
        self._incoming[cid] = task

    async def _serve(self, cid: int, obj: typing.Any, method: str, args: list, budget: float) -> None:
        me = asyncio.current_task()
        try:
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
                    self._write(reply)
                except RemoteError as e:  # e.g. the reply is over max_frame_len
                    self._write_quietly([wire.ERROR, cid, error_value_of(e)])
                except ConnectionLost:
                    pass
                except Exception as e:  # noqa: BLE001 - a value that does not encode
                    self._write_quietly([wire.ERROR, cid, wire.error_value(
                        "encode", "remote_core::Error", f"cannot encode return value: {e}")])
        finally:
            self._running -= 1

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
