"""Only configured host names are served: a forged Host must not reach the demo page's script URL or `ws_url`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import Stack
from tests.support.errors import assert_error


def test_a_forged_host_is_refused_on_every_path(stack: Stack) -> None:
    evil = {"Host": "evil.example"}
    for path in ("/", "/demo/csp", "/health", "/embed.js", "/v1/personas"):
        assert_error(httpx.get(stack.url + path, headers=evil), 400, "request.bad_host")
    r = httpx.post(f"{stack.url}/v1/widget/sessions", json={"key": stack.pk, "persona": stack.persona()},
                   headers={**evil, "Origin": stack.origin})
    assert_error(r, 400, "request.bad_host")
    assert "evil.example" not in r.text
    with pytest.raises(InvalidStatus):
        connect(stack.url.replace("http", "ws") + "/v1/widget/ws", additional_headers=evil, open_timeout=5)


def test_loopback_names_are_served_by_default(stack: Stack) -> None:
    port = stack.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert httpx.get(f"{stack.url}/health", headers={"Host": host}).status_code == 200, host


def test_configured_hosts_and_the_public_url_are_what_is_served(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(allowed_hosts="chat.shop.example, *.cdn.example")
    for host, status in (("chat.shop.example", 200), ("a.cdn.example", 200), ("127.0.0.1", 400),
                         ("shop.example", 400)):
        assert httpx.get(f"{stack.url}/health", headers={"Host": host}).status_code == status, host
    page = httpx.get(f"{stack.url}/", headers={"Host": "chat.shop.example"}).text
    assert "evil" not in page
    public = stack_factory(public_url="https://chat.shop.example")  # its host is the one served by default
    host = {"Host": "chat.shop.example"}
    assert httpx.get(f"{public.url}/health").status_code == 400  # 127.0.0.1 is not, now
    made = httpx.post(f"{public.url}/v1/personas", json={"name": "Ada"}, headers={**public.auth, **host})
    r = httpx.post(f"{public.url}/v1/widget/sessions", json={"key": public.pk, "persona": made.json()["slug"]},
                   headers={**host, "Origin": public.origin})
    assert r.status_code == 201 and r.json()["ws_url"] == "wss://chat.shop.example/v1/widget/ws"
