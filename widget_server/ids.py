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


_last = [0, 0]  # the previous id's milliseconds and random part


def new_id(prefix: str) -> str:
    """`prefix_` + 26 characters that sort by creation time, strictly increasing within this process
    (like a monotonic ULID: within one millisecond the random part counts up)."""
    ms = time.time_ns() // 1_000_000
    if ms <= _last[0]:
        ms, rand = _last[0], _last[1] + 1
    else:
        rand = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to count up
    _last[0], _last[1] = ms, rand
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


def new_key(prefix: str) -> str:
    """An API key: `sk_…` or `pk_…` with 192 bits of randomness."""
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def hash_key(key: str) -> str:
    # Keys are 192-bit random strings, so a fast unsalted hash cannot be brute-forced; it also allows lookup.
    return hashlib.sha256(key.encode()).hexdigest()
