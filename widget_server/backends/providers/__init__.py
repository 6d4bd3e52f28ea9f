"""Providers by kind: `local` (llama.cpp, the bundled model) and `openai` (any compatible endpoint)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from widget_server.backends.providers.base import Finish, Provider, ProviderRequest, Turn, Usage

if TYPE_CHECKING:
    from widget_server.settings import Settings

__all__ = ["Finish", "Provider", "ProviderRequest", "Providers", "Turn", "Usage"]


class Providers:
    """The server's providers, built lazily by kind (imports too: llama.cpp loads only when used)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Provider] = {}

    @property
    def default_kind(self) -> str:
        return self.settings.provider

    def get(self, kind: str | None = None) -> Provider:
        kind = kind or self.default_kind
        if kind not in self._made:
            self._made[kind] = self._build(kind)
        return self._made[kind]

    def _build(self, kind: str) -> Provider:
        s = self.settings
        if kind == "local":
            from widget_server.backends.providers.local import LocalProvider

            return LocalProvider(s.local_model_path, threads=s.local_threads, context=s.local_context)
        if kind == "openai":
            from widget_server.backends.providers.openai import OpenAIProvider

            return OpenAIProvider(
                base_url=s.openai_base_url, api_key=s.openai_api_key.get_secret_value(), model=s.openai_model,
                timeout_s=s.provider_timeout_s, retries=s.provider_retries,
            )
        raise ValueError(f"unknown provider kind {kind!r}")

    async def health(self) -> dict[str, object]:
        return await self.get().health()

    async def aclose(self) -> None:
        for provider in self._made.values():
            await provider.aclose()
