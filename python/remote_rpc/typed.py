"""Typed values for generated stubs: stub dataclasses to and from their
wire shapes (PROTOCOL.md §2), and typed clients and servers.

A type descriptor, as the stub generator writes it, is a string
(``"any"``, ``"unit"``, ``"bool"``, ``"int"``, ``"float"``, ``"str"``,
``"bytes"``, ``"error"``) or a tuple: ``("list", T)``, ``("map", K, V)``,
``("opt", T)``, ``("tuple", (T, ...))``, ``("result", OK, ERR)``,
``("named", key)``, ``("cap", key)``, ``("stream", T)``. Keys are schema
keys, looked up in the stub module's ``TYPES``, ``VARIANTS`` and
``CLIENTS``.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing

from .connection import Proxy
from .errors import RemoteError
from .stream import RemoteStream


def plain(v: typing.Any) -> typing.Any:
    """A stub value as its msgpack shape (dataclasses by their wire
    metadata; clients as their proxy; anything else as is)."""
    if isinstance(v, Client):
        return v._proxy
    cls = type(v)
    result = getattr(cls, "__wire_result__", None)
    if result is not None:
        return {result: plain(getattr(v, dataclasses.fields(v)[0].name))}
    shape = getattr(cls, "__wire_shape__", None)
    if shape is not None and dataclasses.is_dataclass(v):
        values = [plain(getattr(v, f.name)) for f in dataclasses.fields(v)]
        if shape == "unit":
            body: typing.Any = None
        elif shape == "newtype":
            body = values[0]
        elif shape == "tuple":
            body = values
        else:
            body = dict(zip(cls.__wire_fields__, values))
        variant = getattr(cls, "__wire_variant__", None)
        if variant is None:
            return body
        return variant if shape == "unit" else {variant: body}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {plain(k): plain(x) for k, x in v.items()}
    return v


def _struct(cls: type, body: typing.Any, module: types.ModuleType) -> typing.Any:
    shape = cls.__wire_shape__
    tys = cls.__wire_types__
    if shape == "unit":
        return cls()
    if shape == "newtype":
        return cls(from_wire(tys[0], body, module))
    if isinstance(body, dict) and shape == "struct":
        missing = [f for f in cls.__wire_fields__ if f not in body]
        if missing:
            raise ValueError(f"{cls.__name__}: missing field(s) {missing}")
        return cls(*[from_wire(t, body[f], module) for f, t in zip(cls.__wire_fields__, tys)])
    if isinstance(body, list) and len(body) == len(tys):
        return cls(*[from_wire(t, x, module) for t, x in zip(tys, body)])
    raise ValueError(f"{cls.__name__}: unexpected wire value {body!r}")


def from_wire(ty: typing.Any, v: typing.Any, module: types.ModuleType) -> typing.Any:
    """Decodes a msgpack value of schema type ``ty`` into stub objects."""
    if isinstance(ty, str):
        if ty == "unit":
            return None
        if ty == "float" and isinstance(v, int):
            return float(v)
        return v
    tag = ty[0]
    if tag == "list":
        return [from_wire(ty[1], x, module) for x in v]
    if tag == "map":
        return {from_wire(ty[1], k, module): from_wire(ty[2], x, module) for k, x in v.items()}
    if tag == "opt":
        return None if v is None else from_wire(ty[1], v, module)
    if tag == "tuple":
        return tuple(from_wire(t, x, module) for t, x in zip(ty[1], v))
    if tag == "result":
        (name, body), = v.items()
        if name == "Ok":
            return module.Ok(from_wire(ty[1], body, module))
        return module.Err(from_wire(ty[2], body, module))
    if tag == "named":
        variants = module.VARIANTS.get(ty[1])
        if variants is None:
            return _struct(module.TYPES[ty[1]], v, module)
        if isinstance(v, str):
            return variants[v]()
        (name, body), = v.items()
        return _struct(variants[name], body, module)
    if tag == "cap":
        if isinstance(v, Proxy):
            client = module.CLIENTS.get(ty[1])
            return client(v) if client is not None else v
        return v  # our own object, handed back
    if tag == "stream":
        item = ty[1]
        return RemoteStream(v, lambda x: from_wire(item, x, module))
    raise ValueError(f"unknown type descriptor {ty!r}")


def _protocol_of(cls: type) -> typing.Optional[type]:
    for base in cls.__mro__:
        if "__wire_methods__" in base.__dict__ and base.__dict__["__wire_methods__"]:
            return base
    return None


def bound_method(obj: typing.Any, wire_name: str) -> typing.Tuple[
        typing.Optional[typing.Callable[..., typing.Any]],
        typing.Callable[[list], list],
        typing.Callable[[typing.Any], typing.Any]]:
    """The Python method serving wire method ``wire_name`` of ``obj``, with
    argument and result converters. Objects implementing a generated
    Protocol get typed arguments; others get plain msgpack values."""
    proto = _protocol_of(type(obj))
    if proto is not None:
        entry = proto.__wire_methods__.get(wire_name)
        if entry is None:
            return None, list, plain
        py, arg_tys, _ret, _err = entry
        module = sys.modules[proto.__module__]
        fn = getattr(obj, py, None)

        def convert(args: list) -> list:
            return [from_wire(t, a, module) for t, a in zip(arg_tys, args)]

        return fn, convert, plain
    if wire_name.startswith("_"):
        return None, list, plain
    return getattr(obj, wire_name, None), list, plain


class Client:
    """Base of generated typed clients: ``ChatClient(conn.root())``."""

    #: The generated Protocol class this client calls (set by the stubs).
    __protocol__: typing.ClassVar[typing.Any] = None

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy

    @property
    def proxy(self) -> Proxy:
        return self._proxy

    def release(self) -> None:
        """Gives the object back to its peer now."""
        self._proxy.release()

    async def _invoke(self, wire_name: str, *args: typing.Any) -> typing.Any:
        proto = self.__protocol__
        _py, _args, ret, err = proto.__wire_methods__[wire_name]
        module = sys.modules[proto.__module__]
        try:
            raw = await self._proxy.call(wire_name, [plain(a) for a in args])
        except RemoteError as e:
            if e.kind == "application" and err != "error" and e.data is not None:
                try:
                    e.data = from_wire(err, e.data, module)
                except Exception:  # noqa: BLE001 - keep the plain value
                    pass
            raise
        return from_wire(ret, raw, module)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._proxy!r}>"
