"""What the commands share: a storage opened for one command, the tenant argument, YAML errors on one line."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from widget_server.backends.storage import Storage, open_storage
from widget_server.errors import TenantNotFound, WidgetError
from widget_server.settings import Settings


async def with_storage(settings: Settings, fn: Callable[[Storage], Awaitable[int]]) -> int:
    storage = await open_storage(settings.resolved_database_url)
    try:
        return await fn(storage)
    finally:
        await storage.close()


def tenant_arg(settings: Settings, given: str | None) -> str:
    if given:
        return given
    demo = read_demo(settings)
    if demo is None:
        raise WidgetError("--tenant is required (there is no demo tenant)")
    return str(demo["tenant_id"])


async def require_tenant(storage: Storage, tenant_id: str) -> None:
    if await storage.get_tenant(tenant_id) is None:
        raise TenantNotFound(f"no tenant {tenant_id}")


def read_demo(settings: Settings) -> dict[str, Any] | None:
    path = Path(settings.data_dir) / "demo.json"
    return json.loads(path.read_text()) if path.exists() else None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong, and where."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())
