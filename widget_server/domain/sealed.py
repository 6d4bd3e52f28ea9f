"""Secrets a tenant hands the server for later use (a persona's own upstream API key), sealed at rest.

Unlike the server's own secrets (webhook and identity secrets are derived, never stored), these are the tenant's
and have to be given back to their endpoint, so they are encrypted: Fernet (AES-128-CBC with HMAC-SHA256, from
`cryptography`) under a key derived from `WIDGET_SECRET_KEY`. A copy of the database reveals none of them;
rotating `WIDGET_SECRET_KEY` makes them unreadable (set them again), as it changes webhook secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

PREFIX = "sealed:v1:"


class Sealer:
    def __init__(self, server_secret: str) -> None:
        key = hmac.new(server_secret.encode(), b"sealed-tenant-secrets", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return "Sealer(…)"

    def seal(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The secret, or None when it was sealed under another server key (or is not a sealed value)."""
        if not sealed.startswith(PREFIX):
            return None
        try:
            return self._fernet.decrypt(sealed[len(PREFIX):].encode()).decode()
        except InvalidToken:
            return None
