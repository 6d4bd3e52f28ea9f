"""Many conversations at once on one server: each reply arrives whole, in its own conversation."""

from __future__ import annotations

import asyncio
import json

import httpx
from websockets.asyncio.client import connect

from tests.conftest import Stack


async def _conversation(stack: Stack, persona: str, token: str, i: int) -> tuple[str, str, str]:
    text = " ".join(f"c{i}-{n}" for n in range(40))
    async with connect(stack.url.replace("http", "ws") + "/v1/widget/ws",
                       additional_headers={"Origin": stack.origin}) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        ready = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "message", "client_id": f"c{i}", "text": text}))
        got = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if frame["type"] == "reply.delta":
                got.append(frame["text"])
            if frame["type"] == "reply.end":
                assert frame["finish_reason"] == "stop"
                return ready["conversation_id"], text, "".join(got)


def test_twenty_conversations_at_once(stack: Stack) -> None:
    persona = stack.persona("echo")
    tokens = [stack.token(persona)[0] for _ in range(20)]

    async def run() -> list[tuple[str, str, str]]:
        return await asyncio.gather(*(_conversation(stack, persona, t, i) for i, t in enumerate(tokens)))

    results = asyncio.run(run())
    assert len({cid for cid, _, _ in results}) == 20
    for conversation_id, sent, received in results:
        assert received == sent
        stored = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth).json()
        assert [m["text"] for m in stored["messages"]] == [sent, sent]
