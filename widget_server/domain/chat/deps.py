"""What the chat domain needs from the floors below, built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from widget_server.backends.providers import Providers
from widget_server.backends.ratelimit import Limits
from widget_server.backends.storage import Storage
from widget_server.domain.chat.channels import Hub
from widget_server.domain.events import EventSink
from widget_server.domain.guardrails.tenant_guard import TenantGuard
from widget_server.domain.keys import KeyTenants
from widget_server.domain.sealed import Sealer
from widget_server.settings import Settings


@dataclass
class Deps:
    settings: Settings
    storage: Storage
    providers: Providers
    guard: TenantGuard
    events: EventSink
    hub: Hub
    limits: Limits
    sealer: Sealer  # tenants' own secrets (a persona's upstream key), sealed at rest
    seen_keys: KeyTenants = field(default_factory=KeyTenants)  # which tenant to check a secret key against
