"""The console's Personas pages over HTTP, through a real server on SQLite and PostgreSQL: the list, the form (every
field, errors beside their field, values kept), delete after a confirmation, YAML import and export (the CLI's
format), roles, tenant isolation, escaping, and hostile forms (hypothesis); then the same pages in Chromium: made
and edited by hand, errors read out with their field, no script run from a persona's text, axe-core with no
violation, and no horizontal scroll at 390 px."""

from __future__ import annotations

import contextlib
import html
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Stack
from tests.support.console import (
    BROWSER_ARGS,
    CHROMIUM,
    Console,
    axe_violations,
    browser_sign_in,
    needs_chromium,
    token_for,
)

FULL = {
    "name": "Baker Bot", "slug": "baker", "description": "Answers bakery questions.", "language": "fr",
    "avatar_url": "https://cdn.example/baker.png", "system_prompt": "You are a baker.\r\nBe brief.",
    "greeting": "Bonjour!", "starters": "Do you have rye?\r\n\r\n  Opening hours?  \r\n",
    "provider.kind": "openai", "provider.model": "echo", "provider.base_url": "https://llm.example/v1",
    "provider.temperature": "0.3", "provider.max_tokens": "256", "provider.api_key": "sk-upstream-secret",
    "topics.off_topic": "escalate",
    "topics.allowed.0.id": "bread", "topics.allowed.0.description": "bread and pastries",
    "topics.allowed.0.examples": "do you have rye bread\r\nis the croissant fresh", "topics.allowed.0.refusal": "",
    "topics.denied.0.id": "medical", "topics.denied.0.description": "",
    "topics.denied.0.examples": "what dose of ibuprofen should I take", "topics.denied.0.refusal": "No medical advice.",
}
EXPECTED = {
    "name": "Baker Bot", "slug": "baker", "description": "Answers bakery questions.", "language": "fr",
    "avatar_url": "https://cdn.example/baker.png", "system_prompt": "You are a baker.\nBe brief.",
    "greeting": "Bonjour!", "starters": ["Do you have rye?", "Opening hours?"],
    "provider": {"kind": "openai", "model": "echo", "base_url": "https://llm.example/v1", "temperature": 0.3,
                 "max_tokens": 256, "api_key": None, "api_key_set": True},
    "topics": {"allowed": [{"id": "bread", "description": "bread and pastries",
                            "examples": ["do you have rye bread", "is the croissant fresh"], "refusal": None}],
               "denied": [{"id": "medical", "description": None, "examples": ["what dose of ibuprofen should I take"],
                           "refusal": "No medical advice."}],
               "off_topic": "escalate"},
}
SCRIPT = "<script>alert(1)</script>"


class Elements(HTMLParser):
    """Every element of a page that has an id: its tag, attributes and text."""

    VOID = {"input", "br", "meta", "link", "img", "hr", "col", "source", "wbr", "area", "base", "embed", "track"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, dict[str, Any]] = {}
        self.open: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        entry: dict[str, Any] = {"tag": tag, "attrs": dict(attrs), "text": []}
        if entry["attrs"].get("id"):
            self.found[str(entry["attrs"]["id"])] = entry
        if tag not in self.VOID:
            self.open.append(entry)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i]["tag"] == tag:
                del self.open[i:]
                return

    def handle_data(self, data: str) -> None:
        for entry in self.open:
            entry["text"].append(data)


def element(html: str, id_: str) -> dict[str, Any]:
    """The element with this id: `attrs`, and `text` (all the text inside it)."""
    found = Elements(html).found
    assert id_ in found, f"no element #{id_}"
    return {**found[id_], "text": "".join(found[id_]["text"])}


def described_by(html: str, id_: str) -> str:
    """The text of the elements a control's aria-describedby names."""
    ids = str(element(html, id_)["attrs"].get("aria-describedby") or "").split()
    return " ".join(element(html, i)["text"].strip() for i in ids)


def rest(stack: Stack, ref: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/personas/{ref}", headers=stack.auth)


def public(stack: Stack, ref: str) -> dict[str, Any]:
    r = rest(stack, ref)
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k not in ("created_at", "updated_at")}


def with_topics(stack: Stack, **fields: Any) -> str:
    """`stack.persona`, given the time topics take to compile the first time (the embedding model loads)."""
    body = {"name": "Tester", "provider": {"kind": "openai", "model": "echo"}, **fields}
    r = httpx.post(f"{stack.url}/v1/personas", json=body, headers=stack.auth, timeout=120)
    assert r.status_code == 201, r.text
    return str(r.json()["slug"])


def count(stack: Stack) -> int:
    return len(httpx.get(f"{stack.url}/v1/personas", headers=stack.auth).json()["data"])


def post_form(client: httpx.Client, path: str, data: dict[str, str], page: str | None = None) -> httpx.Response:
    return client.post(path, data={**data, "csrf": token_for(client, page or path)})


@pytest.fixture
def any_console(stack_factory: Callable[..., Stack], db_url: str) -> Iterator[Console]:
    """A console over SQLite, then over PostgreSQL."""
    c = Console(stack_factory(database_url=db_url))
    yield c
    for client in c.clients:
        client.close()


def test_an_owner_creates_a_persona_with_every_field_and_edits_it(any_console: Console) -> None:
    stack, owner = any_console.stack, any_console.signed_in("owner")
    r = post_form(owner, "/console/personas/new", FULL)
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/console/personas/per_") and "notice=created" in r.headers["location"]
    made = public(stack, "baker")
    assert {k: v for k, v in made.items() if k != "id"} == EXPECTED
    page = owner.get(r.headers["location"])
    assert "The persona was created." in page.text
    assert element(page.text, "f-name")["attrs"]["value"] == "Baker Bot"
    assert element(page.text, "f-starters")["text"] == "Do you have rye?\nOpening hours?"
    assert element(page.text, "f-topics-denied-0-refusal")["attrs"]["value"] == "No medical advice."
    assert "sk-upstream-secret" not in page.text and "A key is stored" in page.text
    listed = owner.get("/console/personas").text
    for shown in ("Baker Bot", "baker", "Bonjour!", "bread", "medical", "openai · echo"):
        assert shown in listed

    edited = {**FULL, "name": "Baker Bot 2", "greeting": "", "starters": "", "provider.kind": "",
              "provider.model": "", "provider.base_url": "", "provider.temperature": "", "provider.max_tokens": "",
              "provider.api_key": "", "avatar_url": "", "topics.allowed.0.remove": "1",
              "topics.denied.1.id": "legal", "topics.denied.1.examples": "can I sue my landlord",
              "topics.off_topic": "refuse", "slug": ""}
    r = post_form(owner, f"/console/personas/{made['id']}", edited)
    assert r.status_code == 303 and r.headers["location"].endswith("notice=saved"), r.text
    after = public(stack, made["id"])
    assert after["name"] == "Baker Bot 2" and after["slug"] == "baker"  # a blank slug keeps the slug
    assert after["greeting"] == "" and after["starters"] == [] and after["avatar_url"] is None
    assert after["provider"] == {"kind": None, "model": None, "base_url": None, "temperature": 0.7,
                                 "max_tokens": None, "api_key": None, "api_key_set": True}  # the key is kept
    assert after["topics"]["allowed"] == [] and [t["id"] for t in after["topics"]["denied"]] == ["medical", "legal"]
    r = post_form(owner, f"/console/personas/{made['id']}", {**edited, "provider.api_key_remove": "1"})
    assert r.status_code == 303 and public(stack, made["id"])["provider"]["api_key_set"] is False


def test_errors_are_shown_beside_their_field_with_what_was_typed_kept(console: Console) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    before = count(stack)
    typed = {**FULL, "slug": "Not A Slug!", "provider.temperature": "hot", "starters": "ok\n\n" + "x" * 201,
             "topics.denied.0.id": "bad id", "avatar_url": "ftp://nope", "provider.api_key": "sk-typed"}
    r = post_form(owner, "/console/personas/new", typed)
    assert r.status_code == 422 and count(stack) == before
    html = r.text
    for control, message in [("f-slug", "lowercase letters, digits and inner dashes"),
                             ("f-provider-temperature", "Input should be a valid number"),
                             ("f-starters", "line 3: String should have at most 200 characters"),
                             ("f-topics-denied-0-id", "use 1 to 64 letters, digits"),
                             ("f-avatar_url", "must be an http or https URL")]:
        assert element(html, control)["attrs"].get("aria-invalid") == "true", control
        assert message in described_by(html, control), (control, described_by(html, control))
    assert element(html, "f-slug")["attrs"]["value"] == "Not A Slug!"
    assert element(html, "f-provider-temperature")["attrs"]["value"] == "hot"
    assert element(html, "f-topics-allowed-0-examples")["text"] == "do you have rye bread\nis the croissant fresh"
    assert "sk-typed" not in html and "The key you typed was not kept" in html
    assert 'href="#f-slug"' in html and "Not A Slug!" not in element(html, "form-errors")["text"]
    assert element(html, "f-name")["attrs"].get("aria-invalid") is None  # a field without error is not marked


def test_a_slug_taken_is_shown_on_the_slug_and_an_edit_refused_changes_nothing(console: Console) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    taken = stack.persona(slug="taken")
    mine = stack.persona(name="Mine")
    r = post_form(owner, "/console/personas/new", {"name": "Another", "slug": taken})
    assert r.status_code == 409 and "slug 'taken' is taken" in described_by(r.text, "f-slug")
    before = public(stack, mine)
    r = post_form(owner, f"/console/personas/{before['id']}", {**FULL, "slug": taken, "name": "Changed"})
    assert r.status_code == 409 and public(stack, mine) == before


def test_delete_asks_first_then_deletes(console: Console) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    slug = stack.persona(name="Doomed")
    pid = public(stack, slug)["id"]
    ask = owner.get(f"/console/personas/{pid}/delete")
    assert ask.status_code == 200 and "Delete this persona?" in ask.text and "Doomed" in ask.text
    assert rest(stack, slug).status_code == 200  # asking deletes nothing
    r = owner.post(f"/console/personas/{pid}/delete", data={"csrf": token_for(owner, f"/console/personas/{pid}")})
    assert r.status_code == 303 and r.headers["location"] == "/console/personas?notice=deleted"
    assert rest(stack, slug).status_code == 404
    assert "The persona was deleted." in owner.get(r.headers["location"]).text


@pytest.mark.parametrize("role", ["viewer", "agent"])
def test_a_role_without_configure_reads_but_cannot_change(console: Console, role: str) -> None:
    stack, owner, other = console.stack, console.signed_in("owner"), console.signed_in(role)
    slug = stack.persona(name="Steady")
    before = public(stack, slug)
    pid = before["id"]
    listed = other.get("/console/personas")
    assert listed.status_code == 200 and "Steady" in listed.text and "New persona" not in listed.text
    page = other.get(f"/console/personas/{pid}")
    assert page.status_code == 200 and "only an owner can change them" in page.text and "Save changes" not in page.text
    assert "disabled" in element(page.text, "f-name")["attrs"]
    assert other.get(f"/console/personas/{pid}/export").status_code == 200
    for path in ("/console/personas/new", "/console/personas/import", f"/console/personas/{pid}/delete"):
        assert other.get(path).status_code == 403, path
    token = token_for(other)
    posts = [(f"/console/personas/{pid}", {**FULL, "slug": "", "name": "Hijacked"}),
             (f"/console/personas/{pid}/delete", {}), ("/console/personas/new", FULL),
             ("/console/personas/import", {"yaml": "name: Imported"})]
    for path, data in posts:
        r = other.post(path, data={**data, "csrf": token})
        assert r.status_code == 403 and "cannot do this" in r.text, path
    assert public(stack, slug) == before and count(stack) == 1
    assert owner.get(f"/console/personas/{pid}").status_code == 200


def test_another_tenants_persona_is_not_found_on_every_url(console: Console) -> None:
    stack = console.stack
    slug = stack.persona(name="Private")
    before = public(stack, slug)
    stranger = console.signed_in("owner", tenant_id=stack.tenant()["tenant_id"])
    token = token_for(stranger)
    for ref in (before["id"], slug):
        for path in (f"/console/personas/{ref}", f"/console/personas/{ref}/delete", f"/console/personas/{ref}/export"):
            r = stranger.get(path)
            assert r.status_code == 404 and "Private" not in r.text and "<h1>Not found</h1>" in r.text, path
        r = stranger.post(f"/console/personas/{ref}", data={**FULL, "slug": "", "name": "Taken over", "csrf": token})
        assert r.status_code == 404
        r = stranger.post(f"/console/personas/{ref}/delete", data={"csrf": token})
        assert r.status_code == 404
    assert public(stack, slug) == before
    assert "Private" not in stranger.get("/console/personas").text


def test_a_script_in_a_persona_is_text_on_every_page(console: Console) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    slug = with_topics(stack, name=SCRIPT, greeting=SCRIPT, description=SCRIPT, starters=[SCRIPT],
                       topics={"denied": [{"id": "x", "examples": [SCRIPT], "refusal": SCRIPT}]})
    pid = public(stack, slug)["id"]
    for path in ("/console/personas", f"/console/personas/{pid}", f"/console/personas/{pid}/delete"):
        html = owner.get(path).text
        assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    assert element(owner.get(f"/console/personas/{pid}").text, "f-name")["attrs"]["value"] == SCRIPT


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"WIDGET_DATA_DIR": str(stack.settings.data_dir), "WIDGET_DATABASE_URL": stack.settings.resolved_database_url,
           "WIDGET_SECRET_KEY": "test-secret", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "widget_server", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_import_then_export_round_trips_in_the_clis_format(any_console: Console) -> None:
    stack, owner = any_console.stack, any_console.signed_in("owner")
    source = {"slug": "imported", "name": "Imported Ivy", "description": "From a file", "greeting": "Hello",
              "starters": ["One", "Two"], "language": "de", "system_prompt": "Be kind.\nAlways.",
              "provider": {"kind": "openai", "model": "echo", "temperature": 1.5}}
    r = owner.post("/console/personas/import", files={"file": ("ivy.yaml", yaml.safe_dump(source).encode())},
                   data={"csrf": token_for(owner, "/console/personas/import"), "yaml": ""})
    assert r.status_code == 303 and r.headers["location"].endswith("notice=imported"), r.text
    pid = r.headers["location"].split("/")[-1].split("?")[0]
    exported = owner.get(f"/console/personas/{pid}/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/yaml")
    assert exported.headers["content-disposition"] == 'attachment; filename="imported.yaml"'
    doc = yaml.safe_load(exported.text)
    assert {k: doc[k] for k in source if k != "provider"} == {k: v for k, v in source.items() if k != "provider"}
    assert doc["provider"] | {"api_key_set": False} == {**source["provider"], "base_url": None, "max_tokens": None,
                                                       "api_key": None, "api_key_set": False}
    by_cli = cli(stack, "persona", "export", "imported", "--tenant", stack.tenant_id)
    assert by_cli.returncode == 0, by_cli.stderr
    assert exported.text == by_cli.stdout  # the CLI's format, byte for byte
    before = public(stack, pid)
    again = owner.post("/console/personas/import", data={"yaml": exported.text,
                                                        "csrf": token_for(owner, "/console/personas/import")})
    assert again.status_code == 303 and again.headers["location"] == f"/console/personas/{pid}?notice=replaced"
    assert {k: v for k, v in public(stack, pid).items()} == before and count(stack) == 1


@pytest.mark.parametrize(("text", "status", "shown"), [
    ("name: [unclosed", 400, "this is not valid YAML"),
    ("- just\n- a list\n", 400, "a mapping of a persona"),
    ("name: Ok\nbase: &b {kind: local}\nprovider: *b\n", 400, "anchors and aliases"),
    ("name: Ok\nprovider:\n  temperature: 9\n", 422, "provider.temperature"),
    ("name: Ok\nsurprise: 1\n", 400, "surprise"),
    ("", 400, "choose a YAML file, or paste the YAML"),
])
def test_a_refused_import_says_why_and_where(console: Console, text: str, status: int, shown: str) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    r = owner.post("/console/personas/import", data={"yaml": text, "csrf": token_for(owner, "/console/personas")})
    assert r.status_code == status and shown in element(r.text, "import-errors")["text"], r.text
    assert element(r.text, "import-yaml")["text"] == text and count(stack) == 0
    if status == 422:
        assert "(line 3)" in element(r.text, "import-errors")["text"]


HOSTILE = st.one_of(st.text(max_size=300), st.sampled_from([
    "", " ", "\x00", "NaN", "1e400", "-1", "9" * 40, "0.7", SCRIPT, "../../etc", "local", "openai", "refuse",
    "\u202eevil", "a\u200bb", "x" * 2001]))
FORM_KEYS = ["name", "slug", "description", "system_prompt", "greeting", "starters", "avatar_url", "language",
             "provider.kind", "provider.model", "provider.base_url", "provider.temperature", "provider.max_tokens",
             "provider.api_key", "provider.api_key_remove", "topics.off_topic", "topics.allowed.0.id",
             "topics.allowed.0.examples", "topics.denied.3.id", "topics.denied.3.examples", "topics.denied.3.refusal",
             "topics.allowed.999.remove", "unknown", "csrf2"]
ANSWERS = {303, 400, 409, 422}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(FORM_KEYS), HOSTILE, max_size=12))
def test_hostile_forms_get_a_clear_answer_and_never_half_a_change(console: Console, data: dict[str, str]) -> None:
    stack = console.stack
    if not hasattr(console, "owner"):
        console.owner = console.signed_in("owner")  # type: ignore[attr-defined]
        console.pid = public(stack, stack.persona(name="Target"))["id"]  # type: ignore[attr-defined]
    owner: httpx.Client = console.owner  # type: ignore[attr-defined]
    pid: str = console.pid  # type: ignore[attr-defined]
    token = token_for(owner)
    before, n = public(stack, pid), count(stack)
    r = owner.post(f"/console/personas/{pid}", data={**data, "csrf": token})
    assert r.status_code in ANSWERS, r.text
    if r.status_code != 303:
        assert public(stack, pid) == before and "error-summary" in r.text
    made = owner.post("/console/personas/new", data={**data, "csrf": token})
    assert made.status_code in ANSWERS, made.text
    assert count(stack) == n + (made.status_code == 303)
    if made.status_code != 303:
        assert "error-summary" in made.text
    imported = owner.post("/console/personas/import", data={"yaml": yaml.safe_dump(data), "csrf": token})
    assert imported.status_code in ANSWERS and (imported.status_code == 303 or "import-errors" in imported.text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=st.text(min_size=1, max_size=80).filter(lambda s: s.strip(".") and s not in ("new", "import")),
       tail=st.sampled_from(["", "/delete", "/export"]))
@example(ref="/", tail="").via("a CI run")
@example(ref="a/", tail="")
@example(ref="/", tail="/delete")
def test_any_persona_path_is_a_404_page(console: Console, ref: str, tail: str) -> None:
    if not hasattr(console, "owner"):
        console.owner = console.signed_in("owner")  # type: ignore[attr-defined]
    owner: httpx.Client = console.owner  # type: ignore[attr-defined]
    from urllib.parse import quote

    # The server sees %2F as "/", and a path ending in "/" redirects to the one without it (Starlette strips
    # every trailing slash): a ref of slashes alone is the persona list, anything else a 404 page.
    r = owner.get(f"/console/personas/{quote(ref, safe='')}{tail}", follow_redirects=True)
    listing = not ref.strip("/") and not tail
    assert r.status_code == (200 if listing else 404), r.text
    assert r.headers["content-type"].startswith("text/html")
    if listing:
        assert r.url.path == "/console/personas"


# In Chromium. Users are made before the browser starts: Playwright's sync API holds this thread's event loop.

@pytest.fixture
def people(console: Console) -> dict[str, str]:
    """The e-mail of an owner and of a viewer of the stack's tenant."""
    return {role: str(console.user(role)["email"]) for role in ("owner", "viewer")}


@pytest.fixture
def chromium(people: dict[str, str]) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@contextlib.contextmanager
def signed_in_page(browser: Browser, url: str, email: str, width: int = 1280, bypass_csp: bool = False,
                   confirm: bool = False) -> Iterator[tuple[Page, list[str]]]:
    """A signed-in page, and what it logged about the Content Security Policy and any dialog that opened (answered
    yes with `confirm`, else no)."""
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=bypass_csp)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.accept() if confirm else d.dismiss()))
    try:
        browser_sign_in(page, url, email)
        yield page, problems
    finally:
        context.close()


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url}: the page is {width[0]} px wide in a {width[1]} px window"


@needs_chromium
def test_an_owner_creates_a_persona_in_the_browser_and_sees_an_error_beside_its_field(
        console: Console, people: dict[str, str], chromium: Browser) -> None:
    stack = console.stack
    with signed_in_page(chromium, stack.url, people["owner"]) as (page, problems):
        page.goto(stack.url + "/console/personas")
        page.get_by_role("link", name="New persona").click()
        page.get_by_label("Name", exact=True).fill("Browser Bella")
        page.get_by_label("Greeting").fill("Hi from the browser")
        page.get_by_label("Starter prompts (one per line)").fill("First\nSecond")
        page.get_by_label("Kind").select_option("openai")
        page.get_by_label("Model").fill("echo")
        page.get_by_text("Add a denied topic").focus()
        page.keyboard.press("Enter")  # the blank topic opens from the keyboard
        denied = page.locator("details", has_text="Add a denied topic")
        denied.get_by_label("Id").fill("medical")
        denied.get_by_label("Examples (one per line)").fill("what dose of ibuprofen\nis this rash serious")
        denied.get_by_label("Refusal").fill("Please ask a doctor.")
        page.get_by_role("button", name="Create persona").click()
        expect(page.get_by_role("status")).to_have_text("The persona was created.", timeout=60_000)  # model loads
        made = public(stack, "browser-bella")
        assert made["greeting"] == "Hi from the browser" and made["starters"] == ["First", "Second"]
        assert made["topics"]["denied"] == [{"id": "medical", "description": None, "refusal": "Please ask a doctor.",
                                             "examples": ["what dose of ibuprofen", "is this rash serious"]}]
        expect(page.get_by_role("group", name="Denied topic 1: medical")).to_be_visible()

        page.get_by_label("Slug").fill("Not a slug")
        page.get_by_label("Temperature").fill("3")
        page.get_by_role("button", name="Save changes").click()
        slug = page.get_by_label("Slug")
        expect(slug).to_have_attribute("aria-invalid", "true")
        expect(slug).to_have_value("Not a slug")
        expect(slug).to_have_accessible_description(re.compile("lowercase letters, digits and inner dashes"))
        expect(page.get_by_label("Temperature")).to_have_accessible_description(
            re.compile("less than or equal to 2"))
        expect(page.get_by_role("alert")).to_contain_text("The changes were not saved")
        assert public(stack, "browser-bella") == made
        page.get_by_role("link", name="← All personas").click()
        expect(page.get_by_role("link", name="Browser Bella")).to_be_visible()
        assert problems == []


@needs_chromium
def test_a_script_named_persona_is_text_and_opens_no_dialog(console: Console, people: dict[str, str],
                                                            chromium: Browser) -> None:
    stack = console.stack
    pid = public(stack, stack.persona(name=SCRIPT, greeting=SCRIPT))["id"]
    with signed_in_page(chromium, stack.url, people["owner"]) as (page, problems):
        for path in ("/console/personas", f"/console/personas/{pid}", f"/console/personas/{pid}/delete"):
            page.goto(stack.url + path)
            expect(page.get_by_text(SCRIPT).first).to_be_visible()
        expect(page.get_by_role("button", name=f"Delete {SCRIPT}")).to_be_visible()
        assert problems == []  # no alert(1), and nothing the CSP had to stop


@needs_chromium
def test_delete_asks_first_in_the_browser(console: Console, people: dict[str, str], chromium: Browser) -> None:
    stack = console.stack
    pid = public(stack, stack.persona(name="Short Lived"))["id"]
    with signed_in_page(chromium, stack.url, people["owner"]) as (page, problems):
        page.goto(f"{stack.url}/console/personas/{pid}")
        page.get_by_role("link", name="Delete…").click()
        expect(page.get_by_role("heading", name="Delete this persona?")).to_be_visible()
        assert rest(stack, pid).status_code == 200
        page.get_by_role("button", name="Delete Short Lived").click()
        expect(page.get_by_role("status")).to_have_text("The persona was deleted.")
        assert rest(stack, pid).status_code == 404
        assert problems == []


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_every_persona_page_passes_axe_and_fits_its_width(console: Console, people: dict[str, str],
                                                          chromium: Browser, width: int) -> None:
    stack = console.stack
    pid = public(stack, with_topics(stack, name="Axe Ada", starters=["One", "Two"],
                                    topics={"denied": [{"id": "medical", "examples": ["dose"]}]}))["id"]
    pages = ["/console/personas", "/console/personas/new", f"/console/personas/{pid}",
             f"/console/personas/{pid}/delete", "/console/personas/import"]
    with signed_in_page(chromium, stack.url, people["owner"], width, bypass_csp=True) as (page, _):
        for path in pages:
            page.goto(stack.url + path)
            expect(page.locator("h1")).to_be_visible()
            found = axe_violations(page)
            assert found == [], (path, json.dumps(found, indent=1))
            no_horizontal_scroll(page)
        page.goto(stack.url + f"/console/personas/{pid}")  # a form with errors, and an import refused
        page.get_by_label("Slug").fill("Not a slug")
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("alert")).to_be_visible()
        page.goto(stack.url + "/console/personas/import")
        page.get_by_label("Or paste the YAML").fill("name: [")
        page.get_by_role("button", name="Import").click()
        expect(page.get_by_role("alert")).to_contain_text("not valid YAML")
        found = axe_violations(page)
        assert found == [], json.dumps(found, indent=1)
        no_horizontal_scroll(page)
    with signed_in_page(chromium, stack.url, people["viewer"], width, bypass_csp=True) as (page, _):
        page.goto(stack.url + f"/console/personas/{pid}")  # read-only
        found = axe_violations(page)
        assert found == [], json.dumps(found, indent=1)
        no_horizontal_scroll(page)


def test_the_list_pages_through_many_personas_without_a_gap(console: Console) -> None:
    slugs = {console.stack.persona() for _ in range(53)}
    client = console.signed_in("viewer")
    seen: list[str] = []
    url = "/console/personas"
    while url:
        r = client.get(url)
        assert r.status_code == 200 and "53 personas" in r.text
        seen += re.findall(r"<code>(p-[0-9a-f]{8})</code>", r.text)
        found = re.search(r'href="(/console/personas\?after=[^"]+)">Next', r.text)
        url = html.unescape(found.group(1)) if found else ""
    assert len(seen) == 53 and set(seen) == slugs
    assert "No more personas." in client.get("/console/personas?after=zzzz").text
