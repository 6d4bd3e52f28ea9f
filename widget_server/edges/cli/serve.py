"""`serve`: one process, or several workers on one port (`--workers N`), which share conversations through Redis.

Several processes, whether workers of one `serve` or `serve`s on several machines behind a load balancer, are
nodes of one deployment: they share the database and, through `WIDGET_REDIS_URL`, the conversation bus, rate
limits and webhook slots, so no request needs to land on a particular one. Before any worker starts, the parent
checks that Redis answers, brings the database schema up to date and makes the signing secret, so that workers
starting together never race to do either.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from starlette.applications import Starlette

from widget_server.logconfig import redact
from widget_server.settings import Settings

log = logging.getLogger(__name__)
REDIS_TIMEOUT_S = 2.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServeError(Exception):
    """A reason not to start, told on one line; `code` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def check_redis(url: str) -> None:
    """Fail at once, and clearly, when Redis does not answer a PING (a node without its bus cannot serve)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise ServeError(f"cannot reach Redis at {redact(url)}: {exc}", 1) from None
    finally:
        client.close()


async def _migrate(settings: Settings) -> None:
    from widget_server.backends.storage import open_storage

    storage = await open_storage(settings.resolved_database_url)  # opening brings the schema up to date
    await storage.close()


def prepare(settings: Settings, workers: int) -> None:
    """What must hold, or be done once, before any worker starts."""
    if workers < 1:
        raise ServeError("--workers must be at least 1", 2)
    if workers > 1 and not settings.redis_url:
        raise ServeError("--workers above 1 needs WIDGET_REDIS_URL: workers share conversations through Redis", 2)
    if settings.redis_url:
        check_redis(settings.redis_url)
    if workers > 1:
        asyncio.run(_migrate(settings))
        settings.signing_secret()  # made once in the data dir, read by every worker


def worker_app() -> Starlette:
    """The app of one worker (uvicorn's factory): settings from the environment, a node name of its own."""
    from widget_server.app import create_app
    from widget_server.logconfig import setup_logging

    setup_logging()
    settings = Settings()
    name = settings.node_name or "node"
    return create_app(settings.model_copy(update={"node_name": f"{name}-{os.getpid()}"}))


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> int:
    import uvicorn

    from widget_server.app import create_app
    from widget_server.logconfig import setup_logging

    setup_logging()
    try:
        prepare(settings, workers)
    except ServeError as exc:
        print(" ".join(f"widget-server: error: {exc}".split()), file=sys.stderr)
        return exc.code
    if host not in LOOPBACK and not (settings.allowed_hosts or settings.public_url):
        log.warning("listening on %s, but only loopback Host names are served: set WIDGET_PUBLIC_URL (how browsers "
                    "reach this server) or WIDGET_ALLOWED_HOSTS", host)
    # The app refuses frames over 16 KiB itself (an error frame, then 1009); the transport cuts far larger ones.
    config: dict[str, Any] = dict(host=host, port=port, ws_max_size=4 * settings.max_frame_bytes, log_config=None,
                                  timeout_graceful_shutdown=10, proxy_headers=True,
                                  forwarded_allow_ips=settings.trusted_proxies)  # a proxy named here tells the address
    if workers > 1:
        uvicorn.run("widget_server.edges.cli.serve:worker_app", factory=True, workers=workers, **config)
    else:
        uvicorn.run(create_app(settings), **config)
    return 0
