"""`GET /v1/prompt/sessions`: the conversations of the API's channels (REST/SSE/jobs and OpenAI-compatible), newest
first, with their last message and counts; the widget's and the console's are not among them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Stack


def sessions(stack: Stack, sk: str | None = None, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/prompt/sessions", params=params,
                     headers={"Authorization": f"Bearer {sk or stack.sk}"})


def prompt(stack: Stack, persona: str, message: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": message, **body},
                   headers=stack.auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_sessions_are_the_api_channels_conversations_newest_first(stack_factory: Callable[..., Stack],
                                                                  db_url: str) -> None:
    stack = stack_factory(database_url=db_url)
    persona = stack.persona()
    first = prompt(stack, persona, "one")
    prompt(stack, persona, "two words", conversation_id=first["conversation_id"])
    stack.turn(persona, "from the widget")  # channel widget: not a prompt session
    r = httpx.post(f"{stack.url}/v1/openai/chat/completions", headers=stack.auth,
                   json={"model": persona, "messages": [{"role": "user", "content": "via openai"}]})
    assert r.status_code == 200, r.text
    got = sessions(stack)
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert [s["channel"] for s in data] == ["openai", "api"] and got.json()["next_cursor"] is None
    api = data[1]
    assert api["id"] == first["conversation_id"]
    assert api["counts"] == {"messages": 4, "visitor_turns": 2}
    assert api["last_message"]["role"] == "persona" and api["last_message"]["text"] == "two words"
    assert api["last_message"]["created_at"] >= api["created_at"]
    assert data[0]["counts"] == {"messages": 2, "visitor_turns": 1}
    assert data[0]["last_message"]["text"] == "via openai"


def test_sessions_filter_by_channel_and_page(stack: Stack) -> None:
    persona = stack.persona()
    ids = [prompt(stack, persona, f"m{i}")["conversation_id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        page = sessions(stack, channel="api", limit=2, **({"cursor": cursor} if cursor else {})).json()
        seen += [s["id"] for s in page["data"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == ids[::-1]
    assert sessions(stack, channel="openai").json()["data"] == []
    for bad in ({"channel": "widget"}, {"cursor": "nope"}, {"limit": "0"}, {"persona": "x"}):
        r = sessions(stack, **bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "query.invalid", (bad, r.text)


def test_another_tenant_sees_none_of_the_sessions(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(prompt_jobs_concurrency=0)
    persona = stack.persona()
    prompt(stack, persona, "mine")
    other = stack.tenant()["sk"]
    assert sessions(stack, other).json() == {"data": [], "next_cursor": None}
    assert len(sessions(stack).json()["data"]) == 1
