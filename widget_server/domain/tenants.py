"""Tenants, and the signed widget-session tokens they hand browsers (keys: `keys`; identities: `identity`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from widget_server.backends.storage import Storage
from widget_server.domain import keys
from widget_server.errors import InvalidRequest, TokenExpired, TokenInvalid
from widget_server.ids import new_id

SESSION_SALT = "widget-session"


async def create_tenant(storage: Storage, name: str) -> tuple[str, str]:
    """A new tenant and its first secret key; the key is returned once and stored only as a hash."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("tenant name must be 1 to 200 characters")
    tenant_id = new_id("ten")
    await storage.create_tenant(tenant_id, name)
    return tenant_id, (await keys.create_key(storage, tenant_id, "secret"))[0]


@dataclass(frozen=True)
class SessionClaims:
    tenant_id: str
    persona_id: str
    origin: str
    visitor_id: str
    user_id: str | None = None
    key_id: str | None = None  # the publishable key the session was made with: it is checked again at hello
    expires_at: float | None = None  # Unix seconds, when verified: a socket lives no longer than its token


class SessionSigner:
    """Signed widget tokens: one salt for the purpose, `max_age` always checked. `clock` (Unix seconds) stamps
    and ages tokens; tests give one to make a token that is already old."""

    def __init__(self, secret: str, max_age_s: int, clock: Callable[[], float] = time.time) -> None:
        class Clocked(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(secret, salt=SESSION_SALT, signer=Clocked)
        self.max_age_s = max_age_s

    def sign(self, claims: SessionClaims) -> str:
        data = {"t": claims.tenant_id, "p": claims.persona_id, "o": claims.origin, "v": claims.visitor_id}
        if claims.user_id:
            data["u"] = claims.user_id
        if claims.key_id:
            data["k"] = claims.key_id
        data["n"] = secrets.token_urlsafe(9)  # every session its own token, so limits counted on it are its own
        return self._serializer.dumps(data)

    def verify(self, token: Any) -> SessionClaims:
        if not isinstance(token, str) or not token:
            raise TokenInvalid("missing session token")
        try:
            data, signed = self._serializer.loads(token, max_age=self.max_age_s, return_timestamp=True)
        except SignatureExpired as exc:
            raise TokenExpired("session token expired: start a new session") from exc
        except BadSignature as exc:
            raise TokenInvalid("bad session token") from exc
        return SessionClaims(data["t"], data["p"], data["o"], data["v"], data.get("u"), data.get("k"),
                             signed.timestamp() + self.max_age_s)
