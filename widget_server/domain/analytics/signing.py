"""Webhook secrets and signatures.

A webhook's secret is never stored: it is derived from the server's secret key and the webhook's id and salt,
so a copy of the database reveals no secret (and rotating `WIDGET_SECRET_KEY` changes every webhook's secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def derive_secret(server_secret: str, webhook_id: str, salt: str) -> str:
    """`whsec_…`: HMAC-SHA256 of the server key over the webhook's id and salt."""
    mac = hmac.new(server_secret.encode(), f"webhook:{webhook_id}:{salt}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Widget-Signature` header: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
