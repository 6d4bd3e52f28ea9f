"""What every provider takes and yields: a persona turn in, text deltas and one `Finish` out."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Turn:
    role: str  # visitor | persona | agent
    text: str


@dataclass(frozen=True)
class ProviderRequest:
    persona_name: str
    system_prompt: str
    history: tuple[Turn, ...]
    message: str
    model: str | None = None
    temperature: float = 0.7
    max_tokens: int = 256
    base_url: str | None = None  # a persona's own endpoint, instead of the server's
    api_key: str | None = None  # that endpoint's own key: the server's key never goes to a persona's URL


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Finish:
    reason: str  # stop | length
    usage: Usage
    model: str


class Provider(Protocol):
    kind: str

    def stream(self, request: ProviderRequest) -> AsyncGenerator[str | Finish, None]:
        """Yield text deltas, then exactly one `Finish`. Closing the iterator stops generation."""
        ...

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
