"""Connection errors on pooled keep-alive connections to the upstream: prints figures, asserts nothing.

    .venv/bin/python -m bench.keepalive [--bursts 40] [--size 50]

The OpenAI-compatible upstream (`tests/support/upstream.py`) runs under uvicorn with its default idle timeout
(5 s, as llama.cpp's server, vLLM and LiteLLM, all uvicorn, have). The provider (`OpenAIProvider`, retries 0, so
each failure is one a visitor would see) streams bursts of concurrent replies with idle gaps of 2.8–5.2 s between
them (seeded), once with the pool's old idle expiry (httpx's default, 5 s: the server's own timeout) and once with
`KEEPALIVE_S`. A request sent on a connection the server closes at that moment fails with a read error.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from tests.support.servers import serve_in_thread
from tests.support.upstream import Upstream
from widget_server.backends.providers import openai as provider
from widget_server.backends.providers.base import ProviderRequest

REQUEST = ProviderRequest(persona_name="p", system_prompt="s", history=(), message="hi", model="words-20")


async def _one(p: provider.OpenAIProvider, errors: list[str]) -> None:
    try:
        async for _ in p.stream(REQUEST):
            pass
    except Exception as exc:
        errors.append(repr(exc.__cause__ or exc))


async def _bursts(url: str, expiry: float, gaps: list[float], size: int) -> list[str]:
    saved, provider.KEEPALIVE_S = provider.KEEPALIVE_S, expiry
    p = provider.OpenAIProvider(base_url=url + "/v1", api_key="x", model="words-20", retries=0)
    provider.KEEPALIVE_S = saved
    errors: list[str] = []
    try:
        for gap in gaps:
            await asyncio.gather(*(_one(p, errors) for _ in range(size)))
            await asyncio.sleep(gap)
    finally:
        await p.aclose()
    return errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bursts", type=int, default=40)
    parser.add_argument("--size", type=int, default=50)
    args = parser.parse_args()
    gaps = [random.Random(i).uniform(2.8, 5.2) for i in range(args.bursts)]
    with serve_in_thread(Upstream().app()) as url:
        print(f"{args.bursts} bursts of {args.size} streamed replies, idle gaps 2.8–5.2 s, provider retries 0")
        for label, expiry in (("pool idle expiry 5 s (httpx's default)", 5.0),
                              (f"pool idle expiry {provider.KEEPALIVE_S:g} s (KEEPALIVE_S)", provider.KEEPALIVE_S)):
            started = time.monotonic()
            errors = asyncio.run(_bursts(url, expiry, gaps, args.size))
            kinds = sorted(set(errors))[:2]
            print(f"{label:<44} {len(errors):>4} connection errors of {args.bursts * args.size}"
                  f" ({time.monotonic() - started:.0f} s) {'; '.join(kinds)}")


if __name__ == "__main__":
    main()
