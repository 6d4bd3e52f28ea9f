"""Widget sessions: a browser trades a publishable key and its Origin for a signed 15-minute token.

The decisions: the key must be known and the Origin on its allowlist (fail closed); the persona must exist; where
the tenant verifies identities, `user.hash` must be the HMAC of `user.id` under the tenant's identity secret
(a claimed user id is not trusted without one).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.domain import origins, personas, tenants
from widget_server.domain.chat.conversations import visitor_id
from widget_server.domain.tenants import SessionClaims, SessionSigner
from widget_server.errors import AuthError, InvalidRequest, OriginNotAllowed


async def start_session(storage: Storage, signer: SessionSigner, key: Any, origin: str | None, persona_ref: Any,
                        visitor: Any, user: Any) -> dict[str, Any]:
    """`token`, `expires_at`, `visitor_id` and what the widget shows of the persona."""
    key_row = await tenants.authenticate_publishable(storage, key)
    if not origins.allowed(origin, key_row["origins"]):
        raise OriginNotAllowed(f"origin {origin or '(none)'} is not allowed for this key", details={"origin": origin})
    tenant_id = key_row["tenant_id"]
    persona = await personas.get(storage, tenant_id, str(persona_ref))
    user_id = await verified_user(storage, tenant_id, user)
    claims = SessionClaims(tenant_id, persona["id"], origins.normalize_rule(origin or ""), visitor_id(visitor),
                           user_id)
    expires = datetime.now(UTC) + timedelta(seconds=signer.max_age_s)
    return {"token": signer.sign(claims), "expires_at": expires.isoformat(), "visitor_id": claims.visitor_id,
            "persona": personas.widget_view(persona)}


async def verified_user(storage: Storage, tenant_id: str, user: Any) -> str | None:
    """The verified user id, None for an anonymous visitor; refused when the tenant requires one or the hash
    does not match."""
    tenant = await storage.get_tenant(tenant_id)
    if user is None:
        if tenant and tenant["require_identity"]:
            raise AuthError("this site requires a verified user", code="auth.identity_required")
        return None
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise InvalidRequest("user must be an object with a string id")
    secret = tenant["identity_secret"] if tenant else None
    if secret:
        if not tenants.identity_ok(secret, user["id"], str(user.get("hash", ""))):
            raise AuthError("user hash does not match", code="auth.identity_invalid")
        return str(user["id"])
    return None  # without an identity secret a claimed user id is not trusted
