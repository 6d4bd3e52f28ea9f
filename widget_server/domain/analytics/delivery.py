"""One webhook try: the signed POST of an event's JSON, its address checked first, within the timeout in all."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from widget_server import __version__
from widget_server.domain.analytics.destinations import UnsafeURL, resolve
from widget_server.domain.analytics.query import event_json
from widget_server.domain.analytics.signing import sign

log = logging.getLogger(__name__)
USER_AGENT = f"widget_server/{__version__}"


@dataclass(frozen=True)
class Hook:
    id: str
    tenant_id: str
    url: str
    secret: str


@dataclass(frozen=True)
class Try:
    """What one try came to: the status code (None when no response), the error if any, and how long it took."""

    status: int | None
    error: str | None
    ms: int

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def delivery_body(event: Mapping[str, Any]) -> bytes:
    """The JSON a receiver gets: the stored event exactly as `GET /v1/analytics/events` shows it, under `data`."""
    data = event_json(event)
    envelope = {"id": data["id"], "type": data["type"], "created": data["ts"], "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Sender:
    """Makes tries over one pooled HTTP client; never follows a redirect, never reads a response body."""

    def __init__(self, *, timeout_s: float, allow_private: bool, max_connections: int) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self._max = max_connections
        self._client: httpx.AsyncClient | None = None

    async def post(self, hook: Hook, event_id: str, body: bytes, attempt: int) -> Try:
        """One try, within `timeout_s` in all (DNS included); whatever a receiver provokes is its error, not ours."""
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                status = await self._send(hook, event_id, body, attempt)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TimeoutError:
            error = f"timed out after {self.timeout_s:g} s"
        except UnsafeURL as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            log.warning("webhook attempt raised", exc_info=True, extra={"webhook_id": hook.id})
            error = f"{type(exc).__name__}: {exc}"
        return Try(status, error, round((time.monotonic() - started) * 1000))

    async def _send(self, hook: Hook, event_id: str, body: bytes, attempt: int) -> int:
        url = httpx.URL(hook.url)
        address = await resolve(url, allow_private=self.allow_private)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Widget-Event-Id": event_id,
                   "Widget-Delivery-Attempt": str(attempt), "Widget-Signature": sign(hook.secret, body)}
        extensions: dict[str, Any] = {}
        if address is not None:  # connect to the address that was checked, not to whatever DNS says next
            headers["Host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.raw_host.decode("ascii")  # the certificate is checked against it
            url = url.copy_with(host=address)
        async with self._http().stream("POST", url, content=body, headers=headers, extensions=extensions) as resp:
            return resp.status_code

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=self._max, max_keepalive_connections=self._max)
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, trust_env=False,
                                             limits=limits)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
