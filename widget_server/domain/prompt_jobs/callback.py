"""A prompt job's callback: once the job ended, the job (with its `result` or `error`) POSTed to `callback_url`,
signed exactly as webhook deliveries are (`Widget-Signature`, `Widget-Event-Id`, `Widget-Delivery-Attempt`), by the
same sender, which checks the address again before each try and connects to the address it checked.

The signing secret is derived from the server key, the job's id and its salt (never stored), and shown once, in
the answer to the job's creation. Tries back off as webhooks do (`webhook_backoff_s`, doubling); each try is
counted on the job, so a delivery another node takes up (this one stopped) goes on from where it was.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from widget_server.backends.storage.prompt_jobs import PromptJobStore
from widget_server.backends.storage.rows import Row
from widget_server.clock import now
from widget_server.domain.analytics.delivery import Hook, Sender
from widget_server.domain.analytics.signing import derive_secret
from widget_server.domain.prompt_jobs.shape import public
from widget_server.settings import Settings


def secret_for(server_secret: str, job_id: str, salt: str) -> str:
    """`whsec_…`, as a webhook's secret is made (the job's id stands for the webhook's)."""
    return derive_secret(server_secret, job_id, salt)


def body(row: Row) -> bytes:
    """The envelope of a webhook delivery: `{id, type, created, data}`, the job under `data`."""
    envelope = {"id": row["id"], "type": f"prompt_job.{row['status']}",
                "created": row["finished_at"].isoformat() if row["finished_at"] else None, "data": public(row)}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Callbacks:
    """Sends the callbacks of the jobs a node has claimed (`node`), each try holding the claim for long enough."""

    def __init__(self, store: PromptJobStore, settings: Settings, server_secret: str, node: str,
                 lease_s: float) -> None:
        self.store, self.settings, self.node, self.lease_s = store, settings, node, lease_s
        self._secret = server_secret
        self.sender = Sender(timeout_s=settings.webhook_timeout_s, allow_private=settings.webhook_allow_private,
                             max_connections=8)

    async def deliver(self, job_id: str) -> None:
        """Try the callback until it is delivered or out of tries; the job records how it went."""
        store, s, node = self.store, self.settings, self.node
        row = await store.get_any(job_id)
        if row is None or row["callback_state"] != "pending" or not row["callback_url"]:
            return
        hook = Hook(job_id, row["tenant_id"], row["callback_url"],
                    secret_for(self._secret, job_id, row["callback_salt"]))
        content = body(row)
        most = s.prompt_jobs_callback_attempts
        for attempt in range(row["callback_attempts"] + 1, most + 1):
            wait = s.webhook_backoff_s * 2 ** (attempt - 1)
            hold = timedelta(seconds=self.lease_s + s.webhook_timeout_s + wait)
            if not await store.update(job_id, {"lease_until": now() + hold}, claimed_by=node):
                return  # another node has it now
            tried = await self.sender.post(hook, job_id, content, attempt)
            done = {"callback_attempts": attempt, **({"callback_state": "delivered", "claimed_by": None,
                                                      "lease_until": None} if tried.delivered else {})}
            await store.update(job_id, done, claimed_by=node)
            if tried.delivered:
                return
            if attempt < most:
                await asyncio.sleep(wait)
        await store.update(job_id, {"callback_state": "failed", "claimed_by": None, "lease_until": None},
                           claimed_by=node)

    async def aclose(self) -> None:
        await self.sender.aclose()
