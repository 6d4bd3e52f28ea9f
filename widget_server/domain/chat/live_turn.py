"""A turn of a live conversation (the widget's socket): run in the background of the conversation's channel, in
order, holding the conversation's reply lease on the bus so that only one node answers at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from widget_server.backends.bus import BusUnavailable
from widget_server.domain.chat.channels import Channel
from widget_server.domain.chat.conversations import Conversation, check_message, from_row
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.lapsed import end_lapsed
from widget_server.domain.chat.memory import Memory
from widget_server.domain.chat.turn import run_turn
from widget_server.errors import WidgetError
from widget_server.ids import new_id

log = logging.getLogger(__name__)


def spawn_turn(deps: Deps, conv: Conversation, channel: Channel, text: Any, client_id: Any) -> asyncio.Task[None]:
    """Run a turn in the background of a conversation's channel: it outlives a dropped socket (resume),
    replies run one after another (across nodes: the bus's lease), and `cancel` finds it by the reply's message id
    once it started. A `client_id` seen before in this conversation is a resend: it was accepted already, and is
    ignored. The message is checked first (`InvalidRequest`, at once): a refused message was not accepted, so its
    client id stays free for the corrected message, which would otherwise be dropped as a resend."""
    check_message(text, deps.settings.max_message_chars)
    key = new_id("turn")

    def started(reply_id: str) -> None:
        nonlocal key
        channel.replies[reply_id] = channel.replies.pop(key)
        key = reply_id

    async def turn() -> None:
        try:
            async with channel.turn_lock:
                if isinstance(client_id, str) and client_id and not await channel.line.first_time(client_id):
                    return
                memory, ids = await lock_turn(deps, conv, channel)
                try:
                    await run_turn(deps, conv, text, client_id, channel.emit, started, memory, ids, live=True)
                finally:
                    memory.token = new_id("mem")
                    await channel.line.unlock(memory.token)
        except WidgetError as exc:
            channel.emit(exc.frame(client_id=client_id if isinstance(client_id, str) else None))
        except BusUnavailable:
            channel.lost()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("turn failed", extra={"conversation_id": conv.id})
            channel.emit(WidgetError("server error").frame(retryable=True))
        finally:
            channel.reply_done(key)

    task = asyncio.create_task(turn())
    channel.replies[key] = task
    return task


async def lock_turn(deps: Deps, conv: Conversation, channel: Channel) -> tuple[Memory, tuple[str, str]]:
    """Take the conversation's reply lease; end a reply whose node died holding it; and the memory this turn
    starts from (the channel's own when the last reply ran here, else read again: another node ran one since),
    with the ids of the visitor's message and the reply, made once the lease is taken (messages sort by id)."""
    ids: list[str] = []

    def info() -> dict[str, Any]:
        ids[:] = [new_id("msg"), new_id("msg")]
        return {"tenant_id": conv.tenant_id, "persona_id": conv.persona["id"], "conversation_id": conv.id,
                "visitor_id": conv.visitor_id, "channel": conv.channel, "message_id": ids[1], "started": time.time()}

    token, lapsed = await channel.line.lock(info, channel.wait_unlocked)
    if lapsed is not None:
        await end_lapsed(deps, lapsed)
    if channel.memory is not None and channel.memory.token == token:
        return channel.memory, (ids[0], ids[1])
    guard = conv.guard
    if deps.hub.bus.shared and (row := await deps.storage.get_conversation(conv.tenant_id, conv.id)) is not None:
        guard = from_row(row, conv.persona).guard  # the guardrail state as the last reply, on any node, left it
    channel.memory = Memory(deps.settings.history_turns, guard)
    return channel.memory, (ids[0], ids[1])
