"""Origin rules of publishable keys, and matching a browser's Origin against them (fail closed)."""

from __future__ import annotations

import pytest

from widget_server.domain.origins import allowed, normalize_rule
from widget_server.errors import InvalidRequest


@pytest.mark.parametrize(("rule", "normal"), [
    ("https://shop.example.com", "https://shop.example.com"),
    ("HTTPS://Shop.Example.com:443/", "https://shop.example.com"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://[::1]:8000", "http://[::1]:8000"),
    ("https://*.example.com", "https://*.example.com"),
    ("https://*.shop.co.uk", "https://*.shop.co.uk"),
    ("https://bäckerei.example", "https://xn--bckerei-5wa.example"),
])
def test_rules_are_normalized(rule: str, normal: str) -> None:
    assert normalize_rule(rule) == normal


@pytest.mark.parametrize("rule", [
    "https://*.co.uk", "https://*.github.io", "https://*.com", "https://*.example",  # wildcards over a public suffix
    "https://evil.com\\.example.com", "https://evil.com%2f.example.com", "https://a%00.example.com",
    "https://a b.example.com", "https://user@example.com", "https://example.com/path", "https://example.com?x",
    "https://example.com#top", "ftp://example.com", "https://*.*.example.com", "https://a.*.example.com",
    "https://example.com:99999", "https://-bad.example.com", "https://a..example.com", "notaurl",
])
def test_malformed_or_too_wide_rules_are_refused(rule: str) -> None:
    with pytest.raises(InvalidRequest):
        normalize_rule(rule)


@pytest.mark.parametrize(("origin", "ok"), [
    ("https://a.example.com", True),
    ("https://example.com", False),  # the wildcard is for names under it
    ("https://x.y.example.com", False),  # one level, as the README says
    ("http://a.example.com", False),  # another scheme
    ("https://a.example.com:8443", False),  # another port
    ("https://evil.com\\.example.com", False),
    ("https://a%2e.example.com", False),
    ("https://aexample.com", False),
    ("https://shop.example", True),
    ("https://shop.example:443", True),
    (None, False), ("null", False), ("", False),
])
def test_an_origin_matches_exactly_or_one_wildcard_level(origin: str | None, ok: bool) -> None:
    assert allowed(origin, ["https://*.example.com", "https://shop.example"]) is ok
