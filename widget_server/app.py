"""The one factory that builds the app: routes, lifespan (the state endpoints read), the error handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from widget_server.backends.bus import BusUnavailable, open_bus
from widget_server.backends.providers import Providers
from widget_server.backends.providers.images import open_images
from widget_server.backends.ratelimit import Limits
from widget_server.backends.slots import open_slots
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.domain import console_users
from widget_server.domain.analytics.retention import sweep_forever
from widget_server.domain.analytics.webhooks import WebhookDispatcher
from widget_server.domain.analytics.writer import EventWriter, claim_spill
from widget_server.domain.chat import takeover
from widget_server.domain.chat.channels import Hub
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.lapsed import sweep_lapsed_forever
from widget_server.domain.events import EventSink
from widget_server.domain.guardrails.tenant_guard import TenantGuard
from widget_server.domain.idempotency import Idempotency
from widget_server.domain.prompt_jobs.worker import JobWorker
from widget_server.domain.sealed import Sealer
from widget_server.domain.tenants import SessionSigner
from widget_server.domain.testing import engine
from widget_server.domain.testing.runs import TestRuns
from widget_server.edges.console.render import ConsoleHeaders, console_errors
from widget_server.edges.hosts import TrustedHosts
from widget_server.edges.http import RequestIdMiddleware, on_error, on_http_exception, on_unexpected
from widget_server.edges.idempotency import IdempotencyKeys
from widget_server.edges.mcp_http import McpHttp
from widget_server.edges.openai_errors import openai_errors
from widget_server.edges.people_errors import people_errors
from widget_server.edges.ratelimit_headers import RateLimitHeaders
from widget_server.edges.routes import routes
from widget_server.edges.state import AppState
from widget_server.errors import WidgetError
from widget_server.ids import new_id
from widget_server.metrics import Metrics
from widget_server.settings import Settings

log = logging.getLogger(__name__)
IDEMPOTENCY_SWEEP_S = 3600.0  # expired keys are read as absent anyway: the sweep only keeps the table small
SWEEPS_STOP_S = 5.0  # the longest shutdown waits for a cancelled sweep to leave the query it was in


async def stop_sweeps(tasks: list[asyncio.Task[None]], timeout_s: float = SWEEPS_STOP_S) -> None:
    """Cancel the background sweeps and wait (bounded) until each has left storage: one cancelled in the middle of
    a query still hands its connection back, and must do so before the engine is disposed, or the loop's own
    teardown waits forever on a connection thread that is gone."""
    for task in tasks:
        task.cancel()
    _, late = await asyncio.wait(tasks, timeout=timeout_s)
    for task in tasks:
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a background sweep ended with an error", exc_info=exc)
    if late:
        log.warning("background sweeps still running at shutdown", extra={"count": len(late)})


def create_app(settings: Settings | None = None, *, events: EventSink | None = None,
               clock: Callable[[], datetime] | None = None) -> Starlette:
    """The app; `events` replaces the database event writer as the sink of analytics events, `clock` the wall
    clock that idempotency keys expire by (tests)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        bus = open_bus(settings.redis_url, settings.node_name or new_id("node"), max_frames=settings.resume_log_frames,
                       ttl_s=settings.session_ttl_s, lease_s=settings.bus_lease_s)
        try:
            await bus.start()
        except BusUnavailable as exc:  # several nodes cannot share conversations without it: do not start
            raise RuntimeError(f"the conversation bus cannot start: {exc}") from None
        storage = await open_storage(settings.resolved_database_url)
        providers = Providers(settings)
        metrics = Metrics()
        secret = settings.signing_secret()
        webhooks = WebhookDispatcher(storage, settings, metrics, secret, slots=open_slots(settings.redis_url))
        spill_path, spill_lock = claim_spill(Path(settings.data_dir))
        writer = EventWriter(
            storage.events.insert, metrics, batch=settings.events_batch, flush_s=settings.events_flush_ms / 1000,
            max_buffer=settings.events_buffer, spill_path=spill_path,
            on_written=webhooks.submit,
        )
        writer.start()
        webhooks.start()  # deliveries left pending by an earlier process resume
        sink = events or writer
        sweeper = asyncio.create_task(sweep_forever(storage, settings.retention_days, settings.retention_sweep_s))
        session_sweeper = asyncio.create_task(console_users.sweep_sessions_forever(
            storage, settings.console_idle_s, settings.console_absolute_s))
        deps = Deps(
            settings=settings, storage=storage, providers=providers, events=sink,
            guard=TenantGuard(storage, settings.policy_cache_s),
            hub=Hub(bus, settings.resume_grace_s, settings.bus_lease_s),
            limits=Limits(settings.redis_url, settings.rate_limits), sealer=Sealer(secret),
        )
        deps.guard.changed = deps.hub.changed  # a policy saved here is read again by every node
        deps.hub.on_changed(deps.guard.forget)
        lapsed_sweeper = asyncio.create_task(sweep_lapsed_forever(deps))
        wait_sweeper = asyncio.create_task(takeover.sweep_waiting_forever(deps))
        test_runs = TestRuns(deps, engine.run)
        prompt_jobs = JobWorker(deps, secret)
        prompt_jobs.start()  # jobs queued before a restart, or on other nodes, run now
        signer = SessionSigner(secret, settings.session_ttl_s)
        idempotency = Idempotency(storage, deps.sealer, settings.idempotency_ttl_s, clock or now)
        idempotency_sweeper = asyncio.create_task(idempotency.sweep_forever(IDEMPOTENCY_SWEEP_S))
        images = open_images(settings)
        mcp = McpHttp(deps)
        await mcp.start()
        log.info("widget_server ready", extra={"provider": settings.provider, "storage": storage.dialect})
        try:
            yield {"app": AppState(deps, signer, metrics, writer, webhooks, SecretStr(secret), test_runs,
                                   idempotency=idempotency, prompt_jobs=prompt_jobs, images=images), "mcp": mcp}
        finally:
            await mcp.aclose()  # first: its calls in flight store their replies while storage is open
            if images is not None:
                await images.aclose()
            await test_runs.aclose()  # each ends as error ("interrupted"), stored before storage closes
            await prompt_jobs.aclose()  # running ones queued again, for the next process or another node
            await stop_sweeps([sweeper, session_sweeper, lapsed_sweeper, wait_sweeper, idempotency_sweeper])
            if bus.shared and (running := deps.hub.running()) and settings.drain_s:
                await asyncio.wait(running, timeout=settings.drain_s)  # their visitors resume on other nodes
            tasks = deps.hub.cancel_all()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task  # each cancelled reply stores what was sent
            await providers.aclose()
            await deps.limits.aclose()
            if sink is not writer:
                await sink.aclose()
            await writer.aclose()  # every event of the replies above, written or spilled to disk
            spill_lock.close()
            await webhooks.aclose()
            await bus.aclose()  # after the replies above sent their ends
            await storage.close()

    return Starlette(
        routes=routes(),
        middleware=[Middleware(RequestIdMiddleware), Middleware(TrustedHosts, allowed=settings.hosts),
                    Middleware(ConsoleHeaders), Middleware(RateLimitHeaders), Middleware(IdempotencyKeys)],
        exception_handlers={WidgetError: console_errors(people_errors(openai_errors(on_error))),
                            HTTPException: console_errors(people_errors(openai_errors(on_http_exception))),
                            Exception: console_errors(people_errors(openai_errors(on_unexpected)))},
        lifespan=lifespan,
    )
