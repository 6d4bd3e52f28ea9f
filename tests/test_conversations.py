"""`/v1/conversations` on SQLite and PostgreSQL: newest first, keyset pages, messages in order, tenant isolation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def start(stack: Stack, persona: str, message: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": message, **body},
                   headers=stack.auth, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def page(stack: Stack, sk: str | None = None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sk}"} if sk else stack.auth
    return httpx.get(f"{stack.url}/v1/conversations", params=params, headers=headers)


def test_pages_walk_every_conversation_newest_first_without_repeats_or_gaps(db_stack: Stack) -> None:
    persona = db_stack.persona("echo")
    made = [start(db_stack, persona, f"message {i}")["conversation_id"] for i in range(7)]
    seen: list[dict[str, Any]] = []
    sizes = []
    cursor = None
    while True:
        r = page(db_stack, limit=3, **({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        sizes.append(len(body["data"]))
        seen += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(sizes) < 10, "pagination does not end"
    assert sizes == [3, 3, 1]
    ids = [c["id"] for c in seen]
    assert len(ids) == len(set(ids)) == 7
    assert set(ids) == set(made)
    assert ids == sorted(made, reverse=True)  # ids sort by creation time: newest first
    stamps = [c["created_at"] for c in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert ids[0] == made[-1] and ids[-1] == made[0]
    whole = page(db_stack).json()
    assert [c["id"] for c in whole["data"]] == ids and whole["next_cursor"] is None


def test_an_exact_last_page_has_no_next_cursor(db_stack: Stack) -> None:
    persona = db_stack.persona("echo")
    for i in range(4):
        start(db_stack, persona, f"m{i}")
    first = page(db_stack, limit=2).json()
    second = page(db_stack, limit=2, cursor=first["next_cursor"]).json()
    assert len(first["data"]) == len(second["data"]) == 2 and second["next_cursor"] is None


def test_listed_conversations_describe_themselves(db_stack: Stack) -> None:
    slug = db_stack.persona("echo")
    persona_id = httpx.get(f"{db_stack.url}/v1/personas/{slug}", headers=db_stack.auth).json()["id"]
    made = start(db_stack, slug, "hello", visitor_id="vis-7")
    (conv,) = page(db_stack).json()["data"]
    assert conv["id"] == made["conversation_id"] and conv["persona_id"] == persona_id
    assert conv["visitor_id"] == "vis-7" and conv["channel"] == "api" and conv["status"] == "bot"


def test_list_filters_by_persona(db_stack: Stack) -> None:
    one, two = db_stack.persona("echo"), db_stack.persona("echo")
    one_id = httpx.get(f"{db_stack.url}/v1/personas/{one}", headers=db_stack.auth).json()["id"]
    mine = start(db_stack, one, "a")["conversation_id"]
    start(db_stack, two, "b")
    assert [c["id"] for c in page(db_stack, persona=one_id).json()["data"]] == [mine]


@pytest.mark.parametrize("limit", ["0", "-1", "201", "abc", "2.5"])
def test_a_bad_limit_is_400(db_stack: Stack, limit: str) -> None:
    err = assert_error(page(db_stack, limit=limit), 400, "query.invalid", "invalid_request")  # as every query's
    assert "limit" in err["message"] and err["details"] == {"param": "limit"}


def test_one_conversation_has_its_messages_in_order(db_stack: Stack) -> None:
    persona = db_stack.persona("echo")
    first = start(db_stack, persona, "first words")
    second = start(db_stack, persona, "second words", conversation_id=first["conversation_id"])
    r = httpx.get(f"{db_stack.url}/v1/conversations/{first['conversation_id']}", headers=db_stack.auth)
    assert r.status_code == 200, r.text
    conv = r.json()
    assert conv["id"] == first["conversation_id"] and conv["status"] == "bot"
    messages = conv["messages"]
    assert [(m["role"], m["text"]) for m in messages] == [
        ("visitor", "first words"), ("persona", "first words"),
        ("visitor", "second words"), ("persona", "second words")]
    assert [m["id"] for m in messages if m["role"] == "persona"] == [first["message_id"], second["message_id"]]
    assert [m["created_at"] for m in messages] == sorted(m["created_at"] for m in messages)
    reply = messages[1]
    assert reply["finish_reason"] == "stop" and reply["usage"] == {"input_tokens": 11, "output_tokens": 2}
    assert reply["timing"]["total_ms"] >= 0 and reply["feedback"] is None and reply["guardrail"] is None


def test_unknown_conversation_is_404(db_stack: Stack) -> None:
    r = httpx.get(f"{db_stack.url}/v1/conversations/conv_nothing", headers=db_stack.auth)
    assert_error(r, 404, "conversation.not_found", "not_found")


def test_listing_needs_a_key(db_stack: Stack) -> None:
    assert_error(httpx.get(f"{db_stack.url}/v1/conversations"), 401, type_="auth")
    assert_error(httpx.get(f"{db_stack.url}/v1/conversations/conv_x"), 401, type_="auth")


def test_another_tenant_cannot_see_the_conversations(db_stack: Stack) -> None:
    made = start(db_stack, db_stack.persona("echo"), "private")
    other = db_stack.tenant()["sk"]
    r = httpx.get(f"{db_stack.url}/v1/conversations/{made['conversation_id']}",
                  headers={"Authorization": f"Bearer {other}"})
    assert_error(r, 404, "conversation.not_found")
    assert page(db_stack, sk=other).json() == {"data": [], "next_cursor": None}
    assert [c["id"] for c in page(db_stack).json()["data"]] == [made["conversation_id"]]
