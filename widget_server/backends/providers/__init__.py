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
        if kind == "simulator":  # test suites' simulated visitors: the simulator's endpoint, else the local model
            if s.simulator_base_url is None:
                return self.get("local")
            return self._openai(s.simulator_base_url, s.simulator_api_key.get_secret_value(), s.simulator_model)
        if kind == "judge":  # the judged tier of test suites (its caller checks that one is configured)
            return self._openai(s.judge_base_url, s.judge_api_key.get_secret_value(), s.judge_model)
        if kind == "local":
            from widget_server.backends.providers.local import LocalProvider

            return LocalProvider(s.local_model_path, threads=s.local_threads, context=s.local_context)
        if kind == "openai":
            return self._openai(s.openai_base_url, s.openai_api_key.get_secret_value(), s.openai_model)
        raise ValueError(f"unknown provider kind {kind!r}")

    def _openai(self, base_url: str | None, api_key: str, model: str) -> Provider:
        from widget_server.backends.providers.openai import OpenAIProvider

        return OpenAIProvider(base_url=base_url, api_key=api_key, model=model,
                              timeout_s=self.settings.provider_timeout_s, retries=self.settings.provider_retries)

    async def health(self) -> dict[str, object]:
        return await self.get().health()

    async def aclose(self) -> None:
        for provider in {id(p): p for p in self._made.values()}.values():  # (the simulator may be the local one)
            await provider.aclose()
