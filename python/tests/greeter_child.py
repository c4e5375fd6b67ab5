"""A Python peer serving `remote_examples::probe::Greeter` on its stdin and
stdout (the child side of Rust's `ConnectionBuilder::spawn_child`); the
Rust test `examples/tests/python.rs` spawns it and calls it. Logs go to
stderr only: stdout carries the protocol."""

from __future__ import annotations

import asyncio
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import remote_rpc  # noqa: E402


class Greeter:
    """Untyped: methods named by their wire names, plain msgpack values."""

    async def greet(self, name: str) -> str:
        if name == "mallory":
            # A typed error: `data` is the Rust enum's wire shape.
            raise remote_rpc.ApplicationError(
                {"Refused": {"name": name}}, message=f"refusing to greet {name!r}",
                type_name="remote_examples::probe::GreetError")
        return f"hello, {name}!"

    def add(self, a: int, b: int) -> int:
        return a + b

    async def use_tally(self, tally: remote_rpc.Proxy, n: int) -> int:
        total = await tally.add(n)
        tally.release()
        return total

    async def fail(self) -> None:
        return 1 // 0


async def main() -> None:
    conn = await remote_rpc.serve_stdio(Greeter())
    print("greeter: serving on stdio", file=sys.stderr)
    print("greeter: " + await conn.closed(), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
