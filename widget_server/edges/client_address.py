"""The client's address: the peer's, or the one `X-Forwarded-For` names when the peer is a proxy that
`WIDGET_TRUSTED_PROXIES` names (addresses or CIDRs, comma-separated; "*" for any, "" for none).

Walking the header from the right, the first address that is not itself a trusted proxy is the client: a client
may put anything at the left of the header, so only what trusted proxies appended counts. Behind uvicorn's own
proxy handling (the same setting) the peer is already the client, and the header is not read twice.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection


def _trusted(address: str, rules: list[str]) -> bool:
    for rule in rules:
        if rule == "*" or rule == address:
            return True
        try:
            if ipaddress.ip_address(address) in ipaddress.ip_network(rule, strict=False):
                return True
        except ValueError:  # a host name (a test client's), or a rule that is not an address
            continue
    return False


def client_address(conn: HTTPConnection, trusted_proxies: str) -> str:
    peer = conn.client.host if conn.client else "unknown"
    rules = [r.strip() for r in trusted_proxies.split(",") if r.strip()]
    if not _trusted(peer, rules):
        return peer
    hops = [h.strip() for h in conn.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, rules):
            return hop[:64]
    return hops[0][:64] if hops else peer
