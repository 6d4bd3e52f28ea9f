"""`GET /embed.js`: the widget script within its size budget, served cached and compressed. No browser needed."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from widget_server.app import create_app
from widget_server.edges.embed_script import WIDGET, load, served
from widget_server.settings import Settings

BUDGET = 12 * 1024  # bytes of gzip -9, script and styles together (the widget issue's budget)


def gzip9(path: str) -> bytes:
    """The file as `gzip -9c` compresses it (the README's figure), or Python's gzip at level 9 without it."""
    if shutil.which("gzip"):
        return subprocess.run(["gzip", "-9c", path], capture_output=True, check=True).stdout
    with open(path, "rb") as f:
        return gzip.compress(f.read(), 9, mtime=0)


def test_the_widget_is_within_its_size_budget(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    raw = load().raw  # as served: without the source's whole-line comments
    (tmp_path / "widget.js").write_bytes(raw)
    zipped = gzip9(str(tmp_path / "widget.js"))
    with capsys.disabled():
        print(f"\nembed/widget.js: {len(WIDGET.read_bytes()):,} bytes with its comments, {len(raw):,} as served, "
              f"{len(zipped):,} bytes gzip -9 (budget {BUDGET:,})")
    assert len(zipped) <= BUDGET, f"{len(zipped) - BUDGET} bytes over the budget"


def test_only_whole_line_comments_are_left_out() -> None:
    source = rb"""/**
 * usage
 */
(function () {
  // a comment
  var url = 'https://x.example/a'; // kept: code before it
  /** @returns {Element} */
  var re = /\/\/not a comment/;
    /* two
       lines */
  return url + re;
})();"""
    assert served(source).split(b"\n")[1:] == [
        b"(function () {", b"  var url = 'https://x.example/a'; // kept: code before it",
        rb"  var re = /\/\/not a comment/;", b"  return url + re;", b"})();"]


@pytest.fixture
def client(settings_factory: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_factory()), base_url="http://localhost") as c:
        yield c


def test_embed_js_is_served_gzipped_with_a_strong_etag_and_304s(client: TestClient,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    raw = load().raw
    r = client.get("/embed.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.content == raw  # the client decodes the gzip body
    assert r.headers["content-encoding"] == "gzip"
    on_the_wire = int(r.headers["content-length"])
    with capsys.disabled():
        print(f"\n/embed.js: {len(raw):,} bytes raw, {on_the_wire:,} bytes as served (gzip)")
    assert on_the_wire <= BUDGET
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["vary"] == "Accept-Encoding"
    assert "max-age" in r.headers["cache-control"] and r.headers["cross-origin-resource-policy"] == "cross-origin"
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")

    again = client.get("/embed.js", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    plain = client.get("/embed.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == raw and plain.headers["etag"] != etag
