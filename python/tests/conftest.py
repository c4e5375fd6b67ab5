"""Fixtures: the Rust servers (the chat example and the test-only probe
server, started on 127.0.0.1 port 0 and stopped after each test) and the
typed stubs generated from the examples' schema by remote-policy.

Binaries come from ``$REMOTE_BIN_DIR`` (where ``.ci/run`` built them) or
are built here with cargo.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import typing

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))


def _bin_dir() -> pathlib.Path:
    env = os.environ.get("REMOTE_BIN_DIR")
    if env:
        return pathlib.Path(env)
    subprocess.run(
        ["cargo", "build", "-q", "-p", "remote-examples", "--example", "chat",
         "--bin", "probe-server", "--bin", "policy"],
        cwd=ROOT, check=True)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug"


BIN = _bin_dir()


def binary(name: str) -> pathlib.Path:
    for candidate in (BIN / name, BIN / "examples" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} not found in {BIN} (set REMOTE_BIN_DIR or build it)")


@pytest.fixture(scope="session")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> typing.Any:
    """The examples' stubs, generated now by `policy stubs python`."""
    out = tmp_path_factory.mktemp("stubs") / "examples_stubs.py"
    subprocess.run([str(binary("policy")), "stubs", "python", "-o", str(out)], check=True)
    spec = importlib.util.spec_from_file_location("examples_stubs", out)
    module = importlib.util.module_from_spec(spec)
    sys.modules["examples_stubs"] = module
    spec.loader.exec_module(module)
    return module


class RustServer:
    """A server process; its address is read from its first stderr line."""

    def __init__(self, argv: typing.List[str], env: typing.Optional[dict] = None) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})}, text=True)
        line = self.proc.stderr.readline()
        found = re.search(r"(tcp://\S+)", line)
        if not found:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}")
        self.addr = found.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - then kill it
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc.stderr.close()


@pytest.fixture
def chat_server() -> typing.Iterator[RustServer]:
    server = RustServer([str(binary("chat")), "server", "tcp://127.0.0.1:0"])
    try:
        yield server
    finally:
        server.proc.kill()
        server.proc.wait(timeout=30)
        server.proc.stderr.close()


@pytest.fixture
def probe_server() -> typing.Iterator[RustServer]:
    server = RustServer([str(binary("probe-server")), "tcp://127.0.0.1:0"],
                        env={"RUST_BACKTRACE": "1"})
    try:
        yield server
    finally:
        server.stop()


def run(coro: typing.Awaitable[typing.Any], timeout: float = 60) -> typing.Any:
    """Runs a test coroutine, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def eventually(cond: typing.Callable[[], typing.Awaitable[bool]], timeout: float = 60) -> bool:
    """Polls ``cond`` until it holds (True) or ``timeout`` passes (False)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await cond():
            return True
        await asyncio.sleep(0.01)
    return await cond()
