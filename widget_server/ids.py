"""Time-sortable identifiers (48-bit milliseconds + 80 random bits, Crockford base32) and key material."""

from __future__ import annotations

import hashlib
import os
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """`prefix_` + 26 characters that sort by creation time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


def new_key(prefix: str) -> str:
    """An API key: `sk_…` or `pk_…` with 192 bits of randomness."""
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def hash_key(key: str) -> str:
    # Keys are 192-bit random strings, so a fast unsalted hash cannot be brute-forced; it also allows lookup.
    return hashlib.sha256(key.encode()).hexdigest()
