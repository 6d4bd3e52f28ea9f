"""The throughput baseline: a bare Starlette WebSocket endpoint that streams the upstream with `openai.AsyncOpenAI`
and forwards every content chunk as one frame. No storage, no guardrails, no coalescing, no resume log.

Client frame: `{"model": "...", "text": "..."}`; server frames: `{"type": "delta", "text": "..."}` …, `{"type": "end"}`.
"""

from __future__ import annotations

import json

import openai
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def bare_app(upstream_base_url: str) -> Starlette:
    client = openai.AsyncOpenAI(base_url=upstream_base_url, api_key="bench", max_retries=0)

    async def forward(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                ask = json.loads(await ws.receive_text())
                stream = await client.chat.completions.create(
                    model=ask["model"], stream=True, stream_options={"include_usage": True}, max_tokens=256,
                    temperature=0.7, messages=[{"role": "system", "content": "You are a benchmark persona."},
                                               {"role": "user", "content": ask["text"]}],
                )
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        await ws.send_text(json.dumps({"type": "delta", "text": chunk.choices[0].delta.content}))
                await ws.send_text('{"type": "end"}')
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/ws", forward)])
