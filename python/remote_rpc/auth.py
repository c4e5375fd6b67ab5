"""The authentication exchange of PROTOCOL.md §7.1, client side: a mutual
HMAC-SHA256 challenge-response. The key never crosses the wire; the server
proves first, so this side never proves itself to a peer that does not know
the key. Proofs bind both nonces, the user name and the role, and a channel
binding (empty here: this runtime speaks TCP and Unix sockets, not TLS)."""

from __future__ import annotations

import hashlib
import hmac
import os
import typing

NONCE_LEN = 32
PROOF_LEN = 32
MAX_USER_LEN = 255
PROOF_KIND = 9
CHALLENGE_TAG = 1
CREDENTIALS_TAG = 2
DOMAIN = b"remote auth v1"
#: The payload of a proof frame before the proof: fixarray(2), 9, bin8(32).
PROOF_HEAD = bytes([0x92, PROOF_KIND, 0xC4, PROOF_LEN])

#: What the Rust runtime says (and what this side says) on each refusal.
IMPOSTOR = ("authentication failed: the peer did not prove it knows the key "
            "(wrong key, unknown user, or an impostor)")
NO_CHALLENGE = ("authentication failed: the peer did not send a challenge, so it cannot "
                "prove it knows the key")
NO_CREDENTIALS = "authentication failed: the peer requires credentials and this side has none"
NO_PROOF = "authentication failed: expected the peer's proof (kind 9) after its hello"


def nonce() -> bytes:
    """32 bytes from the operating system's secure generator."""
    return os.urandom(NONCE_LEN)


def credentials_slot(client_nonce: bytes, user: str) -> bytes:
    """The hello's ``auth`` slot offering credentials for ``user``."""
    name = user.encode("utf-8")
    if len(name) > MAX_USER_LEN:
        raise ValueError(f"user name of {len(name)} bytes; at most {MAX_USER_LEN}")
    return bytes([CREDENTIALS_TAG]) + client_nonce + name


def challenge_nonce(slot: typing.Any) -> typing.Optional[bytes]:
    """The server nonce of a challenge slot, ``None`` for anything else."""
    if isinstance(slot, (bytes, bytearray)) and len(slot) == 1 + NONCE_LEN and slot[0] == CHALLENGE_TAG:
        return bytes(slot[1:])
    return None


def proof(key: bytes, role: str, user: str, client_nonce: bytes, server_nonce: bytes,
          binding: bytes = b"") -> bytes:
    """``HMAC-SHA256(key, "remote auth v1" 0 role 0 len(user) user
    client_nonce server_nonce len16(binding) binding)``."""
    name = user.encode("utf-8")
    msg = (DOMAIN + b"\0" + role.encode("ascii") + b"\0" + bytes([len(name)]) + name
           + client_nonce + server_nonce + len(binding).to_bytes(2, "big") + binding)
    return hmac.new(key, msg, hashlib.sha256).digest()


def parse_proof(payload: bytes) -> typing.Optional[bytes]:
    """The proof in a proof frame's payload, ``None`` if it is anything else."""
    if len(payload) == len(PROOF_HEAD) + PROOF_LEN and payload.startswith(PROOF_HEAD):
        return bytes(payload[len(PROOF_HEAD):])
    return None


def verify(key: bytes, role: str, user: str, client_nonce: bytes, server_nonce: bytes,
           got: bytes, binding: bytes = b"") -> bool:
    """Whether ``got`` is ``role``'s proof, compared in constant time."""
    return hmac.compare_digest(proof(key, role, user, client_nonce, server_nonce, binding), got)
