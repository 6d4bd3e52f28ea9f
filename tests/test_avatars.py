"""Offline avatars (issue 17): the portrait as a pure function of its attributes (byte-identical across processes,
safe and small for every combination), the generate-image endpoints of personas and test personas on SQLite and
PostgreSQL, the served image's headers, the opt-in images endpoint against a fake local one, and the avatar shown
by the widget on another origin under a strict CSP in Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args
from xml.etree import ElementTree

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import Stack
from tests.support.browser import Site, chromium, host_pages, needs_chromium, open_and_send, widget
from tests.support.errors import assert_error
from tests.support.servers import serve_in_thread
from tests.test_widget_browser import BAKERY, README_SHOTS, finished
from widget_server.domain.avatars import palette
from widget_server.domain.avatars.attributes import VOCABULARIES, AvatarAttributes, HairStyle, derived, resolve
from widget_server.domain.avatars.svg import render
from widget_server.errors import InvalidRequest

ROOT = Path(__file__).resolve().parents[1]
SVG_NS = "{http://www.w3.org/2000/svg}"
TAGS = {"svg", "defs", "clipPath", "g", "rect", "circle", "ellipse", "path"}
ADA = {"gender": "female", "age": 34, "skin_tone": "light_medium", "hair_color": "auburn", "hair_texture": "curly",
       "eye_color": "green", "face_shape": "heart", "vision_correction": "none"}
# Pinned: a change to a shape, a colour or the order of elements changes these, and must be deliberate (it changes
# every stored avatar's look on regeneration).
GOLDEN = {
    "ada": "4bfb150af9f6139e115acf007b7f2f0b1692bfd15674af8d8d515b72e6ea9e69",
    "derived:per_golden": "6b5e77ec08e46ee2c6149827b1cadbc5bddbc414385a98eef6aaa44cc5580e6f",
}
HAIR_STYLES = get_args(HairStyle)
ATTRS = st.builds(AvatarAttributes, **{name: st.sampled_from(values) for name, values in VOCABULARIES.items()},
                  age=st.integers(18, 100), hair_style=st.none() | st.sampled_from(HAIR_STYLES))


def attrs(**fields: Any) -> AvatarAttributes:
    return AvatarAttributes(**{**ADA, **fields})


# the portrait, a pure function


def test_the_same_attributes_give_the_same_bytes_in_another_process() -> None:
    script = ("import json, sys; from widget_server.domain.avatars.attributes import AvatarAttributes; "
              "from widget_server.domain.avatars.svg import render; "
              "sys.stdout.buffer.write(render(AvatarAttributes(**json.loads(sys.argv[1]))))")
    other = subprocess.run([sys.executable, "-c", script, json.dumps(ADA)], capture_output=True, check=True,
                           cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345"}).stdout
    assert other == render(attrs()) == render(AvatarAttributes(**ADA))


def test_golden_hashes() -> None:
    got = {"ada": hashlib.sha256(render(attrs())).hexdigest(),
           "derived:per_golden": hashlib.sha256(render(resolve({}, "per_golden"))).hexdigest()}
    assert got == GOLDEN


@pytest.mark.parametrize("name", sorted(VOCABULARIES))
def test_each_value_of_an_attribute_draws_a_different_portrait(name: str) -> None:
    """Every value of every attribute shows; genders are shown by presentation, so one per presentation."""
    values = VOCABULARIES[name] if name != "gender" else ("male", "female", "non_binary")
    svgs = {render(attrs(**{name: v, "age": 30})) for v in values}
    assert len(svgs) == len(values)


def test_age_shows_in_lines_and_grey_hair() -> None:
    ages = [25, 45, 55, 62, 70, 85]
    svgs = [render(attrs(age=a, hair_texture="straight")) for a in ages]
    assert len(set(svgs)) == len(ages)
    grey, white = palette.HAIR["gray"][0].encode(), palette.HAIR["white"][0].encode()
    assert grey not in svgs[0] and grey in svgs[2] and grey in svgs[4] and white in svgs[5]


def test_hair_style_and_glasses_show() -> None:
    styles = {render(attrs(hair_style=style, age=30)) for style in HAIR_STYLES}
    assert len(styles) >= 8, "bald, buzz cut, updo, afro and the short, medium and long cuts all differ"
    auburn = palette.HAIR["auburn"][0].encode()
    assert auburn not in render(attrs(hair_style="bald")) and auburn in render(attrs(hair_style="bob"))
    assert palette.FRAME.encode() in render(attrs(vision_correction="glasses"))
    assert palette.FRAME.encode() not in render(attrs(vision_correction="contacts"))


def test_a_generated_persons_data_is_drawn_as_it_is() -> None:
    """PersonaGen's `data` (what GET /v1/persona answers) under `person`; fields not drawn are ignored."""
    person = {"name": {"first_name": "Ada"}, "demographics": {"gender": "female", "age": 34, "income": "50k_to_75k"},
              "physical": {**{k: ADA[k] for k in ("skin_tone", "hair_color", "hair_texture", "eye_color",
                                                  "face_shape", "vision_correction")},
                           "height": {"cm": 168}, "physical_description": "<script>"}}
    assert resolve({"person": person}, "x") == attrs()
    assert resolve({"person": person, "age": 70}, "x") == attrs(age=70), "a flat attribute wins"
    for bad in ({"person": []}, {"person": {"physical": "tall"}}, {"person": {"physical": {"skin_tone": "blue"}}}):
        with pytest.raises(InvalidRequest):
            resolve(bad, "x")


def test_missing_attributes_are_derived_from_the_seed_the_same_way_every_time() -> None:
    assert derived("per_1") == derived("per_1") != derived("per_2")
    assert resolve({"skin_tone": "deep"}, "per_1").skin_tone == "deep"
    assert resolve({"skin_tone": "deep"}, "per_1").hair_color == derived("per_1")["hair_color"]


@pytest.mark.parametrize("given", [
    {"skin_tone": "<script>alert(1)</script>"}, {"skin_tone": "Fair"}, {"age": 17}, {"age": "40"}, {"age": True},
    {"hair_color": None}, {"eye_colour": "blue"}, {"face_shape": ["oval"]}, [], "oval",
])
def test_a_value_outside_the_vocabulary_is_refused(given: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve(given, "per_1")
    assert caught.value.code == "avatar.invalid_attribute"


def _checked(svg: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(svg)
    assert root.tag == SVG_NS + "svg" and root.get("viewBox") == "0 0 128 128"
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    for element in root.iter():
        assert element.tag.removeprefix(SVG_NS) in TAGS, element.tag
        for key, value in element.attrib.items():
            assert "href" not in key.lower() and not key.lower().startswith("on"), key
            for ref in re.findall(r"url\(([^)]*)\)", value):
                assert ref.startswith("#") and ref[1:] in ids, value
            if key in ("fill", "stroke"):
                assert value == "none" or value in palette.ALL, (key, value)
    return root


@settings(max_examples=400, deadline=None)
@given(person=ATTRS)
def test_every_portrait_is_valid_inert_small_svg(person: AvatarAttributes) -> None:
    svg = render(person)
    assert len(svg) < 6 * 1024
    lowered = svg.lower().replace(b'xmlns="http://www.w3.org/2000/svg"', b"", 1)
    for banned in (b"<script", b"foreignobject", b"href", b"http", b"//", b"javascript", b"<style", b"@import",
                   b"<image", b"<use", b"data:"):
        assert banned not in lowered
    _checked(svg)
    assert render(person) == svg


def test_the_largest_portrait_is_under_6_kb() -> None:
    sizes = [len(render(attrs(hair_texture=t, gender=g, age=a))) for t in VOCABULARIES["hair_texture"]
             for g in ("male", "female", "agender") for a in (30, 55, 70)]
    assert max(sizes) < 6 * 1024, max(sizes)


# the endpoints


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def generate(stack: Stack, path: str, body: Any = None, sk: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sk or stack.sk}"}
    if body is None:
        return httpx.post(f"{stack.url}{path}/generate-image", headers=headers)
    return httpx.post(f"{stack.url}{path}/generate-image", json=body, headers=headers)


def persona_id(stack: Stack) -> str:
    r = httpx.get(f"{stack.url}/v1/personas/{stack.persona()}", headers=stack.auth)
    return str(r.json()["id"])


def test_a_persona_gets_a_served_avatar_that_regenerating_replaces(db_stack: Stack) -> None:
    stack, pid = db_stack, persona_id(db_stack)
    first = generate(stack, f"/v1/personas/{pid}")
    assert first.status_code == 201, first.text
    avatar, persona = first.json()["avatar"], first.json()["persona"]
    assert re.fullmatch(re.escape(stack.url) + r"/avatars/av_[0-9a-z]{26}\.svg", avatar["url"])
    assert persona["avatar_url"] == avatar["url"] and avatar["attributes"] == derived(pid) | avatar["attributes"]
    assert httpx.get(f"{stack.url}/v1/personas/{pid}", headers=stack.auth).json()["avatar_url"] == avatar["url"]
    image = httpx.get(avatar["url"])  # no key: an <img> on a customer's page sends none
    assert image.status_code == 200 and image.content == render(resolve({}, pid))
    assert hashlib.sha256(image.content).hexdigest() == avatar["sha256"] and len(image.content) == avatar["bytes"]

    again = generate(stack, f"/v1/personas/{pid}", {"skin_tone": "deep", "hair_texture": "coily"})
    assert again.status_code == 200, again.text
    new = again.json()["avatar"]
    assert new["url"] != avatar["url"] and new["sha256"] != avatar["sha256"]
    assert new["attributes"]["skin_tone"] == "deep" and new["attributes"]["eye_color"] == derived(pid)["eye_color"]
    assert httpx.get(avatar["url"]).status_code == 404, "the old image is gone"
    assert httpx.get(new["url"]).content == render(resolve({"skin_tone": "deep", "hair_texture": "coily"}, pid))
    same = generate(stack, f"/v1/personas/{pid}", {"skin_tone": "deep", "hair_texture": "coily"}).json()["avatar"]
    assert same["sha256"] == new["sha256"], "the same attributes draw the same image"

    assert httpx.delete(f"{stack.url}/v1/personas/{pid}", headers=stack.auth).status_code == 204
    assert_error(httpx.get(same["url"]), 404, "avatar.not_found")


def test_the_served_image_has_the_headers_of_an_inert_cross_origin_image(stack: Stack) -> None:
    url = generate(stack, f"/v1/personas/{persona_id(stack)}").json()["avatar"]["url"]
    r = httpx.get(url, headers={"Origin": "https://shop.example"})
    h = r.headers
    assert h["content-type"] == "image/svg+xml"
    assert h["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert h["x-content-type-options"] == "nosniff" and h["cross-origin-resource-policy"] == "cross-origin"
    assert h["access-control-allow-origin"] == "*" and "set-cookie" not in h
    assert h["cache-control"] == "public, max-age=31536000, immutable"
    assert h["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    for tag in (h["etag"], f'W/{h["etag"]}', f'"other", {h["etag"]}', "*"):
        cached = httpx.get(url, headers={"If-None-Match": tag})
        assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == h["etag"]
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert httpx.head(url).headers["content-length"] == str(len(r.content))
    assert_error(httpx.get(url.replace(".svg", ".png")), 404, "avatar.not_found")


@pytest.mark.parametrize("path", ["/avatars/av_00000000000000000000000000.svg", "/avatars/x.svg",
                                  "/avatars/..%2F..%2Fetc.svg", "/avatars/per_1.svg"])
def test_an_unknown_avatar_is_a_404(stack: Stack, path: str) -> None:
    assert_error(httpx.get(stack.url + path), 404)


def test_a_test_persona_gets_avatar_url_and_image_url(db_stack: Stack) -> None:
    stack = db_stack
    made = httpx.post(f"{stack.url}/v1/test-personas", json={"name": "Impatient"}, headers=stack.auth).json()
    assert made["avatar_url"] is None and made["imageUrl"] is None
    r = generate(stack, f"/v1/test-personas/{made['id']}", {"age": 72, "gender": "male"})
    assert r.status_code == 201, r.text
    url = r.json()["avatar"]["url"]
    assert r.json()["persona"]["imageUrl"] == r.json()["persona"]["avatar_url"] == url
    listed = httpx.get(f"{stack.url}/v1/test-personas", headers=stack.auth).json()["data"]
    assert [p["imageUrl"] for p in listed] == [url]
    kept = httpx.put(f"{stack.url}/v1/test-personas/{made['id']}", json={"name": "Patient"}, headers=stack.auth)
    assert kept.json()["imageUrl"] == url, "a PUT of the tenant's fields keeps the generated image"
    assert httpx.get(url).content == render(resolve({"age": 72, "gender": "male"}, made["id"]))
    assert httpx.delete(f"{stack.url}/v1/test-personas/{made['id']}", headers=stack.auth).status_code == 204
    assert httpx.get(url).status_code == 404


def test_another_tenants_persona_is_a_404_and_changes_nothing(stack: Stack) -> None:
    pid = persona_id(stack)
    tid = httpx.post(f"{stack.url}/v1/test-personas", json={"name": "Mine"}, headers=stack.auth).json()["id"]
    other = stack.tenant()["sk"]
    assert_error(generate(stack, f"/v1/personas/{pid}", sk=other), 404, "persona.not_found")
    assert_error(generate(stack, f"/v1/test-personas/{tid}", sk=other), 404, "test_persona.not_found")
    assert httpx.get(f"{stack.url}/v1/personas/{pid}", headers=stack.auth).json()["avatar_url"] is None
    assert_error(generate(stack, "/v1/personas/nope"), 404, "persona.not_found")
    assert_error(httpx.post(f"{stack.url}/v1/personas/{pid}/generate-image"), 401)


def source_enum(stack: Stack) -> list[str]:
    doc = httpx.get(f"{stack.url}/openapi.json").json()
    return doc["components"]["schemas"]["GenerateImageBody"]["properties"]["source"]["enum"]  # type: ignore[no-any-return]


def test_a_bad_attribute_is_a_400_and_keeps_the_current_avatar(stack: Stack) -> None:
    pid = persona_id(stack)
    url = generate(stack, f"/v1/personas/{pid}").json()["avatar"]["url"]
    for body in ({"skin_tone": "<script>"}, {"age": 5}, {"colour": "red"}, {"source": "dalle"}, [1]):
        err = assert_error(generate(stack, f"/v1/personas/{pid}", body), 400, "avatar.invalid_attribute")
        assert err["type"] == "invalid_request"
    assert_error(generate(stack, f"/v1/personas/{pid}", {"source": "openai"}), 400, "avatar.source_unavailable")
    assert source_enum(stack) == ["svg"], "the document offers openai only where the server has it"
    r = httpx.post(f"{stack.url}/v1/personas/{pid}/generate-image", content=b"{", headers=stack.auth)
    assert_error(r, 400, "request.invalid_json")
    assert httpx.get(f"{stack.url}/v1/personas/{pid}", headers=stack.auth).json()["avatar_url"] == url
    assert httpx.get(url).status_code == 200


PERSONAS: dict[str, str] = {}
BODY_VALUES = {name: st.sampled_from(values) | st.text(max_size=12) for name, values in VOCABULARIES.items()}
JSON = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional={**BODY_VALUES, "age": st.integers(0, 130) | JSON,
                                                "source": st.sampled_from(["svg", "openai", "x"]), "junk": JSON})
       | JSON)
def test_any_body_draws_the_portrait_it_names_or_is_a_clear_400(stack: Stack, body: Any) -> None:
    if stack.url not in PERSONAS:  # one persona for every example (the fixture is not made anew per example)
        PERSONAS[stack.url] = persona_id(stack)
    pid = PERSONAS[stack.url]
    r = generate(stack, f"/v1/personas/{pid}", body)
    if r.status_code in (200, 201):
        avatar = r.json()["avatar"]
        assert httpx.get(avatar["url"]).content == render(resolve(avatar["attributes"], pid))
        return
    err = assert_error(r, 400)
    assert err["code"] in {"avatar.invalid_attribute", "avatar.source_unavailable"}, r.text


# the opt-in images endpoint, a fake one on loopback


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x1d\x4e\xd8")) + chunk(b"IEND", b""))


class Images:
    """`POST /v1/images/generations`: the model `png` answers a PNG, `html` something else, `down` a 500."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def generate(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.prompts.append(body["prompt"])
        if body["model"] == "down":
            return JSONResponse({"error": {"message": "down"}}, status_code=500)
        data = tiny_png() if body["model"] == "png" else b"<html><script>alert(1)</script></html>"
        return JSONResponse({"created": 1, "data": [{"b64_json": base64.b64encode(data).decode()}]})


@pytest.fixture(scope="module")
def images() -> Iterator[tuple[Images, str]]:
    fake = Images()
    with serve_in_thread(Starlette(routes=[Route("/v1/images/generations", fake.generate, methods=["POST"])])) as url:
        yield fake, url + "/v1"


def test_the_images_endpoint_is_used_when_configured_and_asked_for(stack_factory: Callable[..., Stack],
                                                                   images: tuple[Images, str]) -> None:
    fake, url = images
    stack = stack_factory(images_base_url=url, images_model="png", images_api_key="sk-images")
    pid = persona_id(stack)
    drawn = generate(stack, f"/v1/personas/{pid}")
    assert drawn.status_code == 201 and drawn.json()["avatar"]["media_type"] == "image/svg+xml", "svg by default"
    r = generate(stack, f"/v1/personas/{pid}", {"source": "openai", "skin_tone": "olive", "hair_texture": "wavy"})
    assert r.status_code == 200, r.text
    avatar = r.json()["avatar"]
    assert avatar["media_type"] == "image/png" and avatar["url"].endswith(".png")
    served = httpx.get(avatar["url"])
    assert served.headers["content-type"] == "image/png" and served.content == tiny_png()
    assert "olive skin" in fake.prompts[-1] and "wavy hair" in fake.prompts[-1]
    assert source_enum(stack) == ["svg", "openai"]


@pytest.mark.parametrize("model", ["html", "down"])
def test_a_bad_answer_of_the_images_endpoint_is_a_502_and_stores_nothing(
        stack_factory: Callable[..., Stack], images: tuple[Images, str], model: str) -> None:
    stack = stack_factory(images_base_url=images[1], images_model=model)
    pid = persona_id(stack)
    assert_error(generate(stack, f"/v1/personas/{pid}", {"source": "openai"}), 502, "avatar.upstream_failed")
    assert httpx.get(f"{stack.url}/v1/personas/{pid}", headers=stack.auth).json()["avatar_url"] is None


# the widget on another origin, under a strict CSP that allows images from the server only


MILA = {"gender": "female", "age": 31, "skin_tone": "light_medium", "hair_color": "dark_brown",
        "hair_texture": "curly", "eye_color": "hazel", "face_shape": "heart", "vision_correction": "none"}


@needs_chromium
def test_the_widget_shows_the_generated_avatar_under_a_strict_csp(stack: Stack, tmp_path: Path) -> None:
    shots = README_SHOTS if os.environ.get("WIDGET_SCREENSHOTS") else tmp_path  # the README's on request
    with host_pages() as (pages, origin):
        keys = stack.tenant([origin])
        site = Site(stack, pages, origin, keys["sk"], keys["pk"])
        slug = site.persona("say-hours", name="Mila", greeting="Hi, I'm Mila from Crumb & Co. Ask me about bread, "
                            "cakes or opening hours.", starters=["Opening hours?", "Anything vegan?"])
        r = generate(stack, f"/v1/personas/{slug}", MILA, sk=site.sk)
        assert r.status_code == 201, r.text
        url = r.json()["avatar"]["url"]
        ws = stack.url.replace("http://", "ws://")
        css = BAKERY.split("<style>", 1)[1].split("</style>", 1)[0]  # the host page's own style, by its hash
        own_style = "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"
        csp = (f"default-src 'none'; script-src {stack.url}; connect-src {stack.url} {ws}; style-src {own_style}; "
               f"img-src {stack.url}; base-uri 'none'; form-action 'none'")  # what the README tells site owners
        assert "unsafe" not in csp
        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=2)
            page = context.new_page()
            page.add_init_script("""window.__violations = [];
              document.addEventListener('securitypolicyviolation',
                e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));""")
            page.goto(site.document(BAKERY.replace("BODY", site.tag(slug, accent="#9a3412", lang="en")),
                                    headers={"Content-Security-Policy": csp}))
            w = open_and_send(page, "When are you open?")
            img = widget(page).locator(".h .av img")
            expect(img).to_have_attribute("src", url)
            assert img.evaluate("i => i.complete && i.naturalWidth") > 0, "the avatar loaded"
            expect(finished(w).locator("li")).to_have_count(3)
            assert page.evaluate("window.__violations") == []
            panel = {"x": 860, "y": 96, "width": 420, "height": 300}  # the panel's header and first messages
            page.screenshot(path=str(shots / "widget-avatar.png"), clip=panel)
            context.close()
    assert (shots / "widget-avatar.png").stat().st_size > 10_000
