"""What the API asks of prompt jobs: make one (checked as `POST …/prompt` checks its body, so a job that would be
refused is refused now, with a 4xx, not stored to fail later), read, list and cancel them. Every call names the
tenant; another tenant's job is not found."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from typing import Any

from widget_server.backends.storage.rows import Row
from widget_server.clock import now
from widget_server.domain import personas
from widget_server.domain.analytics.destinations import UnsafeURL, parse_url, resolve
from widget_server.domain.chat import conversations
from widget_server.domain.prompt_jobs import callback
from widget_server.domain.prompt_jobs.worker import CANCEL_KIND, ENDED, JobWorker
from widget_server.errors import Conflict, InvalidRequest, NotFound, WebhookInvalid
from widget_server.ids import new_id

CURSOR = "^job_[0-9a-z]{1,36}$"  # a job's id, as `next_cursor` gives it
CANCEL_WAIT_S = 10.0  # how long a cancel waits for a reply this node runs to be stored as cancelled


class JobNotFound(NotFound):
    code = "prompt_job.not_found"


class JobEnded(Conflict):
    code = "prompt_job.ended"


async def callback_url(value: Any, *, allow_private: bool) -> str:
    """A URL as a webhook's is checked: http(s), no fragment (a 400 otherwise), its host public (a 422)."""
    field = "callback_url"
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{field} must be an http(s) URL",
                             details={"errors": [{"field": field, "message": "an http(s) URL"}]})
    try:
        url = parse_url(value)
    except UnsafeURL as exc:
        raise InvalidRequest(f"{field} {exc}", details={"errors": [{"field": field, "message": str(exc)}]}) from None
    try:
        await resolve(url, allow_private=allow_private)
    except UnsafeURL as exc:
        raise WebhookInvalid(f"{field} {exc}", details={"errors": [{"field": field, "message": str(exc)}]}) from None
    return value


async def submit(worker: JobWorker, tenant_id: str, persona_ref: str, body: dict[str, Any],
                 request_id: str) -> tuple[Row, str | None]:
    """Store a queued job and wake the worker; the job, and its callback's signing secret (shown only now)."""
    d = worker.deps
    persona = await personas.get(d.storage, tenant_id, persona_ref)
    message = conversations.check_message(body["message"], d.settings.max_message_chars)
    visitor = conversations.visitor_id(body["visitor_id"]) if body.get("visitor_id") is not None else None
    conversation_id = None
    if body.get("conversation_id") is not None:  # the conversation must be this persona's (and this visitor's)
        conversation_id = (await conversations.open_api(d, tenant_id, persona["id"], message,
                                                        body["conversation_id"], visitor)).id
    url = await callback_url(body["callback_url"], allow_private=d.settings.webhook_allow_private) \
        if body.get("callback_url") is not None else None
    row: Row = {
        "id": new_id("job"), "tenant_id": tenant_id, "persona_id": persona["id"], "conversation_id": conversation_id,
        "request": {"message": message, "visitor_id": visitor}, "request_id": request_id[:40], "status": "queued",
        "attempts": 0, "claimed_by": None, "lease_until": None, "cancel_requested": False, "result": None,
        "error": None, "callback_url": url, "callback_salt": secrets.token_urlsafe(24) if url else None,
        "callback_state": None, "callback_attempts": 0, "created_at": now(), "started_at": None, "finished_at": None,
    }
    await d.storage.prompt_jobs.add(row)
    worker.wake()
    secret = callback.secret_for(worker.secret, row["id"], row["callback_salt"]) if url else None
    return row, secret


async def get(worker: JobWorker, tenant_id: str, job_id: str) -> Row:
    row = await worker.store.get(tenant_id, job_id[:80])
    if row is None:
        raise JobNotFound(f"no prompt job {job_id[:40]!r}")
    return row


async def page(worker: JobWorker, tenant_id: str, limit: int, cursor: str | None) -> tuple[list[Row], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (None: this is the last)."""
    if cursor is not None and not re.fullmatch(CURSOR, cursor):
        raise InvalidRequest("cursor is not one this API returned", code="query.invalid", details={"param": "cursor"})
    rows = await worker.store.newest(tenant_id, limit=limit + 1, before=cursor)
    return rows[:limit], rows[limit - 1]["id"] if len(rows) > limit else None


async def cancel(worker: JobWorker, tenant_id: str, job_id: str) -> Row:
    """Cancel a job: a queued one at once; a running one's reply is stopped (on whichever node runs it) and the job
    ends `cancelled`. A job that has ended is a 409."""
    row = await get(worker, tenant_id, job_id)
    store = worker.store
    if row["status"] == "queued":
        values = {"status": "cancelled", "finished_at": now(),
                  "callback_state": "pending" if row["callback_url"] else None}
        if await store.update(row["id"], values, tenant_id=tenant_id, status=("queued",)):
            worker.wake()  # its callback
            return await get(worker, tenant_id, job_id)
        row = await get(worker, tenant_id, job_id)  # claimed meanwhile
    if row["status"] in ENDED:
        raise JobEnded(f"the job has ended ({row['status']})", details={"status": row["status"]})
    await store.update(row["id"], {"cancel_requested": True}, tenant_id=tenant_id, status=("running",))
    if (task := worker.cancel_here(row["id"])) is None:
        # Another node runs it: told over the bus at once (with Redis), else it reads the flag at its renewal.
        worker.deps.hub.changed(CANCEL_KIND, [row["id"]])
    else:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), CANCEL_WAIT_S)
    return await get(worker, tenant_id, job_id)
