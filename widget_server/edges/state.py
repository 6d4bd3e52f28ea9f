"""The app's state as endpoints see it: one typed object, made by the lifespan, read with `app_state(conn)`."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from widget_server.backends.providers.images import ImagesClient
from widget_server.domain.analytics.webhooks import WebhookDispatcher
from widget_server.domain.analytics.writer import EventWriter
from widget_server.domain.chat.deps import Deps
from widget_server.domain.idempotency import Idempotency
from widget_server.domain.prompt_jobs.worker import JobWorker
from widget_server.domain.tenants import SessionSigner
from widget_server.domain.testing.runs import TestRuns
from widget_server.metrics import Metrics
from widget_server.settings import Settings


@dataclass(frozen=True)
class AppState:
    deps: Deps  # what the chat domain needs: settings, storage, providers, guard, events, hub, limits
    signer: SessionSigner
    metrics: Metrics
    writer: EventWriter
    webhooks: WebhookDispatcher
    secret: SecretStr  # the server's signing secret, from which webhook and identity secrets are derived
    test_runs: TestRuns  # the test suites this node runs in the background (POST /v1/test-runs)
    idempotency: Idempotency  # the Idempotency-Key of the API's POSTs, stored for every node
    prompt_jobs: JobWorker  # this node's share of the async prompt jobs (POST /v1/personas/{id}/prompt/jobs)
    images: ImagesClient | None = None  # the opt-in images endpoint of generate-image (WIDGET_IMAGES_BASE_URL)

    @property
    def settings(self) -> Settings:
        return self.deps.settings


def app_state(conn: HTTPConnection) -> AppState:
    """The state of the app serving this request or socket (the lifespan puts it in every request's state)."""
    state: AppState = conn.state.app
    return state
