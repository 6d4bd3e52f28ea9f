"""Tenants, their keys (stored only as hashes) and signed widget-session tokens (origin rules: `origins`)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from widget_server.backends.storage import Storage
from widget_server.domain import origins as origins_
from widget_server.errors import AuthError, InvalidRequest, TenantNotFound, TokenExpired, TokenInvalid
from widget_server.ids import hash_key, new_id, new_key

SESSION_SALT = "widget-session"


async def create_tenant(storage: Storage, name: str) -> tuple[str, str]:
    """A new tenant and its first secret key; the key is returned once and stored only as a hash."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("tenant name must be 1 to 200 characters")
    tenant_id = new_id("ten")
    await storage.create_tenant(tenant_id, name)
    return tenant_id, await add_secret_key(storage, tenant_id)


async def add_secret_key(storage: Storage, tenant_id: str) -> str:
    key = new_key("sk")
    await storage.add_key(new_id("key"), tenant_id, "secret", hash_key(key), key[:7], [])
    return key


async def create_publishable_key(storage: Storage, tenant_id: str, origins: list[str]) -> tuple[str, list[str]]:
    if await storage.get_tenant(tenant_id) is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    if not origins:
        raise InvalidRequest("a publishable key needs at least one allowed origin")
    clean = [origins_.normalize_rule(o) for o in origins]
    key = new_key("pk")
    await storage.add_key(new_id("key"), tenant_id, "publishable", hash_key(key), key[:7], clean)
    return key, clean


async def authenticate_secret(storage: Storage, key: str | None) -> str:
    """The tenant id of a secret key, or `AuthError`."""
    if not key or not key.startswith("sk_"):
        raise AuthError("missing or malformed API key: send Authorization: Bearer sk_…")
    row = await storage.find_key(hash_key(key), "secret")
    if row is None:
        raise AuthError("unknown or revoked API key")
    return str(row["tenant_id"])


async def authenticate_publishable(storage: Storage, key: str) -> dict[str, Any]:
    if not isinstance(key, str) or not key.startswith("pk_"):
        raise AuthError("missing or malformed publishable key")
    row = await storage.find_key(hash_key(key), "publishable")
    if row is None:
        raise AuthError("unknown or revoked publishable key")
    return row


def identity_ok(secret: str, user_id: str, user_hash: str) -> bool:
    expected = hmac.new(secret.encode(), user_id.encode(errors="surrogatepass"), hashlib.sha256).hexdigest()
    # bytes, not str: compare_digest refuses non-ASCII strings, and a hash is hex anyway
    return hmac.compare_digest(expected.encode(), (user_hash or "").encode(errors="surrogatepass"))


@dataclass(frozen=True)
class SessionClaims:
    tenant_id: str
    persona_id: str
    origin: str
    visitor_id: str
    user_id: str | None = None


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
        return self._serializer.dumps(data)

    def verify(self, token: Any) -> SessionClaims:
        if not isinstance(token, str) or not token:
            raise TokenInvalid("missing session token")
        try:
            data = self._serializer.loads(token, max_age=self.max_age_s)
        except SignatureExpired as exc:
            raise TokenExpired("session token expired: start a new session") from exc
        except BadSignature as exc:
            raise TokenInvalid("bad session token") from exc
        return SessionClaims(data["t"], data["p"], data["o"], data["v"], data.get("u"))
