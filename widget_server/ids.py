"""Identifiers and key material.

Row ids are time-sortable (48-bit milliseconds + 80 bits, Crockford base32) and strictly increasing within a
process, which gives keyset pagination and message order for free; within one millisecond they count up, so
they are guessable from one another. Ids that also act as bearer secrets (a visitor id, a conversation id a
widget resumes with) must not be: `new_unguessable_id` keeps the time prefix but draws all 80 bits afresh, and
`new_visitor_id` is 128 random bits.
"""

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


def new_unguessable_id(prefix: str) -> str:
    """Time-sortable like `new_id` (to the millisecond), with 80 fresh random bits: knowing one id tells nothing of
    the next."""
    ms = time.time_ns() // 1_000_000
    return f"{prefix}_{_b32(ms, 10)}{_b32(int.from_bytes(os.urandom(10), 'big'), 16)}"


def new_visitor_id() -> str:
    """A visitor id: 128 random bits, since with a conversation id it is what lets a widget resume."""
    return f"vis_{secrets.token_urlsafe(16)}"


def new_key(prefix: str) -> str:
    """An API key: `sk_…` or `pk_…` with 192 bits of randomness."""
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def hash_key(key: str) -> str:
    # Keys are 192-bit random strings, so a fast unsalted hash cannot be brute-forced; it also allows lookup.
    return hashlib.sha256(key.encode()).hexdigest()
