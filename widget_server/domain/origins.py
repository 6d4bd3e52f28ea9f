"""Origins: the rules a publishable key's allowlist holds, and whether a browser's Origin matches one.

A rule is an exact origin (`https://shop.example.com`, `http://127.0.0.1:8000`) or one wildcard level
(`https://*.example.com` matches `https://a.example.com`, not `example.com` and not `a.b.example.com`). A wildcard
over a public suffix (`https://*.co.uk`, `https://*.github.io`: anyone can register a name under them) is
refused, with the Public Suffix List bundled in `publicsuffixlist` (offline). Anything that is not a plain host
(percent escapes, backslashes, NUL, spaces, an empty label) is refused as a rule and never matches as an Origin:
fail closed.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from widget_server.errors import InvalidRequest

DEFAULT_PORTS = {"http": 80, "https": 443}
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def _host(host: str) -> str | None:
    """The host in canonical form (lower case, IDNA for non-ASCII), or None when it is not a plain host."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    labels = ascii_host.lower().split(".")
    if len(ascii_host) > 253 or not all(LABEL.match(label) for label in labels):
        return None
    return ".".join(labels)


def normalize_rule(rule: str) -> str:
    """`scheme://host[:port]` with the default port dropped, or `InvalidRequest` naming the rule."""
    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(f"not an origin: {rule!r} ({why})", details={"origin": rule})

    text = rule.strip()
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise refuse("bad port") from None
    netloc = parts.netloc
    if parts.scheme not in DEFAULT_PORTS or not netloc or parts.path not in ("", "/") or parts.query \
            or parts.fragment or "@" in netloc or text.endswith("?") or text.endswith("#"):
        raise refuse("expected scheme://host[:port]")
    raw = (parts.hostname or "").rstrip(".")
    wildcard = raw.startswith("*.")
    host = _host(raw[2:] if wildcard else raw)
    if host is None or "*" in raw[2 if wildcard else 0:]:
        raise refuse("the host is not a plain host name or address")
    if wildcard:
        if host.count(".") < 1 or _suffixes().is_public(host):
            raise refuse(f"a wildcard must be over a registered domain, not the public suffix {host!r}")
        host = "*." + host
    keep = port if port and port != DEFAULT_PORTS[parts.scheme] else None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{keep}" if keep else "")


def allowed(origin: str | None, rules: list[str]) -> bool:
    """Fail closed: a missing, malformed or unlisted origin is refused."""
    if not origin or origin == "null":
        return False
    try:
        origin = normalize_rule(origin)
    except InvalidRequest:
        return False
    if "*" in origin:
        return False
    scheme, rest = origin.split("://", 1)
    for rule in rules:
        if rule == origin:
            return True
        if "://*." in rule:
            rule_scheme, suffix = rule.split("://*.", 1)
            label, dot, tail = rest.partition(".")
            if rule_scheme == scheme and dot and tail == suffix and label:  # exactly one label more
                return True
    return False
