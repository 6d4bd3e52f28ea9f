"""Webhook tries in flight to one receiver, counted at the receiver: `PER_WEBHOOK` across nodes with shared slots
(Redis), `PER_WEBHOOK` per node without; either way every delivery arrives exactly once."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import Any

import pytest

from tests.conftest import REDIS
from tests.support.receiver import Receiver
from widget_server.backends.slots import MemorySlots, RedisSlots, Slots
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.rows import now
from widget_server.domain.analytics.webhooks import PER_WEBHOOK, WebhookDispatcher
from widget_server.domain.analytics.writer import event_row
from widget_server.domain.events import Event
from widget_server.metrics import Metrics

EVENTS = 6 * PER_WEBHOOK


class Watched:
    """A node's slots, counting the refusals: the node asked while the receiver's slots were all taken."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.refusals = 0
        self.refused = asyncio.Event()

    async def acquire(self, key: str, holder: str, *, limit: int, lease_s: float) -> bool:
        got = await self.slots.acquire(key, holder, limit=limit, lease_s=lease_s)
        if not got:
            self.refusals += 1
            self.refused.set()
        return got

    async def release(self, key: str, holder: str) -> None:
        await self.slots.release(key, holder)

    async def aclose(self) -> None:
        await self.slots.aclose()


class Outbox:
    """The storage's outbox, counting the deliveries each node claimed and gave back without a try."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.given_back: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def release(self, owner: str, ids: Collection[str] | None = None) -> int:
        if ids is not None:
            self.given_back[owner] += len(ids)
        return int(await self.store.release(owner, ids))


Held = Callable[[list[WebhookDispatcher], list[Watched], Outbox], Any]


async def deliver_through_two_nodes(settings: Any, receiver: Receiver, slots: Sequence[Slots], at_once: int,
                                    while_held: Held) -> None:
    """Two nodes on one database deliver `EVENTS` events to one held receiver: it fills up to `at_once` requests,
    `while_held` checks the nodes, then the receiver answers and every delivery must arrive once, as try 1."""
    name, url = receiver.new()
    receiver.hold(name)
    storage = await open_storage(settings.resolved_database_url)
    tenant_id, hook_id = "ten_" + secrets.token_hex(6), "wh_" + secrets.token_hex(6)
    await storage.create_tenant(tenant_id, "T")
    await storage.webhooks.create({"id": hook_id, "tenant_id": tenant_id, "url": url, "event_types": ["*"],
                                   "salt": "s", "created_at": now()}, most=20)
    events = [Event("widget.opened", tenant_id, visitor_id=f"v{i}") for i in range(EVENTS)]
    await storage.events.insert([event_row(e) for e in events])
    storage.deliveries = outbox = Outbox(storage.deliveries)
    watched = [Watched(s) for s in slots]
    nodes = [WebhookDispatcher(storage, settings, Metrics(), "server-secret", slots=w) for w in watched]
    try:
        for node in nodes:
            node.start()
        await asyncio.to_thread(receiver.wait_in_flight, name, at_once)
        async with asyncio.timeout(10):
            await while_held(nodes, watched, outbox)
        assert receiver.in_flight[name] == at_once  # no node sent more while the receiver held them
        receiver.open(name)
        await asyncio.to_thread(receiver.wait, name, lambda got: len(got) >= EVENTS)
        running = [task for node in nodes for task in node._tries]  # every try has reached the receiver
        if running:
            await asyncio.wait(running)  # and is recorded once it ends
    finally:
        receiver.open(name)
        for node in nodes:
            await node.aclose()
    got = receiver.of(name)
    assert receiver.most[name] == at_once
    assert sorted(r.headers["widget-event-id"] for r in got) == sorted(e.id for e in events)  # each once
    assert {r.headers["widget-delivery-attempt"] for r in got} == {"1"}  # a refused slot is not a try
    attempts = await storage.webhooks.list_attempts(tenant_id, hook_id, limit=EVENTS + 1)
    assert sorted((a["event_id"], a["attempt"], a["outcome"]) for a in attempts) == sorted(
        (e.id, 1, "delivered") for e in events)
    assert await storage.deliveries.pending(tenant_id) == []
    await storage.close()


def test_shared_slots_bound_a_receiver_across_nodes(
    settings_factory: Callable[..., Any], db_url: str, receiver: Receiver, redis_prefix: str
) -> None:
    """Two nodes, one Redis: at most `PER_WEBHOOK` tries in flight to the receiver in all. A node refused a slot
    waits, and stays off that webhook when woken (no claim-and-give-back loop) until one of its own tries ends or
    the poll (the default 2 s here: the check below takes milliseconds)."""
    settings = settings_factory(database_url=db_url, webhook_allow_private=True, webhook_timeout_s=30,
                                webhook_poll_s=2)

    async def while_held(nodes: list[WebhookDispatcher], watched: list[Watched], outbox: Outbox) -> None:
        await asyncio.wait([asyncio.ensure_future(w.refused.wait()) for w in watched],
                           return_when=asyncio.FIRST_COMPLETED)  # a node asked with the receiver full
        node, w = next((n, w) for n, w in zip(nodes, watched, strict=True) if w.refused.is_set())
        await node.idle.wait()  # it waits, rather than claiming again at once
        refusals, given_back = w.refusals, outbox.given_back[node.node]
        node.submit([Event("widget.opened", "ten_x")])  # new events wake it
        await node.idle.wait()
        assert (w.refusals, outbox.given_back[node.node]) == (refusals, given_back)  # it left the webhook alone

    async def run() -> None:
        slots = [RedisSlots(REDIS, prefix=redis_prefix) for _ in range(2)]  # each node its own client
        await deliver_through_two_nodes(settings, receiver, slots, PER_WEBHOOK, while_held)

    asyncio.run(run())


@pytest.mark.parametrize("shared", ["none", "unreachable"])
def test_without_shared_slots_the_bound_is_per_node(
    settings_factory: Callable[..., Any], db_url: str, receiver: Receiver, shared: str
) -> None:
    """No Redis, or Redis unreachable: each node keeps `PER_WEBHOOK`, so two nodes send twice as many, and
    deliveries go on."""
    settings = settings_factory(database_url=db_url, webhook_allow_private=True, webhook_timeout_s=30,
                                webhook_poll_s=0.1)

    async def while_held(nodes: list[WebhookDispatcher], watched: list[Watched], outbox: Outbox) -> None:
        await asyncio.gather(*(node.idle.wait() for node in nodes))
        assert [w.refusals for w in watched] == [0, 0]  # each node's own count stopped it first

    async def run() -> None:
        slots: list[Slots] = ([MemorySlots(), MemorySlots()] if shared == "none" else
                              [RedisSlots("redis://127.0.0.1:1/0") for _ in range(2)])
        await deliver_through_two_nodes(settings, receiver, slots, 2 * PER_WEBHOOK, while_held)

    asyncio.run(run())
