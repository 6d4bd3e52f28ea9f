"""One tenant sees and touches nothing of another: every operation of the OpenAPI document, called with another
tenant's key on this tenant's resources, answers 404 or shows none of them, and leaves them as they were."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Stack

METHODS = ("get", "put", "patch", "post", "delete")


def _own_resources(stack: Stack) -> dict[str, str]:
    """A persona, a conversation with messages and events, a webhook and a key of this tenant."""
    persona = stack.persona("echo")
    r = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "private words",
                   "visitor_id": "vis_private"}, headers=stack.auth, timeout=30)
    assert r.status_code == 200, r.text
    hook = httpx.post(f"{stack.url}/v1/webhooks", json={"url": "https://93.184.215.14/hook"}, headers=stack.auth)
    keys = httpx.get(f"{stack.url}/v1/keys", headers=stack.auth).json()["data"]
    persona_id = httpx.get(f"{stack.url}/v1/personas/{persona}", headers=stack.auth).json()["id"]
    stack.wait_events(lambda got: len(got) >= 3)
    return {"persona": persona_id, "slug": persona, "conversation": r.json()["conversation_id"],
            "webhook": hook.json()["id"], "key": keys[0]["id"], "visitor": "vis_private", "tenant": stack.tenant_id}


def _path_for(path: str, own: dict[str, str]) -> str:
    by_param = {"/v1/personas/{id}": own["persona"], "/v1/conversations/{id}": own["conversation"],
                "/v1/webhooks/{id}": own["webhook"], "/v1/keys/{id}": own["key"]}
    path = path.replace("/v1/openai/models/{model}", f"/v1/openai/models/{own['persona']}")
    for prefix, value in by_param.items():
        if path.startswith(prefix):
            path = path.replace("{id}", value)
    return path.replace("{visitor_id}", own["visitor"])


def _body(path: str, method: str) -> Any:
    if path.endswith("/prompt") or path.endswith("/prompt/stream"):
        return {"message": "hello", "conversation_id": "{conversation}"}
    if path == "/v1/openai/chat/completions":  # this tenant's persona as the model
        return {"model": "{persona}", "messages": [{"role": "user", "content": "hello"}]}
    if method in ("put", "patch") and path.startswith("/v1/personas/"):
        return {"name": "Taken over"}
    return {}


def test_another_tenants_key_reaches_nothing_of_this_tenant(stack: Stack) -> None:
    own = _own_resources(stack)
    other = stack.tenant()
    theirs = {"Authorization": f"Bearer {other['sk']}"}
    document = httpx.get(f"{stack.url}/openapi.json").json()
    secrets = [v for k, v in own.items() if k != "slug"]
    cells = []
    for path, item in document["paths"].items():
        if not path.startswith("/v1/") or path == "/v1/widget/sessions":
            continue  # the widget's session endpoint takes a publishable key, tested on its own
        for method in METHODS:
            if method not in item:
                continue
            body = _body(path, method)
            if isinstance(body, dict) and body.get("conversation_id") == "{conversation}":
                body["conversation_id"] = own["conversation"]
            if isinstance(body, dict) and body.get("model") == "{persona}":
                body["model"] = own["persona"]
            url = f"{stack.url}{_path_for(path, own)}"
            r = httpx.request(method.upper(), url, headers=theirs, json=body if method != "get" else None,
                              timeout=30)
            cells.append((method.upper(), path, r.status_code))
            if path == "/v1/analytics/visitors/{visitor_id}":  # a visitor id is a name within a tenant
                assert r.status_code == 200 and not any(r.json()["deleted"].values()), r.text
                continue
            if "{" in path or body.get("model") == own["persona"]:  # it names one of this tenant's resources
                assert r.status_code in (400, 404, 422), (method, path, r.status_code, r.text[:200])
            # an error may repeat the id the caller sent; an answer must hold none of this tenant's things
            leaked = [s for s in secrets if s in r.text] if r.status_code < 400 else []
            assert not leaked, (method, path, leaked)
    assert len(cells) >= 30, cells
    print(f"{len(cells)} endpoint x method cells, none reached this tenant's data")
    # and everything of this tenant is as it was
    persona = httpx.get(f"{stack.url}/v1/personas/{own['persona']}", headers=stack.auth).json()
    assert persona["name"] == "Tester"
    conversation = httpx.get(f"{stack.url}/v1/conversations/{own['conversation']}", headers=stack.auth).json()
    assert [m["text"] for m in conversation["messages"]] == ["private words", "private words"]
    assert [h["id"] for h in httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"]] == [
        own["webhook"]]
    assert stack.events(visitor=own["visitor"])
