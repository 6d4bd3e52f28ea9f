"""The node's prompt-job worker: claims due jobs from storage and runs each as a REST prompt would.

- Claims are conditional UPDATEs (`PromptJobStore.update`): a job is taken only while it is still queued (or its
  lease still lapsed, with the attempts seen), so on several nodes each job runs once.
- At most `prompt_jobs_concurrency` jobs run at once on a node. A job queued here wakes the worker at once; jobs
  queued on other nodes, or left by a restart, are found by the poll (`prompt_jobs_poll_s`).
- A running job's lease is renewed every third of `prompt_jobs_lease_s`; each renewal also reads whether a cancel
  was asked for on another node (with Redis, that node also tells every node at once over the bus). A job whose
  node died (a `kill -9`) is claimed again once its lease lapsed: it runs `MAX_ATTEMPTS` times in all, then fails
  with `job.interrupted`.
- A node that stops cuts its running replies short (stored as `interrupted`, as the hub does) and gives their jobs
  back, queued, the attempt not counted: the next process or another node runs them.
- A job with a `callback_url` is delivered once it ended (callback.py); a delivery cut short is taken up again by
  whichever node looks next, since the ended job keeps `callback_state: pending` until it is delivered or given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from widget_server.backends.storage.rows import Row
from widget_server.clock import now
from widget_server.domain.chat import conversations, prompt_answer
from widget_server.domain.chat.channels import INTERRUPTED
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.turn import Reply, run_turn
from widget_server.domain.prompt_jobs import callback
from widget_server.errors import WidgetError
from widget_server.ids import new_id

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 2  # the first run and one retry
SENDS_AT_ONCE = 8  # callbacks a node sends at once, besides its running jobs (a node that runs none still sends)
ENDED = frozenset({"succeeded", "failed", "cancelled"})
CANCEL_KIND = "prompt_job.cancel"  # what the bus tells every node when a job running elsewhere is to stop


class Interrupted(WidgetError):
    code = "job.interrupted"


class JobWorker:
    """Runs this node's share of the prompt jobs (started and closed by the app's lifespan)."""

    def __init__(self, deps: Deps, server_secret: str) -> None:
        s = deps.settings
        self.deps = deps
        self.store = deps.storage.prompt_jobs
        self.node = new_id("node")
        self.concurrency, self.poll_s, self.lease_s = s.prompt_jobs_concurrency, s.prompt_jobs_poll_s, \
            s.prompt_jobs_lease_s
        self.secret = server_secret
        self.callbacks = callback.Callbacks(self.store, s, server_secret, self.node, self.lease_s)
        self.tasks: dict[str, asyncio.Task[None]] = {}  # job id → its run or its callback's delivery
        self.turns: dict[str, asyncio.Task[Reply]] = {}  # job id → its reply, while it streams
        self.cancels: set[str] = set()  # jobs asked to stop here before their reply began
        self.delivering: set[str] = set()  # jobs whose callback this node is sending
        self.sending: set[str] = set()  # jobs whose task here is only their callback's delivery
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self.closing = False
        deps.hub.on_changed(self._told)

    def _told(self, kind: str, key: list[str]) -> None:
        if kind == CANCEL_KIND and len(key) == 1:  # a cancel made on another node (a no-op unless this one runs it)
            self.cancel_here(key[0])

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._work())

    def wake(self) -> None:
        """A job was queued (or ended with a callback to send) on this node: look now."""
        self._wake.set()

    def lease(self) -> datetime:
        return now() + timedelta(seconds=self.lease_s)

    async def _work(self) -> None:
        while not self.closing:
            self._wake.clear()
            try:
                await self._claim()
            except Exception as exc:  # the database is down: try again at the next poll
                log.warning("prompt jobs not claimed; retrying", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()

    async def _claim(self) -> None:
        runs, sends = self.concurrency - len(self.runs), SENDS_AT_ONCE - len(self.sends)
        if runs <= 0 and sends <= 0:
            return
        at = now()
        for seen in await self.store.due(at, (max(runs, 0) + max(sends, 0)) * 4):
            if self.closing:
                return
            ended = seen["status"] in ENDED
            if (len(self.sends) >= SENDS_AT_ONCE if ended else len(self.runs) >= self.concurrency):
                continue
            if seen["id"] not in self.tasks and (kind := await self._take(seen, at)) is not None:
                self._spawn(seen["id"], kind)

    @property
    def runs(self) -> dict[str, asyncio.Task[None]]:
        return {k: t for k, t in self.tasks.items() if k not in self.sending}

    @property
    def sends(self) -> dict[str, asyncio.Task[None]]:
        return {k: t for k, t in self.tasks.items() if k in self.sending}

    async def _take(self, seen: Row, at: Any) -> str | None:
        """Claim a candidate: "run" (queued, or running on a node whose lease lapsed), "callback" (ended, its
        callback not delivered), or None (another node was first, or the job is out of attempts)."""
        job_id, claim = seen["id"], {"claimed_by": self.node, "lease_until": self.lease()}
        if seen["status"] in ENDED:
            return "callback" if await self.store.update(job_id, claim, status=ENDED, lapsed_at=at) else None
        run = {**claim, "status": "running", "attempts": seen["attempts"] + 1, "started_at": at}
        if seen["status"] == "queued":
            return "run" if await self.store.update(job_id, run, status=("queued",), attempts=seen["attempts"]) \
                else None
        if seen["attempts"] < MAX_ATTEMPTS:
            log.info("prompt job retried: its node stopped", extra={"job_id": job_id})
            taken = await self.store.update(job_id, run, status=("running",), lapsed_at=at, attempts=seen["attempts"])
            return "run" if taken else None
        error = Interrupted(f"the node running it stopped, {seen['attempts']} times").body(seen["request_id"])
        failed = {**claim, "status": "failed", "error": error, "finished_at": at,
                  "callback_state": "pending" if seen["callback_url"] else None}
        if not await self.store.update(job_id, failed, status=("running",), lapsed_at=at, attempts=seen["attempts"]):
            return None
        return "callback" if seen["callback_url"] else None

    def _spawn(self, job_id: str, kind: str) -> None:
        if kind == "callback":
            self.sending.add(job_id)
        task = asyncio.get_running_loop().create_task(self._run(job_id) if kind == "run" else self._deliver(job_id))
        self.tasks[job_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self.tasks.pop(job_id, None)
            self.sending.discard(job_id)
            self.wake()  # a slot is free
        task.add_done_callback(done)

    async def _run(self, job_id: str) -> None:
        row = await self.store.get_any(job_id)
        if row is None:
            return
        renew = asyncio.ensure_future(self._renew(job_id))
        try:
            values = await self._outcome(row)
        finally:
            renew.cancel()
            self.turns.pop(job_id, None)
            self.cancels.discard(job_id)
        if values is None:  # this node stops: the job goes back to the queue, this attempt not counted
            await self.store.update(job_id, {"status": "queued", "claimed_by": None, "lease_until": None,
                                             "attempts": row["attempts"] - 1}, status=("running",),
                                    claimed_by=self.node)
            return
        with_callback = bool(row["callback_url"])
        ended = await self.store.update(job_id, {
            **values, "finished_at": now(), "callback_state": "pending" if with_callback else None,
            "lease_until": self.lease() if with_callback and not self.closing else None,  # (stopping: the next sends)
        }, status=("running",), claimed_by=self.node)
        if ended and with_callback and not self.closing:
            await self._deliver(job_id)

    async def _outcome(self, row: Row) -> dict[str, Any] | None:
        """The job's reply, as the columns of its end (None: cut short because this node stops)."""
        try:
            conv_id, reply = await self._reply(row)
        except WidgetError as exc:  # the persona was deleted, the conversation closed or taken over meanwhile
            return {"status": "failed", "error": exc.body(row["request_id"])}
        except Exception as exc:
            log.warning("prompt job failed", exc_info=True, extra={"job_id": row["id"]})
            return {"status": "failed", "error": WidgetError(f"the job failed: {type(exc).__name__}")
                    .body(row["request_id"])}
        if reply is None:
            return None if self.closing else {"status": "cancelled"}
        if reply.finish_reason == INTERRUPTED:
            if self.closing:
                return None
            return {"status": "failed", "error": Interrupted("the reply was interrupted").body(row["request_id"])}
        if (error := prompt_answer.failure(conv_id, reply)) is not None:
            return {"status": "failed", "error": error.body(row["request_id"])}
        status = "cancelled" if reply.finish_reason == "cancelled" else "succeeded"
        return {"status": status, "result": prompt_answer.answer(conv_id, reply)}

    async def _reply(self, row: Row) -> tuple[str, Reply | None]:
        d, request = self.deps, row["request"]
        conv = await conversations.open_api(d, row["tenant_id"], row["persona_id"], request["message"],
                                            row["conversation_id"], request.get("visitor_id"))
        if row["conversation_id"] is None:  # a retry goes on in the same conversation
            await self.store.update(row["id"], {"conversation_id": conv.id}, claimed_by=self.node)
        turn = asyncio.ensure_future(run_turn(d, conv, request["message"], None, lambda frame: None))
        self.turns[row["id"]] = turn
        if row["id"] in self.cancels or self.closing:
            turn.cancel(INTERRUPTED if self.closing else None)
        try:
            return conv.id, await turn
        except asyncio.CancelledError:
            if not turn.cancelled() or ((task := asyncio.current_task()) is not None and task.cancelling()):
                raise
            return conv.id, None  # stopped before its reply began: nothing was said

    def cancel_here(self, job_id: str, why: str | None = None) -> asyncio.Task[None] | None:
        """Stop the job's reply if this node runs it (stored as `cancelled`, as the hub cancels a reply, or as
        `interrupted` when `why` says so); the task that ends the job, to wait for."""
        if job_id not in self.tasks:
            return None
        self.cancels.add(job_id)
        if (turn := self.turns.get(job_id)) is not None:
            turn.cancel(why)
        return self.tasks[job_id]

    async def _renew(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await self.store.update(job_id, {"lease_until": self.lease()}, status=("running",),
                                               claimed_by=self.node)
                row = await self.store.get_any(job_id) if held else None
            except Exception as exc:
                log.warning("prompt job lease not renewed", extra={"job_id": job_id, "error": type(exc).__name__})
                continue
            if row is None:  # lost to another node (this one stalled past the lease): it runs the job now
                self.cancel_here(job_id, INTERRUPTED)
                return
            if row["cancel_requested"]:  # asked for on another node
                self.cancel_here(job_id)
                return

    async def _deliver(self, job_id: str) -> None:
        self.delivering.add(job_id)
        try:
            await self.callbacks.deliver(job_id)
        except asyncio.CancelledError:  # given back for the next node to send
            await asyncio.shield(self.store.update(job_id, {"claimed_by": None, "lease_until": None},
                                                   claimed_by=self.node))
            raise
        finally:
            self.delivering.discard(job_id)

    async def aclose(self) -> None:
        """Stop: replies cut short, their jobs queued again; callbacks in flight given back."""
        self.closing = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for turn in list(self.turns.values()):
            turn.cancel(INTERRUPTED)
        for job_id, task in list(self.tasks.items()):
            if job_id in self.delivering:
                task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.callbacks.aclose()
