"""The authentication exchange (PROTOCOL.md §7.1) from Python against a Rust
server that requires a shared secret: the right key is served, a wrong key
and missing credentials are refused with the documented reasons, and the
proofs match the protocol's test vectors."""

from __future__ import annotations

import sys

import pytest

import remote_rpc
from remote_rpc import auth
from conftest import RustServer, binary, run

SECRET = b"a shared secret for the python tests"


@pytest.fixture
def guarded_server():
    server = RustServer([str(binary("probe-server")), "tcp://127.0.0.1:0"],
                        env={"PROBE_SHARED_SECRET": SECRET.decode()})
    try:
        yield server
    finally:
        server.stop()


def test_proofs_match_the_documented_test_vectors():
    cn, sn = b"\1" * 32, b"\2" * 32
    assert auth.proof(b"key", "client", "alice", cn, sn).hex() == \
        "659cc25e59fb93a608e41089384c95dd4dd6c117b101fa7bfeacfd7cb466750b"
    assert auth.proof(b"key", "client", "alice", cn, sn, b"\3" * 32).hex() == \
        "71596cf37fa553448f9f7b720379a64cd29d0b6d6ef9c38837c9fc805e031216"
    # Bound to the role: a server proof is not a client proof.
    p = auth.proof(b"key", "client", "alice", cn, sn)
    assert not auth.verify(b"key", "server", "alice", cn, sn, p)
    assert auth.verify(b"key", "client", "alice", cn, sn, p)


def test_the_right_key_is_served(guarded_server, stubs):
    async def main():
        conn = await remote_rpc.connect(guarded_server.addr, credentials=("py", SECRET))
        probe = stubs.ProbeClient(conn.root())
        assert await probe.check(7) == 7
        await conn.aclose()

    run(main())


def test_a_wrong_key_is_refused(guarded_server):
    async def main():
        with pytest.raises(remote_rpc.ConnectionLost) as e:
            await remote_rpc.connect(guarded_server.addr, credentials=("py", b"not the secret"))
        # The server proves first: this side finds it cannot, and refuses
        # without proving anything.
        assert "did not prove it knows the key" in str(e.value)

    run(main())


def test_a_client_without_credentials_is_refused(guarded_server):
    async def main():
        with pytest.raises(remote_rpc.ConnectionLost) as e:
            await remote_rpc.connect(guarded_server.addr)
        assert "requires credentials" in str(e.value)

    run(main())


def test_credentials_for_a_server_that_does_not_ask_are_refused(probe_server):
    async def main():
        with pytest.raises(remote_rpc.ConnectionLost) as e:
            await remote_rpc.connect(probe_server.addr, credentials=("py", SECRET))
        assert "did not send a challenge" in str(e.value)

    run(main())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
