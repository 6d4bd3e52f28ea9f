"""What text every database here can hold and read back: no NUL (PostgreSQL refuses it in text and cannot read it
back from JSON) and no lone surrogate (it cannot be encoded as UTF-8 at all)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator


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


class StorableText(BaseModel):
    """A model whose every text field (and list of texts) must be storable: a 422 naming the field otherwise."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if isinstance(value, str) and (problem := unstorable(value)):
            raise ValueError(f"contains {problem}")
        if isinstance(value, list) and any(isinstance(v, str) and unstorable(v) for v in value):
            raise ValueError("an item contains a NUL character or a lone surrogate")
        return value
