"""Which model a turn calls, and where: the persona's provider settings within what the operator allows.

A persona may name a model (only one of `WIDGET_ALLOWED_MODELS`, when the operator lists them: any tenant could
otherwise pick the most expensive one) and, where `WIDGET_ALLOW_PERSONA_BASE_URL` lets it, its own endpoint. That
endpoint gets the persona's own key, never the operator's, and the webhook rules: http(s) only, and a host that is
and resolves only to public addresses (unless `WIDGET_ALLOW_PRIVATE_UPSTREAMS`), checked at every call.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from widget_server.backends.providers import Provider, ProviderRequest, Turn
from widget_server.domain.analytics.destinations import UnsafeURL, parse_url, resolve
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.deps import Deps
from widget_server.errors import UpstreamRefused
from widget_server.settings import Settings


def model_allowed(settings: Settings, model: str | None) -> bool:
    patterns = [p.strip() for p in (settings.allowed_models or "").split(",") if p.strip()]
    return not patterns or model is None or any(fnmatch.fnmatchcase(model, p) for p in patterns)


def provider_request(deps: Deps, conv: Conversation, text: str, turns: tuple[Turn, ...]) -> tuple[Provider,
                                                                                                ProviderRequest]:
    s = deps.settings
    doc = conv.persona["doc"]
    conf: dict[str, Any] = doc.get("provider") or {}
    base_url = conf.get("base_url") if s.allow_persona_base_url else None
    request = ProviderRequest(
        persona_name=doc["name"], system_prompt=system_prompt(doc.get("system_prompt", ""), conv.instructions),
        history=turns, message=text,
        model=conf.get("model"), temperature=conf.get("temperature", 0.7),
        max_tokens=min(conf.get("max_tokens") or s.max_tokens, s.max_tokens), base_url=base_url,
        api_key=deps.sealer.open(conf["api_key"]) if base_url and conf.get("api_key") else None,
    )
    return deps.providers.get(conf.get("kind")), request


def system_prompt(persona_prompt: str, instructions: tuple[str, ...]) -> str:
    """The persona's system prompt, always first; a caller's own system messages follow it."""
    return "\n\n".join(p for p in (persona_prompt, *instructions) if p)


async def check(settings: Settings, request: ProviderRequest) -> None:
    """Refuse a model the operator does not allow, and a persona endpoint that is not a public http(s) URL."""
    if not model_allowed(settings, request.model):
        raise UpstreamRefused(f"the model {request.model!r} is not one this server allows (WIDGET_ALLOWED_MODELS)")
    if request.base_url is not None:
        try:
            await resolve(parse_url(request.base_url), allow_private=settings.allow_private_upstreams)
        except UnsafeURL as exc:
            raise UpstreamRefused(f"the persona's base_url {exc}") from None
