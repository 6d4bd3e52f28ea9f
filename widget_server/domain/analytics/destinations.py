"""Where a webhook may point: http(s) URLs whose host is, and resolves only to, public addresses (no SSRF).

Checked when a webhook is created and again before every delivery, which then connects to the address it
checked, so a host that resolves somewhere else later (DNS rebinding) reaches no internal service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

MAX_URL = 2000
RESOLVE_TIMEOUT_S = 3.0


class UnsafeURL(ValueError):
    """The URL is malformed, not http(s), or its host is not a public address."""


def parse_url(url: str) -> httpx.URL:
    """The URL if its shape is acceptable (no network involved)."""
    if len(url) > MAX_URL:
        raise UnsafeURL(f"must be at most {MAX_URL} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UnsafeURL(f"is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURL("must start with http:// or https://")
    if not parsed.host:
        raise UnsafeURL("has no host")
    if parsed.fragment:
        raise UnsafeURL("must not have a #fragment")
    return parsed


# IPv6 forms that carry an IPv4 address in their last 32 bits: judged by that address (::7f00:1 is 127.0.0.1).
EMBEDDING = tuple(ipaddress.IPv6Network(n) for n in (
    "::/96",  # IPv4-compatible (deprecated)
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",  # NAT64, well-known prefix: 64:ff9b::a9fe:a9fe reaches 169.254.169.254
))
# Deprecated or local ranges Python still calls global: refused outright.
REFUSED = tuple(ipaddress.IPv6Network(n) for n in (
    "fec0::/10",  # site-local (deprecated)
    "64:ff9b:1::/48",  # NAT64, local use
    "3ffe::/16",  # 6bone (returned)
    "5f00::/8",  # 6bone
))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address wraps (mapped, compatible, translated, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in EMBEDDING) and int(address) & 0xFFFFFFFF > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None or any(address in net for net in REFUSED):
            return False  # Teredo tunnels to an obfuscated IPv4 address: nothing to check it against
        inner = _embedded_ipv4(address)
        if inner is not None:
            return _public(inner)
    return address.is_global and not address.is_multicast


async def resolve(url: httpx.URL, *, allow_private: bool) -> str | None:
    """The public address to connect to; None (connect by name) when private addresses are allowed.

    Raises `UnsafeURL` when the host does not resolve or any of its addresses is loopback, private,
    link-local or otherwise not global."""
    if allow_private:
        return None
    host = url.raw_host.decode("ascii")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, url.port or (443 if url.scheme == "https" else 80), type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
        except (OSError, TimeoutError):
            raise UnsafeURL(f"host {host} does not resolve") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    refused = [a for a in addresses if not _public(a)]
    if refused or not addresses:
        raise UnsafeURL(f"host {host} is or resolves to a non-public address ({refused[0] if refused else 'none'})")
    return str(addresses[0])
