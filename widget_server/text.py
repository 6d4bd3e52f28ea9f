"""What text every database here can hold and read back: no NUL (PostgreSQL refuses it in text and cannot read it
back from JSON) and no lone surrogate (it cannot be encoded as UTF-8 at all)."""

from __future__ import annotations

from typing import Any


def unstorable(text: str) -> str | None:
    """What makes `text` unstorable (for an error message), or None when it can be stored."""
    if "\x00" in text:
        return "a NUL character (U+0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate (U+{ord(text[exc.start]):04X})"
    return None


def storable(value: Any) -> bool:
    """Whether every string in a JSON-like value (keys included) can be stored."""
    if isinstance(value, str):
        return unstorable(value) is None
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(storable(v) for v in value)
    return True
