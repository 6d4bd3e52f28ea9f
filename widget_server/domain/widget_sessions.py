"""Widget sessions: a browser trades a publishable key and its Origin for a signed 15-minute token.

The decisions: the key must be known and the Origin on its allowlist (fail closed); the persona must exist; where
the tenant verifies identities, `user.hash` must be the HMAC of `user.id` under the tenant's identity secret
(a claimed user id is not trusted without one).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from widget_server.backends.ratelimit import Limits
from widget_server.backends.storage import Storage
from widget_server.domain import identity, keys, origins, personas
from widget_server.domain.chat.conversations import visitor_id
from widget_server.domain.tenants import SessionClaims, SessionSigner
from widget_server.errors import OriginNotAllowed


async def start_session(storage: Storage, signer: SessionSigner, limits: Limits, server_secret: str, address: str,
                        key: Any, origin: str | None, persona_ref: Any, visitor: Any, user: Any) -> dict[str, Any]:
    """`token`, `expires_at`, `visitor_id` and what the widget shows of the persona. Limited per client address
    and per publishable key, since each session is a token the socket's limits count on."""
    await _limit(limits, "session_address", address, "from this address")
    key_row = await keys.authenticate_publishable(storage, key)
    await _limit(limits, "session_key", key_row["id"], "for this site's key")
    if not origins.allowed(origin, key_row["origins"]):
        raise OriginNotAllowed(f"origin {origin or '(none)'} is not allowed for this key", details={"origin": origin})
    tenant_id = key_row["tenant_id"]
    persona = await personas.get(storage, tenant_id, str(persona_ref))
    user_id = await identity.verified_user(storage, server_secret, tenant_id, user)
    claims = SessionClaims(tenant_id, persona["id"], origins.normalize_rule(origin or ""), visitor_id(visitor),
                           user_id, key_row["id"])
    expires = datetime.now(UTC) + timedelta(seconds=signer.max_age_s)
    return {"token": signer.sign(claims), "expires_at": expires.isoformat(), "visitor_id": claims.visitor_id,
            "persona": personas.widget_view(persona)}


async def _limit(limits: Limits, rule: str, key: str, where: str) -> None:
    await limits.enforce(rule, key, f"too many chat sessions {where}")
