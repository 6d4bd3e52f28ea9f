"""The opt-in images endpoint of generate-image (`"source": "openai"`): any OpenAI-compatible
`POST /images/generations`, named by `WIDGET_IMAGES_BASE_URL`. Off unless that is set. What comes back is served
to browsers on other sites, so only a PNG (by its signature) of at most `MAX_BYTES` is accepted; anything else is a
provider error, never stored."""

from __future__ import annotations

import base64
import binascii
import logging

import openai

from widget_server.errors import ProviderError
from widget_server.settings import Settings

log = logging.getLogger(__name__)
PNG = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 2 * 1024 * 1024
SIZE = "256x256"


class ImagesClient:
    def __init__(self, *, base_url: str, api_key: str, model: str, timeout_s: float) -> None:
        self.model = model
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    async def paint(self, prompt: str) -> bytes:
        """One PNG for `prompt`, or `ProviderError`."""
        try:
            answer = await self._client.images.generate(model=self.model, prompt=prompt, n=1, size=SIZE,
                                                        response_format="b64_json")
        except openai.OpenAIError as exc:
            log.warning("images endpoint failed", extra={"error": type(exc).__name__})
            raise ProviderError("the images endpoint failed", code="avatar.upstream_failed") from exc
        encoded = answer.data[0].b64_json if answer.data else None
        try:
            data = base64.b64decode(encoded or "", validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if not data.startswith(PNG) or len(data) > MAX_BYTES:
            raise ProviderError("the images endpoint did not answer with a PNG", code="avatar.upstream_failed")
        return data

    async def aclose(self) -> None:
        await self._client.close()


def open_images(settings: Settings) -> ImagesClient | None:
    """The images endpoint the settings name, or None (the default: avatars are drawn here, offline)."""
    if not settings.images_base_url:
        return None
    return ImagesClient(base_url=settings.images_base_url, api_key=settings.images_api_key.get_secret_value(),
                        model=settings.images_model, timeout_s=settings.images_timeout_s)
