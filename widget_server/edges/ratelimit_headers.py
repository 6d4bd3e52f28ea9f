"""`RateLimit-Policy` and `RateLimit` on every response of the API (draft-ietf-httpapi-ratelimit-headers-09/10).

Each limit the request was counted against (by the edge, or by the domain below it: `backends.ratelimit.checked`)
is one list member, named after the limit: `RateLimit-Policy: "api";q=6000;w=60` (the quota per window of seconds)
and `RateLimit: "api";r=5999;t=60` (what is left, and the seconds until the oldest counted request leaves the
sliding window, when one more comes back; on a 429 it agrees with `Retry-After`). A request counted against no
limit (no secret key, a public page) carries neither header.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from widget_server.backends.ratelimit import Verdict, ceil_s, checked

PREFIX = "/v1/"


def policy(verdicts: list[Verdict]) -> str:
    return ", ".join(f'"{v.rule}";q={v.quota};w={ceil_s(v.window_s)}' for v in verdicts)


def state(verdicts: list[Verdict]) -> str:
    return ", ".join(f'"{v.rule}";r={v.remaining};t={ceil_s(v.reset_s)}' for v in verdicts)


class RateLimitHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)
        verdicts: list[Verdict] = []
        token = checked.set(verdicts)

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start" and verdicts:
                message["headers"] = [*message.get("headers", []), (b"ratelimit-policy", policy(verdicts).encode()),
                                      (b"ratelimit", state(verdicts).encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            checked.reset(token)
