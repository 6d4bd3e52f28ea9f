"""`GET /v1/personas/{id}/export` and `POST /v1/personas/import`: the documents of `widget-server persona
export|import` over REST, YAML or JSON, round-tripping; 406 for an Accept it cannot serve; 409 for a slug that
exists unless `?replace=true`; hostile documents refused with a 400 and nothing written."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.test_cli import PERSONA, Cli
from widget_server.edges.persona_transfer import SERVED, negotiate
from widget_server.errors import NotAcceptable

FULL = {"name": "Ada", "description": "A guide.", "system_prompt": "You are Ada: ünïcode ✓.", "greeting": "Hi!",
        "starters": ["Hours?", "Menu?"], "language": "fr",
        "provider": {"kind": "openai", "model": "echo", "temperature": 0.2, "max_tokens": 99}}


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def export(stack: Stack, ref: str, accept: str | None = None, sk: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sk or stack.sk}", **({"Accept": accept} if accept is not None else {})}
    return httpx.get(f"{stack.url}/v1/personas/{ref}/export", headers=headers)


def import_(stack: Stack, content: str | bytes, media: str, sk: str | None = None, **params: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/personas/import", content=content, params=params, timeout=30,
                      headers={"Authorization": f"Bearer {sk or stack.sk}", "Content-Type": media})


def made(stack: Stack, **fields: Any) -> dict[str, Any]:
    r = httpx.post(f"{stack.url}/v1/personas", json={**FULL, "slug": f"p-{secrets.token_hex(3)}", **fields},
                   headers=stack.auth)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def count(stack: Stack, sk: str | None = None) -> int:
    r = httpx.get(f"{stack.url}/v1/personas", headers={"Authorization": f"Bearer {sk or stack.sk}"})
    return len(r.json()["data"])


def test_yaml_and_json_exports_are_one_document_that_imports_elsewhere(db_stack: Stack) -> None:
    persona = made(db_stack)
    as_json, as_yaml = export(db_stack, persona["slug"]), export(db_stack, persona["id"], "application/yaml")
    assert as_json.headers["content-type"] == "application/json"
    assert as_yaml.headers["content-type"] == "application/yaml; charset=utf-8"
    doc = as_json.json()
    assert yaml.safe_load(as_yaml.text) == doc and list(doc)[0] == "slug" and "id" not in doc
    assert doc["provider"]["api_key"] is None and "✓" in as_yaml.text  # unicode as text, never escaped
    other = db_stack.tenant()
    for media, body in (("application/yaml", as_yaml.text), ("application/json", as_json.text)):
        r = import_(db_stack, body, media, other["sk"], replace="true")
        assert r.status_code in (200, 201), r.text
        assert export(db_stack, persona["slug"], sk=other["sk"]).json() == doc  # the same persona, round-tripped
    assert count(db_stack, other["sk"]) == 1


def test_accept_picks_the_format_and_406_when_none_fits(stack: Stack) -> None:
    slug = made(stack)["slug"]
    for accept, media in (("text/yaml", "text/yaml"), ("application/json;q=0.5, text/yaml", "text/yaml"),
                          ("*/*", "application/json"), ("text/*", "text/yaml"), ("", "application/json"),
                          ("application/json, application/yaml", "application/json")):
        got = export(stack, slug, accept)
        assert got.status_code == 200 and got.headers["content-type"].split(";")[0] == media, (accept, got.text)
    for accept in ("text/html", "image/png, application/json;q=0", "application/xml"):
        err = assert_error(export(stack, slug, accept), 406, "request.not_acceptable")
        assert "application/yaml" in err["details"]["available"]
    assert_error(export(stack, "nobody"), 404)


def test_a_slug_that_exists_is_a_409_unless_replace(stack: Stack) -> None:
    persona = made(stack)
    doc = export(stack, persona["slug"]).json()
    assert_error(import_(stack, json.dumps(doc), "application/json"), 409, "persona.slug_taken")
    changed = {**doc, "greeting": "Servus"}
    r = import_(stack, yaml.safe_dump(changed), "text/yaml", replace="true")
    assert r.status_code == 200 and r.json()["id"] == persona["id"] and r.json()["greeting"] == "Servus"
    assert_error(import_(stack, json.dumps(doc), "application/json", replace="maybe"), 400, "query.invalid")
    fresh = import_(stack, json.dumps({**doc, "slug": "brand-new"}), "application/json")
    assert fresh.status_code == 201 and fresh.headers["location"] == f"/v1/personas/{fresh.json()['id']}"


def test_the_clis_export_imports_over_rest_and_rest_exports_what_the_cli_does(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    tenant_id, sk = cli.tenant()
    file = tmp_path / "bea.yaml"
    file.write_text(yaml.safe_dump(PERSONA))
    cli.ok("persona", "import", str(file), "--tenant", tenant_id)
    printed = cli.ok("persona", "export", "bea", "--tenant", tenant_id)
    other_id, other_sk = cli.tenant()
    with cli.app() as client:
        r = client.post("/v1/personas/import", content=printed, headers={
            "Authorization": f"Bearer {other_sk}", "Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        got = client.get("/v1/personas/bea/export", headers={"Authorization": f"Bearer {sk}",
                                                             "Accept": "application/yaml"})
        assert got.text == printed  # byte for byte what the CLI prints
    assert cli.ok("persona", "export", "bea", "--tenant", other_id) == printed


HOSTILE = [
    ("application/yaml", "a: &x [1]\nb: *x\n", "request.invalid_yaml"),  # aliases: the "billion laughs" door
    ("application/yaml", "name: [unclosed\n", "request.invalid_yaml"),
    ("application/yaml", "- just\n- a list\n", "request.invalid"),
    ("application/yaml", "", "request.invalid"),
    ("application/yaml", b"name: \xff\xfe", "request.invalid_yaml"),
    ("application/yaml", "[" * 5000 + "]" * 5000, "request.invalid_yaml"),
    ("application/yaml", "name: x\nsurprise: 1\n", "request.invalid"),
    ("application/yaml", "name: !!python/object/apply:os.system ['true']\n", "request.invalid_yaml"),
    ("application/json", "{not json", "request.invalid_json"),
    ("application/json", '"a string"', "request.invalid"),
    ("application/json", "[" * 100_000 + "]" * 100_000, "request.invalid_json"),
]


@pytest.mark.parametrize(("media", "content", "code"), HOSTILE)
def test_hostile_documents_are_a_400_and_write_nothing(stack: Stack, media: str, content: str | bytes,
                                                       code: str) -> None:
    r = import_(stack, content, media)
    err = assert_error(r, 400, code)
    assert "Traceback" not in err["message"]
    assert count(stack) == 0


def test_a_document_over_1_mib_is_a_413(stack: Stack) -> None:
    assert_error(import_(stack, "name: " + "x" * (1 << 20), "application/yaml"), 413)


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["application/json", "application/yaml", "text/yaml", "text/html", "*/*", "text/*",
                                 "application/*", ";q=0", ";q=0.5", ";q=1", ";q=x", ";q=-1", ",", " ", "image/png",
                                 "\u00e9"]), max_size=12).map("".join))
def test_negotiation_answers_a_served_type_or_406_for_any_accept(accept: str) -> None:
    try:
        assert negotiate(accept) in SERVED
    except NotAcceptable:
        assert accept.strip()  # no Accept at all is JSON
