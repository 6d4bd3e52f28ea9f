"""Signing in to the console: the session cookie, its lifetimes, CSRF, sign-in limits, roles, the headers of every
console response, and the `user` commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.cookies import SimpleCookie

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.console import PASSWORD, Console, csrf_of, sign_in, token_for
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.tables import console_sessions
from widget_server.clock import now
from widget_server.domain.console_users import hash_password, sweep_sessions, verify_password


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie(header)
        if name in parsed:
            morsel = parsed[name]
            return {k: str(v) for k, v in morsel.items() if v} | {"value": morsel.value}
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


def age_sessions(stack: Stack, **back: float) -> None:
    """Move every console session's clock back (`last_seen_at` and/or `created_at` by so many seconds)."""
    async def run() -> None:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            async with storage.engine.begin() as conn:
                for column, seconds in back.items():
                    await conn.execute(sa.update(console_sessions).values(
                        {column: now() - timedelta(seconds=seconds)}))
        finally:
            await storage.close()
    asyncio.run(run())


def test_a_user_signs_in_and_gets_a_strict_http_only_cookie(console: Console) -> None:
    user = console.user("owner")
    client = console.client()
    r = sign_in(client, user["email"], PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    attrs = cookie_attributes(r, "console_session")
    assert attrs["httponly"] and attrs["samesite"].lower() == "strict" and attrs["path"] == "/console"
    assert "secure" not in attrs  # served over plain http here
    assert PASSWORD not in r.text and user["id"] not in attrs["value"]
    page = client.get("/console/")
    assert page.status_code == 200 and user["display_name"] in page.text and "Sign out" in page.text


def test_the_cookie_is_secure_when_the_console_is_served_over_https(console: Console) -> None:
    user = console.user("owner")
    https = {"X-Forwarded-Proto": "https"}  # from 127.0.0.1, a trusted proxy: the request came over https
    form = httpx.get(console.url + "/console/login", headers=https)
    pre = cookie_attributes(form, "console_login")
    assert pre["secure"]  # (so httpx, speaking plain http, keeps it to itself: it is sent by hand below)
    r = httpx.post(console.url + "/console/login", headers={**https, "Cookie": f"console_login={pre['value']}"},
                   data={"email": user["email"], "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert r.status_code == 303
    assert cookie_attributes(r, "console_session")["secure"]


def test_a_wrong_password_or_an_unknown_email_is_refused_with_the_same_message(console: Console) -> None:
    user = console.user("owner")
    wrong = sign_in(console.client(), user["email"], "not the password at all")
    unknown = sign_in(console.client(), "nobody@example.com", PASSWORD)
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert "That e-mail and password do not match an account." in r.text
        assert "console_session" not in r.headers.get("set-cookie", "")


def test_repeated_failures_lock_the_account_with_a_clear_message(stack_factory: Callable[..., Stack]) -> None:
    console = Console(stack_factory(console_login_attempts=3))
    user = console.user("owner")
    for _ in range(3):
        assert sign_in(console.client(), user["email"], "wrong password!!").status_code == 401
    locked = sign_in(console.client(), user["email"], PASSWORD)  # even the right password: no password is checked
    assert locked.status_code == 429
    assert "Too many sign-in attempts for this account. Try again in 15 minutes." in locked.text
    other = console.user("viewer")  # another account from the same address still signs in
    assert sign_in(console.client(), other["email"], PASSWORD).status_code == 303


def test_too_many_attempts_from_one_address_are_refused(stack_factory: Callable[..., Stack]) -> None:
    console = Console(stack_factory(console_login_attempts_per_address=2))
    for n in range(2):
        assert sign_in(console.client(), f"someone{n}@example.com", "wrong password!!").status_code == 401
    r = sign_in(console.client(), "another@example.com", PASSWORD)
    assert r.status_code == 429 and "Too many sign-in attempts from your address." in r.text


def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(console: Console) -> None:
    client = console.signed_in("owner")
    r = client.post("/console/logout")  # no token
    assert r.status_code == 403 and "did not come from the console" in r.text
    assert client.get("/console/").status_code == 200  # still signed in
    r = client.post("/console/logout", data={"csrf": "0" * 64})
    assert r.status_code == 403
    other = console.signed_in("owner")  # another session's token is not this one's
    r = client.post("/console/logout", data={"csrf": token_for(other)})
    assert r.status_code == 403
    assert client.get("/console/").status_code == 200


def test_the_sign_in_form_needs_its_own_token(console: Console) -> None:
    user = console.user("owner")
    client = console.client()
    r = client.post("/console/login", data={"email": user["email"], "password": PASSWORD})
    assert r.status_code == 403 and "console_session" not in r.headers.get("set-cookie", "")


def test_sign_out_ends_the_session_even_for_a_copy_of_the_cookie(console: Console) -> None:
    client = console.signed_in("owner")
    copy = console.client()
    copy.cookies.update(client.cookies)
    r = client.post("/console/logout", data={"csrf": token_for(client)})
    assert r.status_code == 303 and r.headers["location"] == "/console/login?signed_out=1"
    assert 'console_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    for c in (client, copy):
        page = c.get("/console/")
        assert page.status_code == 303 and page.headers["location"].startswith("/console/login?next=")


def test_an_idle_session_ends_and_so_does_an_old_one(console: Console) -> None:
    idle = console.signed_in("owner")
    age_sessions(console.stack, last_seen_at=console.stack.settings.console_idle_s + 5)
    r = idle.get("/console/personas")
    assert r.status_code == 303 and r.headers["location"] == "/console/login?next=%2Fconsole%2Fpersonas"
    busy = console.signed_in("owner")  # active a moment ago, but signed in longer ago than the absolute lifetime
    age_sessions(console.stack, created_at=console.stack.settings.console_absolute_s + 5)
    assert busy.get("/console/").status_code == 303
    r = busy.post("/console/logout", data={"csrf": "x"})
    assert r.status_code == 401 and "sign in again" in r.text


def test_a_session_is_refreshed_by_use(console: Console) -> None:
    client = console.signed_in("owner")
    age_sessions(console.stack, last_seen_at=console.stack.settings.console_idle_s - 60)  # nearly idle …
    assert client.get("/console/").status_code == 200  # … used now: its idle clock starts again
    age_sessions(console.stack, created_at=30)  # (the absolute lifetime is far)
    assert client.get("/console/personas").status_code == 200


def test_a_forged_or_tampered_cookie_signs_nobody_in(console: Console) -> None:
    client = console.signed_in("owner")
    value = client.cookies["console_session"]
    forged = console.client()
    forged.cookies.set("console_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert forged.get("/console/").status_code == 303


def test_signing_in_goes_back_to_the_page_asked_for_but_never_off_site(console: Console) -> None:
    user = console.user("viewer")
    r = sign_in(console.client(), user["email"], PASSWORD, next_="/console/transcripts?status=escalated")
    assert r.headers["location"] == "/console/transcripts?status=escalated"
    for evil in ("//evil.example/console", "https://evil.example/", "/console/../../x\\y", "/\\evil.example"):
        r = sign_in(console.client(), user["email"], PASSWORD, next_=evil)
        assert r.headers["location"] == "/console/", evil


@pytest.mark.parametrize("path", ["/console/login", "/console/", "/console/nope", "/console"])
def test_every_console_response_carries_the_security_headers(console: Console, path: str) -> None:
    r = console.client().get(path)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["server-timing"].startswith("app;dur=")


def test_an_unknown_console_page_is_a_404_page(console: Console) -> None:
    client = console.signed_in("viewer")
    r = client.get("/console/nothing-here")
    assert r.status_code == 404 and "<h1>Not found</h1>" in r.text and r.headers["content-type"].startswith("text/html")


def test_the_widget_and_the_api_set_no_cookie(console: Console) -> None:
    stack = console.stack
    slug = stack.persona()
    responses = [httpx.get(stack.url + "/embed.js"), httpx.get(stack.url + "/"), stack.session(slug),
                 httpx.get(stack.url + "/v1/personas", headers=stack.auth)]
    for r in responses:
        assert "set-cookie" not in r.headers, r.request.url


def test_passwords_are_hashed_with_scrypt_and_verify() -> None:
    stored = hash_password("a long enough password")
    assert stored.startswith("scrypt$16384$8$5$") and "a long enough password" not in stored
    assert verify_password("a long enough password", stored)
    assert not verify_password("a long enough passworD", stored)
    assert not verify_password("x", "not a hash") and not verify_password("x", "bcrypt$1$2$3$4$5")


def cli(stack: Stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"WIDGET_DATA_DIR": str(stack.settings.data_dir), "WIDGET_DATABASE_URL": stack.settings.resolved_database_url,
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "widget_server", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def test_user_commands_create_list_and_delete_console_users(console: Console) -> None:
    stack = console.stack
    made = cli(stack, "user", "create", "--tenant", stack.tenant_id, "Agent.Smith@Example.com", "--role", "agent",
               "--json")
    assert made.returncode == 0, made.stderr
    body = json.loads(made.stdout)
    assert set(body) == {"user_id", "email", "role", "password"} and body["email"] == "agent.smith@example.com"
    assert body["role"] == "agent" and len(body["password"]) >= 20
    assert sign_in(console.client(), "agent.smith@example.com", body["password"]).status_code == 303
    given = cli(stack, "user", "create", "--tenant", stack.tenant_id, "viewer@example.com", "--role", "viewer",
                "--password-stdin", "--json", stdin="my own long password\n")
    assert given.returncode == 0, given.stderr
    assert "password" not in json.loads(given.stdout)
    assert "my own long password" not in given.stdout + given.stderr
    assert sign_in(console.client(), "viewer@example.com", "my own long password").status_code == 303
    plain = cli(stack, "user", "create", "--tenant", stack.tenant_id, "owner2@example.com")
    assert plain.returncode == 0 and "password: " in plain.stdout and "shown only this once" in plain.stdout
    listed = cli(stack, "user", "list", "--tenant", stack.tenant_id, "--json")
    assert sorted(u["email"] for u in json.loads(listed.stdout)) == [
        "agent.smith@example.com", "owner2@example.com", "viewer@example.com"]
    assert "password" not in listed.stdout
    signed = console.client()
    assert sign_in(signed, "viewer@example.com", "my own long password").status_code == 303
    gone = cli(stack, "user", "delete", "--tenant", stack.tenant_id, "viewer@example.com")
    assert gone.returncode == 0, gone.stderr
    assert signed.get("/console/").status_code == 303  # the deleted user's session ended with them
    assert cli(stack, "user", "delete", "--tenant", stack.tenant_id, "viewer@example.com").returncode == 2


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["nobody-at-all", "--tenant", "T"], None, "not an e-mail address"),
    (["a@example.com", "--tenant", "ten_missing"], None, "no tenant ten_missing"),
    (["a@example.com", "--tenant", "T", "--password-stdin"], "short\n", "a password has 12 to 1024 characters"),
])
def test_user_create_refuses_bad_input_on_one_line(console: Console, args: list[str], stdin: str | None,
                                                   message: str) -> None:
    args = [console.stack.tenant_id if a == "T" else a for a in args]
    r = cli(console.stack, "user", "create", *args, stdin=stdin)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_email_signs_in_to_one_account_only(console: Console) -> None:
    stack = console.stack
    first = cli(stack, "user", "create", "--tenant", stack.tenant_id, "same@example.com", "--json")
    other = stack.tenant()
    again = cli(stack, "user", "create", "--tenant", other["tenant_id"], "SAME@example.com", "--json")
    assert first.returncode == 0 and again.returncode == 2
    assert "already signs in with same@example.com" in again.stderr


hostile_text = st.one_of(st.text(max_size=300), st.sampled_from(
    ["", "\x00", "a@b.c\x00", "' OR 1=1 --", "<script>alert(1)</script>", "x" * 5000, "%00", "owner@demo.example"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=hostile_text, password=hostile_text, next_=hostile_text, with_token=st.booleans())
def test_hostile_sign_in_forms_get_a_page_never_a_500(console: Console, email: str, password: str, next_: str,
                                                      with_token: bool) -> None:
    client = console.client()
    form = client.get("/console/login")
    data = {"email": email, "password": password, "next": next_, **({"csrf": csrf_of(form.text)} if with_token else {})}
    r = client.post("/console/login", data=data)
    assert r.status_code in (401, 403, 429), r.text
    assert r.headers["content-type"].startswith("text/html") and "<h1>Sign in to the console</h1>" in r.text
    assert "<script>alert(1)</script>" not in r.text


COOKIE_CHARS = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=";,")
CONTENT_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=xyz",
                 "application/json", "text/plain", ""]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(CONTENT_TYPES),
       cookie=st.text(alphabet=COOKIE_CHARS, max_size=80))
def test_hostile_bodies_and_cookies_get_a_clear_answer(console: Console, body: bytes, content_type: str,
                                                       cookie: str) -> None:
    headers = {"content-type": content_type, "cookie": f"console_session={cookie}; console_login={cookie}"}
    for path in ("/console/login", "/console/logout"):
        r = httpx.post(console.url + path, content=body, headers={**headers, "accept": "text/html"})
        assert r.status_code in (400, 401, 403, 429), (path, r.status_code, r.text[:300])
    r = httpx.get(console.url + "/console/", headers={"cookie": f"console_session={cookie}"})
    assert r.status_code == 303


def test_the_sweep_forgets_sessions_that_can_no_longer_sign_in(console: Console) -> None:
    live, idle = console.signed_in("owner"), console.signed_in("owner")
    age_sessions(console.stack, last_seen_at=console.stack.settings.console_idle_s + 5)
    assert live.get("/console/").status_code == 303 and idle.get("/console/").status_code == 303  # (each ends on use)
    kept = console.signed_in("viewer")
    age_sessions(console.stack, last_seen_at=console.stack.settings.console_idle_s + 5)
    fresh = console.signed_in("viewer")

    async def sweep() -> tuple[int, int]:
        storage = await open_storage(console.stack.settings.resolved_database_url)
        try:
            removed = await sweep_sessions(storage, console.stack.settings.console_idle_s,
                                           console.stack.settings.console_absolute_s)
            async with storage.engine.connect() as conn:
                left = (await conn.execute(sa.select(sa.func.count()).select_from(console_sessions))).scalar_one()
            return removed, int(left)
        finally:
            await storage.close()
    assert asyncio.run(sweep()) == (1, 1)  # `kept`'s aged session went; `fresh`'s stays
    assert kept.get("/console/").status_code == 303 and fresh.get("/console/").status_code == 200


def test_a_console_body_must_say_its_length_and_keep_within_two_mib(console: Console) -> None:
    client = console.signed_in("owner")
    token = token_for(client)
    big = client.post("/console/logout", content=b"csrf=" + token.encode() + b"&x=" + b"a" * (2 * 1024 * 1024),
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b"csrf=" + token.encode()
    unsized = client.post("/console/logout", content=chunks(),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert unsized.status_code == 413
    assert client.get("/console/").status_code == 200  # neither signed out
    r = httpx.post(console.url + "/console/login", content=b"a" * (3 * 1024 * 1024),
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
